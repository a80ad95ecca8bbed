"""Reads rprof's pprof and speedscope files with the consumers' own tools.

    python check_tools.py pprof PROFILE.pb.gz STATS.json
    python check_tools.py speedscope FILE.speedscope.json SCHEMA.json

Run with the venv that scripts/test.sh makes (target/test-tools/venv, with
`protobuf` and `jsonschema` from PyPI; the speedscope schema comes from the
`speedscope` npm package).

pprof: the file is gunzipped and parsed by the protobuf library against the
message layout of pprof's public profile.proto (declared below, field
numbers only); then string indices, location and function ids must resolve,
every sample has one value per sample type, and, per function, the `calls`
values of the samples whose leaf it is add up to its ncalls and the `wall`
values to its tottime (in ns, within 1 ns per sample), as STATS.json
(`[[file, line, name, ncalls, tottime], ...]`, from pstats) says.

speedscope: the file validates against speedscope's own JSON schema.

Exit 0 and `ok` on success; anything else is a failure with the reason.
"""
import gzip
import json
import sys

I64, U64, BOOL, STR, MSG = "int64", "uint64", "bool", "string", "msg"

# (message, [(field, number, type, repeated, message type)]) from pprof's
# public profile.proto.
LAYOUT = {
    "Profile": [("sample_type", 1, MSG, True, "ValueType"), ("sample", 2, MSG, True, "Sample"),
                ("mapping", 3, MSG, True, "Mapping"), ("location", 4, MSG, True, "Location"),
                ("function", 5, MSG, True, "Function"), ("string_table", 6, STR, True, None),
                ("drop_frames", 7, I64, False, None), ("keep_frames", 8, I64, False, None),
                ("time_nanos", 9, I64, False, None), ("duration_nanos", 10, I64, False, None),
                ("period_type", 11, MSG, False, "ValueType"), ("period", 12, I64, False, None),
                ("comment", 13, I64, True, None), ("default_sample_type", 14, I64, False, None)],
    "ValueType": [("type", 1, I64, False, None), ("unit", 2, I64, False, None)],
    "Sample": [("location_id", 1, U64, True, None), ("value", 2, I64, True, None),
               ("label", 3, MSG, True, "Label")],
    "Label": [("key", 1, I64, False, None), ("str", 2, I64, False, None),
              ("num", 3, I64, False, None), ("num_unit", 4, I64, False, None)],
    "Mapping": [("id", 1, U64, False, None), ("memory_start", 2, U64, False, None),
                ("memory_limit", 3, U64, False, None), ("file_offset", 4, U64, False, None),
                ("filename", 5, I64, False, None), ("build_id", 6, I64, False, None),
                ("has_functions", 7, BOOL, False, None), ("has_filenames", 8, BOOL, False, None),
                ("has_line_numbers", 9, BOOL, False, None),
                ("has_inline_frames", 10, BOOL, False, None)],
    "Location": [("id", 1, U64, False, None), ("mapping_id", 2, U64, False, None),
                 ("address", 3, U64, False, None), ("line", 4, MSG, True, "Line"),
                 ("is_folded", 5, BOOL, False, None)],
    "Line": [("function_id", 1, U64, False, None), ("line", 2, I64, False, None)],
    "Function": [("id", 1, U64, False, None), ("name", 2, I64, False, None),
                 ("system_name", 3, I64, False, None), ("filename", 4, I64, False, None),
                 ("start_line", 5, I64, False, None)],
}


def profile_class():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    F = descriptor_pb2.FieldDescriptorProto
    types = {I64: F.TYPE_INT64, U64: F.TYPE_UINT64, BOOL: F.TYPE_BOOL,
             STR: F.TYPE_STRING, MSG: F.TYPE_MESSAGE}
    fd = descriptor_pb2.FileDescriptorProto(name="rprof_check_profile.proto",
                                            package="perftools.profiles", syntax="proto3")
    for name, fields in LAYOUT.items():
        m = fd.message_type.add(name=name)
        for fname, num, kind, rep, sub in fields:
            f = m.field.add(name=fname, number=num, type=types[kind],
                            label=F.LABEL_REPEATED if rep else F.LABEL_OPTIONAL)
            if sub:
                f.type_name = ".perftools.profiles." + sub
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    desc = pool.FindMessageTypeByName("perftools.profiles.Profile")
    return message_factory.GetMessageClass(desc)


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def check_pprof(path, stats_path):
    p = profile_class()()
    p.ParseFromString(gzip.open(path).read())
    s = list(p.string_table)
    if not s or s[0] != "":
        fail("string_table[0] must be empty")

    def string(i):
        if not 0 <= i < len(s):
            fail("string index %d out of range" % i)
        return s[i]

    kinds = [string(t.type) for t in p.sample_type]
    if kinds != ["calls", "wall"]:
        fail("sample types %r" % kinds)
    funcs = {f.id: f for f in p.function}
    locs = {l.id: l for l in p.location}
    if 0 in funcs or 0 in locs or len(funcs) != len(p.function) or len(locs) != len(p.location):
        fail("function or location ids are not unique and nonzero")
    calls, wall, samples = {}, {}, {}
    for smp in p.sample:
        if len(smp.value) != len(kinds):
            fail("a sample has %d values for %d types" % (len(smp.value), len(kinds)))
        if not smp.location_id:
            fail("a sample without locations")
        for lid in smp.location_id:
            if lid not in locs:
                fail("location %d does not exist" % lid)
        line = locs[smp.location_id[0]].line[0]
        if line.function_id not in funcs:
            fail("function %d does not exist" % line.function_id)
        f = funcs[line.function_id]
        key = (string(f.filename), f.start_line, string(f.system_name))
        calls[key] = calls.get(key, 0) + smp.value[0]
        wall[key] = wall.get(key, 0) + smp.value[1]
        samples[key] = samples.get(key, 0) + 1
    for fname, line, name, ncalls, tottime in json.load(open(stats_path)):
        # pstats spells a builtin's file '~' and its line 0.
        key = ("" if fname == "~" else fname, line, name)
        if calls.get(key, 0) != ncalls:
            fail("%r: calls %d in pprof, ncalls %d in pstats" % (key, calls.get(key, 0), ncalls))
        if abs(wall.get(key, 0) - tottime * 1e9) > samples.get(key, 0) + 1 + 1e-6 * tottime * 1e9:
            fail("%r: wall %d ns in pprof, tottime %.9f s in pstats" % (key, wall.get(key, 0), tottime))


def check_speedscope(path, schema_path):
    import jsonschema
    jsonschema.validate(json.load(open(path)), json.load(open(schema_path)))


def main():
    kind, path, other = sys.argv[1:4]
    if kind == "pprof":
        check_pprof(path, other)
    elif kind == "speedscope":
        check_speedscope(path, other)
    else:
        fail("unknown check %r" % kind)
    print("ok")


main()

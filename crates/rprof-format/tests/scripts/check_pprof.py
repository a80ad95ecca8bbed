"""Decode a gzipped pprof profile with Python's protobuf and summarize it.

usage: check_pprof.py PROFILE_PROTO OUT_DIR PROFILE_PB_GZ

Compiles PROFILE_PROTO with grpc_tools.protoc (or `protoc` on PATH) into
OUT_DIR, parses the profile with the generated module, checks its internal
references (every id used is defined, once; string indices in range;
string_table[0] == ""), and prints a JSON summary with every string
resolved. Exits 1 with a message on any inconsistency.
"""
import gzip
import importlib
import json
import os
import shutil
import subprocess
import sys

proto, out_dir, profile_path = sys.argv[1:4]
proto_dir, proto_name = os.path.split(os.path.abspath(proto))
args = ["-I" + proto_dir, "--python_out=" + out_dir, proto_name]
try:
    from grpc_tools import protoc

    if protoc.main(["protoc"] + args) != 0:
        sys.exit("grpc_tools.protoc failed")
except ImportError:
    if shutil.which("protoc") is None:
        sys.exit("neither grpc_tools nor protoc is available")
    subprocess.run(["protoc"] + args, check=True)
sys.path.insert(0, out_dir)
profile_pb2 = importlib.import_module(proto_name[: -len(".proto")] + "_pb2")

with open(profile_path, "rb") as f:
    raw = f.read()
if raw[:2] != b"\x1f\x8b":
    sys.exit("not gzip data")
p = profile_pb2.Profile()
p.ParseFromString(gzip.decompress(raw))

strings = list(p.string_table)
errors = []
if not strings or strings[0] != "":
    errors.append("string_table[0] is not the empty string")


def s(i):
    if not 0 <= i < len(strings):
        errors.append(f"string index {i} out of range")
        return "?"
    return strings[i]


def unique(items, what):
    ids = [x.id for x in items]
    if 0 in ids or len(set(ids)) != len(ids):
        errors.append(f"{what} ids are not unique and nonzero: {ids}")
    return {x.id: x for x in items}


functions = unique(p.function, "function")
locations = unique(p.location, "location")
mappings = unique(p.mapping, "mapping")
for loc in p.location:
    if loc.mapping_id and loc.mapping_id not in mappings:
        errors.append(f"location {loc.id} has unknown mapping {loc.mapping_id}")
    if len(loc.line) != 1 or loc.line[0].function_id not in functions:
        errors.append(f"location {loc.id} does not have exactly one known function")

per_leaf = {}
per_thread = {}
total = [0] * len(p.sample_type)
for sample in p.sample:
    if len(sample.value) != len(p.sample_type):
        errors.append("a sample has the wrong number of values")
        continue
    if not sample.location_id or any(l not in locations for l in sample.location_id):
        errors.append(f"a sample has unknown locations {list(sample.location_id)}")
        continue
    leaf = functions[locations[sample.location_id[0]].line[0].function_id]
    name = s(leaf.name)
    acc = per_leaf.setdefault(name, [0] * len(total))
    labels = {s(l.key): (s(l.str) if l.str else l.num) for l in sample.label}
    thr = per_thread.setdefault(str(labels.get("thread")), [0] * len(total))
    for i, v in enumerate(sample.value):
        total[i] += v
        acc[i] += v
        thr[i] += v

if errors:
    sys.exit("\n".join(errors[:20]))

print(json.dumps({
    "sample_type": [[s(t.type), s(t.unit)] for t in p.sample_type],
    "period_type": [s(p.period_type.type), s(p.period_type.unit)],
    "period": p.period,
    "default_sample_type": s(p.default_sample_type),
    "duration_nanos": p.duration_nanos,
    "comments": [s(c) for c in p.comment],
    "samples": len(p.sample),
    "total": total,
    "per_leaf": per_leaf,
    "per_thread": per_thread,
    "functions": [
        {"name": s(f.name), "system_name": s(f.system_name),
         "filename": s(f.filename), "start_line": f.start_line}
        for f in p.function
    ],
    "mapping": [
        {"filename": s(m.filename), "has_functions": m.has_functions,
         "has_filenames": m.has_filenames, "has_line_numbers": m.has_line_numbers}
        for m in p.mapping
    ],
}, sort_keys=True))

"""Load a pstats file written by rprof and compare it with what was meant.

usage: check_pstats.py STATS_FILE EXPECTED_PY

EXPECTED_PY defines EXPECTED, a list of
(key, (cc, nc, tt, ct, [(caller_key, (nc, cc, tt, ct)), ...])) in file order,
built with F(bits) for floats and S(hex) for strings. Prints one line per
mismatch and exits 1 if there are any.
"""
import marshal
import pstats
import struct
import sys


def F(bits):
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def S(hex_utf8):
    return bytes.fromhex(hex_utf8).decode("utf-8")


def same(a, b):
    """Equal, of the same types, with floats compared bit for bit."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def main():
    path, expected_path = sys.argv[1:3]
    namespace = {"F": F, "S": S}
    with open(expected_path, encoding="utf-8") as f:
        exec(f.read(), namespace)
    expected = namespace["EXPECTED"]

    stats = pstats.Stats(path).stats
    got = [
        (key, (cc, nc, tt, ct, list(callers.items())))
        for key, (cc, nc, tt, ct, callers) in stats.items()
    ]
    problems = []
    if len(got) != len(expected):
        problems.append("loaded %d functions, expected %d" % (len(got), len(expected)))
    for i, (g, e) in enumerate(zip(got, expected)):
        if not same(g, e):
            problems.append("entry %d: loaded %r, expected %r" % (i, g, e))

    with open(path, "rb") as f:
        data = f.read()
    if marshal.dumps(stats, 2) != data:
        problems.append("file bytes differ from marshal.dumps(loaded_stats, 2)")

    for p in problems:
        print(p)
    sys.exit(1 if problems else 0)


main()

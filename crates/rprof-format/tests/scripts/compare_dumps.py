"""Check that rprof's rewrite of a cProfile dump loads as the same stats.

usage: compare_dumps.py CPROFILE_FILE RPROF_FILE

Both must load to equal dicts in the same order (callers too), and the rprof
file must be exactly marshal.dumps(stats, 2). Prints mismatches, exits 1 if
there are any.
"""
import marshal
import pstats
import sys


def ordered(stats):
    return [(k, (v[0], v[1], v[2], v[3], list(v[4].items()))) for k, v in stats.items()]


original_path, rewritten_path = sys.argv[1:3]
original = pstats.Stats(original_path).stats
rewritten = pstats.Stats(rewritten_path).stats
problems = []
if ordered(original) != ordered(rewritten):
    problems.append("rewritten stats differ:\n%r\n%r" % (ordered(original), ordered(rewritten)))
with open(rewritten_path, "rb") as f:
    if f.read() != marshal.dumps(original, 2):
        problems.append("rewritten file is not marshal.dumps(original_stats, 2)")
for p in problems:
    print(p)
sys.exit(1 if problems else 0)

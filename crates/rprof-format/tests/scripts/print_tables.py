"""Print pstats tables for a stats file, one per case.

usage: print_tables.py STATS_FILE CASES_FILE

Each line of CASES_FILE is "STRIP LIMIT [KEY...]": STRIP is 1 to call
strip_dirs(), LIMIT is "-" or the argument of print_stats, and the keys go
to sort_stats ("-1" as the integer python -m cProfile passes; no keys means
no sort_stats call). For each case prints "<len>\\n" and the table as UTF-8,
minus the "<mtime>    <path>" line and blank line that print_stats prints
first for stats loaded from a file (asserted, then dropped).
"""
import io
import pstats
import sys


def main():
    path, cases_path = sys.argv[1:3]
    with open(cases_path, encoding="utf-8") as f:
        cases = [line.split() for line in f if line.strip()]
    out = sys.stdout.buffer
    for strip, limit, *keys in cases:
        buf = io.StringIO()
        stats = pstats.Stats(path, stream=buf)
        if strip == "1":
            stats.strip_dirs()
        if keys == ["-1"]:
            stats.sort_stats(-1)
        elif keys:
            stats.sort_stats(*keys)
        if limit == "-":
            stats.print_stats()
        else:
            stats.print_stats(int(limit))
        text = buf.getvalue()
        prefix = stats.files[0] + "\n\n"
        assert stats.files[0].endswith("    " + path), stats.files
        assert text.startswith(prefix), text[:200]
        table = text[len(prefix):].encode("utf-8")
        out.write(b"%d\n" % len(table))
        out.write(table)


main()

# rprof-test: exit 3
# rprof-test: args alpha 42 --flag
"""Reads sys.argv, does a little work, then exits through sys.exit(3) from
inside nested calls (SystemExit unwinds several frames)."""
import sys


def parse(argv):
    return [a.upper() for a in argv]


def finish(code):
    sys.exit(code)


def run(argv):
    words = parse(argv)
    print("args", argv[1:], len(words))
    finish(3)
    print("not reached")


run(sys.argv)

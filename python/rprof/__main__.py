"""``python -m rprof ARGS``: the same as running ``rprof ARGS``."""

import os
import sys

from rprof import binary


def main():
    try:
        path = binary()
    except FileNotFoundError as e:
        sys.stderr.write("rprof: %s\n" % e)
        return 1
    os.execv(path, [path] + sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())

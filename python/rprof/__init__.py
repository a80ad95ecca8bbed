"""rprof: exact, cProfile-compatible profiles of CPython programs.

The profiler is the ``rprof`` command installed next to this package (a
native binary); this package only finds it, so that ``python -m rprof``
works where the scripts directory is not on PATH.
"""

import os
import sys
import sysconfig

__all__ = ["binary"]


def binary():
    """The path of the installed ``rprof`` binary."""
    candidates = []
    for scheme in (None, "posix_user", "posix_prefix"):
        try:
            path = sysconfig.get_path("scripts", scheme) if scheme else sysconfig.get_path("scripts")
        except KeyError:
            continue
        candidates.append(os.path.join(path, "rprof"))
    # The interpreter's own bin/ (a venv's python is a symlink there).
    candidates.append(os.path.join(os.path.dirname(sys.executable), "rprof"))
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(
        "the rprof binary is not installed next to this package; reinstall with `pip install --force-reinstall rprof`"
    )

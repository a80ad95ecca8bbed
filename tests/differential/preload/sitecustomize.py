"""Preload for differential profiling runs (put this directory on PYTHONPATH
for cProfile, reference.py AND rprof, including the warm-up run).

Why: a workload's top-level ``import x`` runs inside the profiled region.  If
``x`` is already in ``sys.modules`` it costs no profile event; if it is not, the
whole import machinery and the module body are profiled.  Which modules are
already loaded depends on the *launcher*: ``python -m cProfile`` has imported
cProfile, pstats, optparse, runpy, functools, contextlib, collections, re,
dataclasses, inspect, ... before the script starts; rprof's launcher and
reference.py import other (fewer) modules.  Loading one superset here, before
any launcher runs, makes every workload import a plain ``sys.modules`` hit
under every profiler.

It also disables the cyclic garbage collector: a collection can run a
finaliser (a Python ``__del__``, a weakref callback, a generator's close)
inside whatever function happens to be allocating, and when a collection
triggers depends on every allocation the launcher made before the script.
Reference counting still frees acyclic objects at deterministic points.
"""
import gc

gc.disable()

_MODULES = (
    # what `python -m cProfile SCRIPT` has imported when SCRIPT starts
    "cProfile", "profile", "pstats", "optparse", "runpy", "io", "marshal",
    "importlib", "importlib.machinery", "importlib.util",
    # what reference.py imports
    "ctypes", "types", "time", "_thread", "threading",
    # what the workloads import (keep in sync with tests/workloads)
    "asyncio", "contextlib", "functools", "operator", "itertools",
    "collections", "sys", "os",
)

for _name in _MODULES:
    try:
        __import__(_name)
    except ImportError:
        pass
del _name

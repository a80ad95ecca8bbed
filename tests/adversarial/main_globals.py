import sys
print("BUILTINS", type(__builtins__).__name__)
print("LOADER", type(__loader__).__name__, getattr(__loader__, "name", None))

"""A package run with `-m modpkg` (its __main__.py does the work)."""


def shared(x):
    return x + 1

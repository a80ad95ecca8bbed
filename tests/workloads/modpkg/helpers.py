"""Helpers for modpkg."""


class Accumulator:
    def __init__(self):
        self.total = 0

    def add(self, v):
        self.total += v
        return self.total


def walk(n):
    if n == 0:
        yield 0
        return
    yield n
    yield from walk(n - 1)

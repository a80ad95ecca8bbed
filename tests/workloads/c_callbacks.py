"""C code calling back into Python: sorted(key=...), list.sort(key=...),
map, filter, functools.reduce, min/max(key=...), sum over a map of a Python
function, and comparison dunders called by sorted()."""
import functools


def key_fn(x):
    return (x * 37) % 101


def is_interesting(x):
    return x % 3 != 0


def combine(acc, x):
    return acc + x


def double(x):
    return x * 2


class Item:
    def __init__(self, v):
        self.v = v

    def __lt__(self, other):
        return self.v < other.v


def main():
    data = list(range(200))
    s1 = sorted(data, key=key_fn)
    lst = list(range(150))
    lst.sort(key=key_fn, reverse=True)
    mapped = list(map(double, data))
    filtered = list(filter(is_interesting, data))
    reduced = functools.reduce(combine, data, 0)
    total = sum(map(double, filter(is_interesting, data)))
    best = max(data, key=key_fn)
    worst = min(data, key=key_fn)
    items = sorted([Item((i * 13) % 17) for i in range(17)])
    print("cb", s1[:3], lst[:3], mapped[-1], len(filtered), reduced, total)
    print("cb", best, worst, [it.v for it in items][:5])


main()

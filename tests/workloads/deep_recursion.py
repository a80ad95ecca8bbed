"""Deep self-recursion (depth 500, well within the default recursion limit),
a recursive function that is also called non-recursively, recursion that
goes through a builtin (sum -> map -> f -> sum: the builtin itself recurses),
and recursion through a C-level lru_cache wrapper (not a profiled call)."""
import functools


def depth(n):
    if n == 0:
        return 0
    return 1 + depth(n - 1)


def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def tree_sum(node):
    value, children = node
    total = value
    for child in children:
        total += tree_sum(child)
    return total


def nested_total(node):
    value, children = node
    return value + sum(map(nested_total, children))


@functools.lru_cache(maxsize=None)
def cached_fib(n):
    if n < 2:
        return n
    return cached_fib(n - 1) + cached_fib(n - 2)


def build(level):
    if level == 0:
        return (1, [])
    return (level, [build(level - 1), build(level - 1)])


def main():
    print("depth", depth(500))
    print("depth", depth(250))
    print("fib", fib(16))
    tree = build(8)
    print("tree", tree_sum(tree), nested_total(tree))
    print("cached", cached_fib(60), cached_fib(30))


main()

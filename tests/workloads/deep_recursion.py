"""Deep self-recursion (depth 500, well within the default recursion limit)
and a recursive function that is also called non-recursively."""


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


def build(level):
    if level == 0:
        return (1, [])
    return (level, [build(level - 1), build(level - 1)])


def main():
    print("depth", depth(500))
    print("depth", depth(250))
    print("fib", fib(16))
    print("tree", tree_sum(build(8)))


main()

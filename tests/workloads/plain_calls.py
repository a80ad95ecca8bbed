"""Plain Python-to-Python calls: positional, keyword, default, *args, **kwargs."""


def add(a, b):
    return a + b


def scale(x, factor=3):
    return x * factor


def combine(*args, **kwargs):
    total = 0
    for a in args:
        total = add(total, a)
    for k in ("x", "y"):
        if k in kwargs:
            total = add(total, kwargs[k])
    return total


def leaf():
    return 1


def middle(n):
    s = 0
    for _ in range(n):
        s += leaf()
    return s


def top():
    acc = 0
    for i in range(200):
        acc += add(i, scale(i))
        acc += scale(i, factor=2)
        acc += combine(i, 1, 2, x=i, y=1)
        acc += middle(3)
    return acc


def main():
    results = [top() for _ in range(5)]
    print("plain_calls", results[0], len(results))


main()

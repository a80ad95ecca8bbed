"""functools.partial of Python functions, of bound methods, of builtins
(called from C: no profile event for the builtin), nested partials, and
partial objects used as callbacks by map/sorted."""
import functools


def power(base, exp):
    return base ** exp


def scaled(x, factor=1, offset=0):
    return x * factor + offset


class Acc:
    def __init__(self):
        self.total = 0

    def add(self, v, weight=1):
        self.total += v * weight
        return self.total


def main():
    square = functools.partial(power, exp=2)
    cube = functools.partial(power, exp=3)
    two_to = functools.partial(power, 2)
    triple_plus = functools.partial(functools.partial(scaled, factor=3), offset=1)
    acc = Acc()
    add2 = functools.partial(acc.add, weight=2)
    bpow = functools.partial(pow, 3)
    vals = [square(i) + cube(i) + two_to(i) for i in range(15)]
    mapped = list(map(triple_plus, range(20)))
    for i in range(10):
        add2(i)
    ordered = sorted(range(20), key=functools.partial(scaled, factor=-1))
    bp = [bpow(i) for i in range(5)]
    print("partial", sum(vals), mapped[-1], acc.total, ordered[:3], bp)


main()

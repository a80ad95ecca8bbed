"""Lambdas, closures, nonlocal state and decorators (with and without
functools.wraps, with arguments, stacked)."""
import functools


def make_counter():
    count = 0

    def inc(step=1):
        nonlocal count
        count += step
        return count

    return inc


def make_adder(n):
    return lambda x: x + n


def trace_calls(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        wrapper.calls += 1
        return fn(*args, **kwargs)

    wrapper.calls = 0
    return wrapper


def repeat(times):
    def decorate(fn):
        @functools.wraps(fn)
        def inner(*args):
            result = None
            for _ in range(times):
                result = fn(*args)
            return result

        return inner

    return decorate


def plain_decorator(fn):
    def unwrapped(x):
        return fn(x) + 1

    return unwrapped


@trace_calls
def square(x):
    return x * x


@repeat(3)
@trace_calls
def cube(x):
    return x * x * x


@plain_decorator
def ident(x):
    return x


def main():
    counter = make_counter()
    for i in range(30):
        counter(i % 3)
    add5 = make_adder(5)
    add7 = make_adder(7)
    vals = [add5(i) + add7(i) for i in range(40)]
    sq = sum(square(i) for i in range(25))
    cb = [cube(i) for i in range(10)]
    ids = [ident(i) for i in range(10)]
    double = lambda v: v * 2  # noqa: E731
    doubled = [double(v) for v in vals[:10]]
    print("closures", counter(0), sum(vals), sq, cb[-1], ids[-1], doubled[-1])
    print("calls", square.calls, cube.__wrapped__.calls, square.__name__, cube.__name__)


main()

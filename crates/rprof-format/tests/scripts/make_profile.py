"""Profile a small workload with cProfile, print its tables, dump its stats.

usage: make_profile.py STATS_FILE

Prints, as "<len>\\n<UTF-8 text>" records, what cProfile.Profile.print_stats
prints with no argument (the table python -m cProfile prints) and with
"cumulative", "tottime" and (on 3.13+) ("calls", "name"), then writes
the same profile with dump_stats.
"""
import contextlib
import cProfile
import io
import sys


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def even(n):
    return True if n == 0 else odd(n - 1)


def odd(n):
    return False if n == 0 else even(n - 1)


def café(words):
    return sorted(words, key=len)


class Widget:
    def render(self):
        return [len(str(i)) for i in range(50)]


def main():
    fib(12)
    even(9)
    café(["ab", "c"] * 10)
    Widget().render()
    sum(i * i for i in range(300))
    "".join(map(str, range(20)))


def table(profile, *sort):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        profile.print_stats(*sort)
    data = buf.getvalue().encode("utf-8")
    sys.stdout.buffer.write(b"%d\n" % len(data))
    sys.stdout.buffer.write(data)


path = sys.argv[1]
profile = cProfile.Profile()
profile.enable()
main()
profile.disable()
table(profile)
table(profile, "cumulative")
table(profile, "tottime")
if sys.version_info >= (3, 13):
    # Profile.print_stats takes a tuple of keys since 3.13.
    table(profile, ("calls", "name"))
profile.dump_stats(path)

"""Burns CPU in pure Python (no system calls in the loop), checking every
result against a second computation. Finishes on SIGUSR1; the work done is
the number of rounds."""
from _target import check, check_clean, did_work, install, say, stopped, work_done


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def step(x):
    return (x * 1103515245 + 12345) & 0x7FFFFFFF


def lcg_by_calls(seed, n):
    x = seed
    for _ in range(n):
        x = step(x)
    return x


def lcg_inline(seed, n):
    x = seed
    for _ in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    return x


def one_round(i):
    f = fib(14)
    check(f == 377, "fib(14) = %r" % (f,))
    a = lcg_by_calls(i, 300)
    b = lcg_inline(i, 300)
    check(a == b, "round %d: %d != %d" % (i, a, b))
    return a


def main():
    install()
    one_round(0)
    say("ready")
    i = 1
    while not stopped():
        one_round(i)
        did_work()
        i += 1
    check(work_done() > 0, "no round completed")
    check_clean()
    say("ok", work_done(), "rounds")


main()

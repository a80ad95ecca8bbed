"""Mutual recursion: two-cycle and three-cycle, with primitive vs recursive
call counts and caller edges in both directions."""


def is_even(n):
    if n == 0:
        return True
    return is_odd(n - 1)


def is_odd(n):
    if n == 0:
        return False
    return is_even(n - 1)


def ping(n):
    if n <= 0:
        return 0
    return 1 + pong(n - 1)


def pong(n):
    if n <= 0:
        return 0
    return 1 + pang(n - 1)


def pang(n):
    if n <= 0:
        return 0
    # sometimes go straight back to ping, sometimes to pong
    if n % 3 == 0:
        return 1 + pong(n - 1)
    return 1 + ping(n - 1)


def main():
    evens = sum(1 for i in range(60) if is_even(i))
    print("evens", evens)
    print("odd", is_odd(201))
    print("ping", ping(150), pong(40), pang(30))


main()

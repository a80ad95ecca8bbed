"""Sits inside an `except` block, then inside a `finally` block with an
exception propagating through it, while rprof attaches.

Phase 1 (prints `ready except`): busy inside `except Boom as outer`, raising
and catching inner exceptions, until the first SIGUSR1; then checks the
handled exception is still `outer`.
Phase 2 (prints `ready finally`): sleeping in short naps inside a `finally`
that an exception is passing through, until the second SIGUSR1; then checks
the exception still arrives, unchanged, at the outer handler."""
import sys
import time

from _target import check, check_clean, did_work, fail, install, say, usr1


class Boom(Exception):
    pass


def inside_except_tick(n, outer):
    try:
        raise ValueError(n)
    except ValueError as inner:
        check(inner.__context__ is outer, "inner __context__ %r" % (inner.__context__,))
    check(sys.exc_info()[1] is outer, "handled exception changed: %r" % (sys.exc_info(),))
    return n + 1


def hold_in_except():
    try:
        raise Boom("outer")
    except Boom as outer:
        say("ready except")
        n = 0
        while usr1() < 1:
            n = inside_except_tick(n, outer)
            did_work()
        check(sys.exc_info()[1] is outer, "after attach: %r" % (sys.exc_info(),))
        check(n > 0, "no tick")
    check(sys.exc_info() == (None, None, None), "leaked: %r" % (sys.exc_info(),))


def inside_finally_tick(n):
    time.sleep(0.002)
    return n + 1


def hold_in_finally():
    n = 0
    try:
        try:
            raise Boom("propagating", 42)
        finally:
            say("ready finally")
            while usr1() < 2:
                n = inside_finally_tick(n)
                did_work()
        fail("the exception vanished in finally")
    except Boom as e:
        check(e.args == ("propagating", 42), "propagated %r" % (e.args,))
        check(n > 0, "no tick")
    check(sys.exc_info() == (None, None, None), "leaked: %r" % (sys.exc_info(),))


def main():
    install()
    hold_in_except()
    hold_in_finally()
    check_clean()
    say("ok")


main()

"""Raises and catches exceptions in a loop, in every shape (Python raise,
C-level KeyError, chaining, finally, with-blocks, generators), checking the
exception state at each step. Finishes on SIGUSR1."""
import sys

from _target import check, check_clean, did_work, fail, install, say, stopped, work_done


class Boom(Exception):
    pass


class Swallow:
    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        self.seen = value
        return True


def thrower(i):
    if i % 3 == 0:
        raise Boom(i)
    if i % 3 == 1:
        raise KeyError(i)
    return {}[i]  # KeyError raised by C code


def catcher(i):
    try:
        thrower(i)
    except Boom as e:
        check(e.args == (i,), "Boom args %r != %r" % (e.args, (i,)))
        check(sys.exc_info()[1] is e, "sys.exc_info() in except: %r" % (sys.exc_info(),))
    except KeyError as e:
        check(e.args == (i,), "KeyError args %r != %r" % (e.args, (i,)))
        check(sys.exc_info()[0] is KeyError, "sys.exc_info() in except: %r" % (sys.exc_info(),))
    else:
        fail("thrower(%d) did not raise" % i)
    check(sys.exc_info() == (None, None, None), "exception leaked: %r" % (sys.exc_info(),))


def chained(i):
    try:
        try:
            raise ValueError(i)
        except ValueError:
            raise TypeError(i)
    except TypeError as e:
        ctx = e.__context__
        check(isinstance(ctx, ValueError) and ctx.args == (i,), "__context__ %r" % (ctx,))


def through_finally(i):
    log = []
    try:
        try:
            raise Boom(i)
        finally:
            log.append("finally")
    except Boom as e:
        check(e.args == (i,) and log == ["finally"], "finally path: %r %r" % (e.args, log))


def swallowed(i):
    with Swallow() as s:
        raise Boom(i)
    check(isinstance(s.seen, Boom) and s.seen.args == (i,), "with: %r" % (s.seen,))


def gen(i):
    try:
        yield i
    except Boom as e:
        yield ("caught", e.args[0])


def generator_throw(i):
    g = gen(i)
    check(next(g) == i, "first yield")
    check(g.throw(Boom(i)) == ("caught", i), "generator throw")
    try:
        next(g)
    except StopIteration:
        pass
    else:
        fail("generator did not stop")


def one_round(i):
    for j in range(i, i + 6):
        catcher(j)
    chained(i)
    through_finally(i)
    swallowed(i)
    generator_throw(i)


def main():
    install()
    one_round(0)
    say("ready")
    i = 1
    while not stopped():
        one_round(i)
        did_work()
        i += 1
    check(sys.exc_info() == (None, None, None), "exception leaked: %r" % (sys.exc_info(),))
    check(work_done() > 0, "no round completed")
    check_clean()
    say("ok", work_done(), "rounds")


main()

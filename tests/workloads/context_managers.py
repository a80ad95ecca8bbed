"""Context managers: class-based (__enter__/__exit__, suppressing and not
suppressing exceptions), contextlib.contextmanager generators, nested with,
contextlib.ExitStack and contextlib.suppress."""
import contextlib


class Resource:
    opened = 0

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        Resource.opened += 1
        return self

    def __exit__(self, exc_type, exc, tb):
        Resource.opened -= 1
        return exc_type is KeyError

    def use(self, n):
        if n < 0:
            raise KeyError(n)
        return n * 2


@contextlib.contextmanager
def managed(log, tag):
    log.append("enter " + tag)
    try:
        yield tag.upper()
    except ValueError:
        log.append("handled " + tag)
    finally:
        log.append("exit " + tag)


def work(log):
    total = 0
    for i in range(20):
        with Resource("r%d" % i) as r:
            total += r.use(i)
        with Resource("neg") as r:
            total += r.use(-1)
    with managed(log, "a") as a, managed(log, "b") as b:
        log.append(a + b)
    with managed(log, "c"):
        raise ValueError("boom")
    with contextlib.suppress(ZeroDivisionError):
        total += 1 // 0
    with contextlib.ExitStack() as stack:
        for i in range(3):
            stack.enter_context(Resource("s%d" % i))
        stack.callback(log.append, "callback")
    return total


def main():
    log = []
    total = work(log)
    print("ctx", total, Resource.opened, log)


main()

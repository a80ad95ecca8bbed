# rprof-test: min-python 3.11
"""Newer language features: structural pattern matching with class patterns
(3.10), exception groups with except* and an ExceptionGroup subclass whose
derive() is Python code called back by the interpreter while splitting,
exception notes, and asyncio.TaskGroup (3.11)."""
import asyncio


class Point:
    __match_args__ = ("x", "y")

    def __init__(self, x, y):
        self.x = x
        self.y = y


def classify(obj):
    match obj:
        case Point(0, 0):
            return "origin"
        case Point(x, 0):
            return "x-axis %d" % x
        case [first, *rest]:
            return "seq %r+%d" % (first, len(rest))
        case {"kind": kind}:
            return "map " + kind
        case _:
            return "other"


class TaggedGroup(ExceptionGroup):
    def derive(self, excs):
        return TaggedGroup(self.message, excs)


def fail(i):
    err = ValueError(i) if i % 2 else KeyError(i)
    err.add_note("from fail(%d)" % i)
    return err


def raise_group(n):
    raise TaggedGroup("batch", [fail(i) for i in range(n)])


def handle(n):
    caught = []
    try:
        raise_group(n)
    except* ValueError as eg:
        caught.append(("value", len(eg.exceptions)))
    except* KeyError as eg:
        caught.append(("key", len(eg.exceptions)))
    return caught


async def job(i):
    await asyncio.sleep(0)
    return i * i


async def gather_with_taskgroup():
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(job(i)) for i in range(4)]
    return [t.result() for t in tasks]


def main():
    shapes = [Point(0, 0), Point(3, 0), [1, 2, 3], {"kind": "k"}, 7]
    print("match", [classify(s) for s in shapes])
    print("groups", handle(5))
    print("taskgroup", asyncio.run(gather_with_taskgroup()))


main()

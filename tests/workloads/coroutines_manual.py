"""Coroutines driven by hand, without an event loop: send(None), throw()
into a suspended coroutine, close(), an awaitable class whose __await__ is a
generator, and await chains several levels deep (every resume re-enters each
coroutine frame in the chain)."""


class Ready:
    """Awaitable that suspends once, then produces a value."""

    def __init__(self, value):
        self.value = value

    def __await__(self):
        got = yield ("suspend", self.value)
        return self.value if got is None else got


async def leaf(v):
    return await Ready(v)


async def middle(v):
    a = await leaf(v)
    b = await leaf(v + 1)
    return a + b


async def outer(n):
    total = 0
    for i in range(n):
        total += await middle(i)
    return total


async def fragile():
    try:
        await Ready(0)
    except KeyError:
        return "recovered"
    return "normal"


async def endless():
    while True:
        await Ready(1)


def drive(coro, replies=None):
    """Run a coroutine to completion by hand; returns (result, suspensions)."""
    replies = list(replies or [])
    suspensions = 0
    value = None
    while True:
        try:
            coro.send(value)
        except StopIteration as stop:
            return stop.value, suspensions
        suspensions += 1
        value = replies.pop(0) if replies else None


def main():
    print("outer", drive(outer(6)))
    print("replies", drive(middle(10), [100, 200]))
    c = fragile()
    c.send(None)
    try:
        c.throw(KeyError("k"))
    except StopIteration as stop:
        print("throw", stop.value)
    e = endless()
    for _ in range(3):
        e.send(None)
    e.close()
    print("closed", e.cr_frame is None)


main()

"""asyncio with deterministic cooperative scheduling only: asyncio.run,
await of coroutines, asyncio.gather of several tasks that yield with
asyncio.sleep(0), an async generator, async with / async for, and an
exception raised in one task and caught by the awaiting coroutine.  No
timers, real sleeps, I/O, or executors."""
import asyncio


async def compute(x):
    await asyncio.sleep(0)
    return x * x


async def step_worker(name, steps, log):
    total = 0
    for i in range(steps):
        total += await compute(i)
        await asyncio.sleep(0)
    log.append(name)
    return total


async def ticker(n):
    for i in range(n):
        await asyncio.sleep(0)
        yield i


class AsyncResource:
    def __init__(self):
        self.state = "new"

    async def __aenter__(self):
        await asyncio.sleep(0)
        self.state = "open"
        return self

    async def __aexit__(self, exc_type, exc, tb):
        self.state = "closed"
        return False


async def failing():
    await asyncio.sleep(0)
    raise LookupError("task failed")


async def main():
    log = []
    results = await asyncio.gather(
        step_worker("a", 3, log),
        step_worker("b", 5, log),
        step_worker("c", 2, log),
    )
    ticks = []
    async for t in ticker(4):
        ticks.append(t)
    async with AsyncResource() as res:
        state_inside = res.state
    try:
        await failing()
    except LookupError as exc:
        err = str(exc)
    outcomes = await asyncio.gather(compute(7), failing(), return_exceptions=True)
    print("asyncio", results, log, ticks, state_inside, res.state, err,
          outcomes[0], type(outcomes[1]).__name__)


asyncio.run(main())

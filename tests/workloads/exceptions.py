"""Exceptions raised and caught across several frames: re-raise, raise from,
finally blocks, exceptions from builtins (C_RAISE / c_exception), an
exception thrown into and raised inside a generator, StopIteration."""


class AppError(Exception):
    pass


def level3(n):
    if n % 4 == 0:
        raise AppError("bad %d" % n)
    if n % 4 == 1:
        return {}["missing"]
    return n


def level2(n):
    try:
        return level3(n)
    finally:
        cleanup(n)


def cleanup(n):
    return n


def level1(n):
    try:
        return level2(n)
    except AppError:
        raise
    except KeyError as exc:
        raise AppError("wrapped") from exc


def catcher(n):
    try:
        return level1(n)
    except AppError as exc:
        return str(exc)


def builtin_raises(items):
    hits = 0
    d = {"a": 1}
    for key in items:
        try:
            d.pop(key)
            hits += 1
        except KeyError:
            hits -= 1
        d["a"] = 1
    it = iter([1, 2])
    try:
        while True:
            next(it)
    except StopIteration:
        pass
    try:
        int("not a number")
    except ValueError:
        hits += 10
    return hits


def failing_gen(n):
    for i in range(n):
        if i == 3:
            raise ValueError("gen failed at 3")
        yield i


def resilient_gen():
    received = []
    while True:
        try:
            value = yield len(received)
            received.append(value)
        except KeyError:
            received.append("caught")
        if len(received) >= 5:
            return received


def drive_gens():
    out = []
    try:
        for v in failing_gen(10):
            out.append(v)
    except ValueError as exc:
        out.append(str(exc))
    g = resilient_gen()
    next(g)
    g.send(1)
    g.throw(KeyError("x"))
    g.send(2)
    try:
        g.throw(KeyError("y"))
        g.send(3)
    except StopIteration as stop:
        out.append(stop.value)
    return out


def nested_finally(depth):
    try:
        if depth == 0:
            raise RuntimeError("bottom")
        return nested_finally(depth - 1)
    finally:
        cleanup(depth)


def main():
    msgs = [catcher(i) for i in range(12)]
    print("catch", msgs[:4])
    print("builtin", builtin_raises(["a", "b", "a", "c"]))
    print("gens", drive_gens())
    try:
        nested_finally(6)
    except RuntimeError as exc:
        print("finally", exc)


main()

"""Generators: plain iteration, send(), yield from delegation, early close,
generator expressions, and a generator that raises."""


def count_up(n):
    i = 0
    while i < n:
        yield i
        i += 1


def squares(n):
    for i in count_up(n):
        yield i * i


def chain_two(a, b):
    yield from count_up(a)
    yield from squares(b)
    return a + b


def delegator():
    result = yield from chain_two(3, 4)
    yield result


def accumulator():
    total = 0
    while True:
        value = yield total
        if value is None:
            break
        total += value
    return total


def use_send():
    gen = accumulator()
    next(gen)
    out = 0
    for v in range(10):
        out = gen.send(v)
    try:
        gen.send(None)
    except StopIteration as stop:
        out += stop.value
    return out


def first_n(gen, n):
    out = []
    for item in gen:
        if len(out) >= n:
            break
        out.append(item)
    return out


def early_close():
    g = count_up(1000)
    taken = first_n(g, 5)
    g.close()
    return taken


def main():
    print("list", list(count_up(10)))
    print("sum", sum(squares(30)))
    print("deleg", list(delegator()))
    print("send", use_send())
    print("close", early_close())
    print("genexpr", sum(x * 2 for x in count_up(20)))


main()

"""List, dict and set comprehensions and generator expressions, nested, with
calls inside the element and condition expressions.  (On 3.12+ list/dict/set
comprehensions are inlined, PEP 709; generator expressions are not.)"""


def f(x):
    return x * 3 + 1


def keep(x):
    return x % 2 == 0


def rows(n):
    # the inner comprehension is on its own line: two code objects with the
    # same (file, line, name) would share one pstats key, and cProfile keeps
    # only one of them (which one depends on memory addresses)
    return [
        [f(c) for c in range(r)]
        for r in range(n)
    ]


def main():
    squares = [f(x) for x in range(100) if keep(x)]
    table = {x: f(x) for x in range(50)}
    distinct = {f(x) % 7 for x in range(60)}
    total = sum(f(x) for x in range(40))
    flat = [v for row in rows(12) for v in row if keep(v)]
    nested_gen = list(
        sum(
            f(v)
            for v in row
        )
        for row in rows(8)
    )
    print("comp", len(squares), sum(table.values()), sorted(distinct), total)
    print("flat", len(flat), nested_gen[-1])


main()

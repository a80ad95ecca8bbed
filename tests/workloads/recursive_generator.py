"""Recursive generators: an in-order tree walk with recursive `yield from`
(every item resumes the whole chain of generator frames, so one code object
is entered recursively on each resume), a deep delegation chain, and a
recursive generator abandoned half-way (closed by refcount)."""


def build(lo, hi):
    if lo > hi:
        return None
    mid = (lo + hi) // 2
    return (build(lo, mid - 1), mid, build(mid + 1, hi))


def inorder(node):
    if node is None:
        return
    left, value, right = node
    yield from inorder(left)
    yield value
    yield from inorder(right)


def chain(depth, n):
    if depth == 0:
        for i in range(n):
            yield i
    else:
        yield from chain(depth - 1, n)


def take(gen, k):
    out = []
    for item in gen:
        out.append(item)
        if len(out) == k:
            break
    return out


def main():
    tree = build(1, 63)
    values = list(inorder(tree))
    deep = sum(chain(60, 20))
    partial = take(inorder(tree), 10)
    print("recgen", len(values), values[:5], deep, partial)


main()

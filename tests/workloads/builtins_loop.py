"""Builtins-heavy loops: len, isinstance, list.append, dict.get, str.join,
sorted, min/max, sum, abs, divmod, str methods, plus builtin methods looked
up once and called through a local name."""


def process(words):
    out = []
    counts = {}
    for w in words:
        if isinstance(w, str) and len(w) > 2:
            out.append(w.upper())
            counts[w] = counts.get(w, 0) + 1
    return out, counts


def numbers(n):
    vals = []
    push = vals.append
    for i in range(n):
        q, r = divmod(i * 7, 5)
        push(abs(q - r * 3))
    return vals


def main():
    words = ["alpha", "be", "gamma", "delta", "alpha", "pi", "omega", "gamma"] * 20
    out, counts = process(words)
    vals = numbers(300)
    joined = ",".join(out[:5])
    keys = sorted(counts)
    print("builtins", len(out), joined, keys, [counts[k] for k in keys])
    print("nums", min(vals), max(vals), sum(vals), sorted(vals)[:5])
    print("str", "-".join(str(v) for v in vals[:8]), " x ".strip(), "a,b".split(","))


main()

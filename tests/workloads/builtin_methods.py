"""Builtin methods called in every way cProfile distinguishes:
bound methods (obj.meth()), unbound method descriptors called with an
explicit self (str.upper(s)), a bound method stored in a variable,
classmethod descriptors (dict.fromkeys, int.from_bytes), module functions,
and builtins passed to map()/sorted()/filter() -- those are called from C,
so neither cProfile nor rprof may report them."""
import operator


def main():
    words = ["Pear", "apple", "Fig", "banana", "cherry"] * 10
    upper_bound = [w.upper() for w in words]
    upper_unbound = [str.upper(w) for w in words]
    via_map = list(map(str.lower, words))
    lengths = list(map(len, words))
    by_lower = sorted(words, key=str.lower)
    getter = {"a": 1, "b": 2}.get
    got = [getter(k, 0) for k in "abcab"]
    got_map = list(map(getter, "abc"))
    lst = []
    for w in words[:5]:
        list.append(lst, w)
    lst.extend(words[:3])
    keys = dict.fromkeys(["x", "y", "z"], 0)
    num = int.from_bytes(b"\x01\x02", "big")
    firsts = list(map(operator.itemgetter(0), words))
    nonempty = list(filter(None, ["", "a", "", "b"]))
    joiner = ", ".join
    text = joiner(sorted(set(by_lower[:3])))
    print("bm", len(upper_bound), upper_unbound[0], via_map[1], sum(lengths),
          by_lower[0], got, got_map, lst, sorted(keys), num, "".join(firsts[:5]),
          nonempty, text)


main()

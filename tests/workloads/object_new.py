"""__new__ overrides that call object.__new__ via super() (cProfile labels
that builtin "<built-in method __new__ of type object at 0x...>", an address
that differs per process), a singleton, a metaclass __call__, and objects
with __del__ finalised at deterministic points by reference counting (never
by the cyclic GC)."""


class Singleton:
    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance


class Interned:
    _cache = {}

    def __new__(cls, value):
        obj = cls._cache.get(value)
        if obj is None:
            obj = object.__new__(cls)
            obj.value = value
            cls._cache[value] = obj
        return obj


class Counting(type):
    created = 0

    def __call__(cls, *args, **kwargs):
        Counting.created += 1
        return super().__call__(*args, **kwargs)


class Tracked(metaclass=Counting):
    def __init__(self, n):
        self.n = n


class Finalized:
    finalized = []

    def __init__(self, tag):
        self.tag = tag

    def __del__(self):
        Finalized.finalized.append(self.tag)


def churn(n):
    for i in range(n):
        obj = Finalized(i)
        obj = None  # __del__ runs here, called from churn
    keep = Finalized("kept")
    del keep  # and here
    return len(Finalized.finalized)


def main():
    same = all(Singleton() is Singleton() for _ in range(5))
    interned = [Interned(i % 4) for i in range(12)]
    tracked = [Tracked(i) for i in range(6)]
    print("new", same, len({id(o) for o in interned}), Counting.created,
          tracked[-1].n, churn(5), Finalized.finalized)


main()

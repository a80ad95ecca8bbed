"""Attribute hooks called by the interpreter and by builtins: __getattr__
(fallback), __getattribute__, __setattr__, data and non-data descriptors,
getattr/hasattr/setattr builtins calling into Python dunders, __slots__."""


class Lazy:
    def __init__(self):
        self.present = 1

    def __getattr__(self, name):
        if name.startswith("x"):
            return len(name)
        raise AttributeError(name)


class Audited:
    def __init__(self):
        object.__setattr__(self, "log", [])

    def __getattribute__(self, name):
        if name != "log":
            object.__getattribute__(self, "log").append(name)
        return object.__getattribute__(self, name)

    def __setattr__(self, name, value):
        self.log.append("set " + name)
        object.__setattr__(self, name, value)

    def method(self):
        return 5


class Positive:
    """A data descriptor."""

    def __set_name__(self, owner, name):
        self.slot = "_" + name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        return getattr(obj, self.slot)

    def __set__(self, obj, value):
        if value < 0:
            raise ValueError(value)
        setattr(obj, self.slot, value)


class Constant:
    """A non-data descriptor."""

    def __init__(self, v):
        self.v = v

    def __get__(self, obj, objtype=None):
        return self.v


class Point:
    __slots__ = ("_x", "_y")
    x = Positive()
    y = Positive()
    origin = Constant(0)

    def __init__(self, x, y):
        self.x = x
        self.y = y


def main():
    lz = Lazy()
    found = [getattr(lz, "x" * i) for i in range(1, 8)]
    missing = sum(1 for i in range(5) if not hasattr(lz, "y%d" % i))
    default = getattr(lz, "zzz", 42)
    a = Audited()
    a.value = 3
    for _ in range(4):
        a.method()
    setattr(a, "other", a.value)
    pts = [Point(i, i + 1) for i in range(20)]
    total = sum(p.x + p.y + p.origin for p in pts)
    errors = 0
    for i in range(-3, 3):
        try:
            pts[0].x = i
        except ValueError:
            errors += 1
    print("attrs", found, missing, default, lz.present, len(a.log), total, errors)


main()

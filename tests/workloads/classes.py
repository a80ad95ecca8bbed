"""Classes: __init__, __repr__, properties (getter/setter), classmethods,
staticmethods, dunder operators, inheritance with super(), __call__,
__eq__/__hash__, __lt__ used by sorted(), class bodies and __init_subclass__."""


class Vector:
    def __init__(self, x, y):
        self.x = x
        self.y = y

    def __repr__(self):
        return "Vector(%r, %r)" % (self.x, self.y)

    def __add__(self, other):
        return Vector(self.x + other.x, self.y + other.y)

    def __mul__(self, k):
        return Vector(self.x * k, self.y * k)

    def __eq__(self, other):
        return (self.x, self.y) == (other.x, other.y)

    def __hash__(self):
        return hash((self.x, self.y))

    def __lt__(self, other):
        return self.norm2 < other.norm2

    def __len__(self):
        return 2

    def __iter__(self):
        yield self.x
        yield self.y

    @property
    def norm2(self):
        return self.x * self.x + self.y * self.y

    @classmethod
    def zero(cls):
        return cls(0, 0)

    @staticmethod
    def dot(a, b):
        return a.x * b.x + a.y * b.y


class Registry:
    names = []

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        Registry.names.append(cls.__name__)


class Shape(Registry):
    def __init__(self, name):
        self._name = name

    def area(self):
        return 0

    def describe(self):
        return "%s:%d" % (self.name, self.area())

    @property
    def name(self):
        return self._name

    @name.setter
    def name(self, value):
        self._name = value


class Rect(Shape):
    def __init__(self, w, h):
        super().__init__("rect")
        self.w = w
        self.h = h

    def area(self):
        return self.w * self.h


class Square(Rect):
    def __init__(self, side):
        super().__init__(side, side)
        self.name = "square"

    def area(self):
        return super().area()


class Multiplier:
    def __init__(self, k):
        self.k = k

    def __call__(self, v):
        return v * self.k


def main():
    vs = [Vector(i, 10 - i) for i in range(10)]
    total = Vector.zero()
    for v in vs:
        total = total + v * 2
    dots = sum(Vector.dot(v, total) for v in vs)
    ordered = sorted(vs)
    seen = set(vs) | {Vector(0, 10)}
    shapes = [Rect(2, 3), Square(4), Shape("blob")]
    desc = [s.describe() for s in shapes]
    triple = Multiplier(3)
    tripled = [triple(i) for i in range(10)]
    print(repr(total), dots, repr(ordered[0]), len(seen), len(total), list(total))
    print(desc, Registry.names, sum(tripled))


main()

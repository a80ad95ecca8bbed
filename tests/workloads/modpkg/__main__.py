# rprof-test: module modpkg
"""Entry point for `python -m modpkg`: calls into the package and into a
submodule, so caller edges cross module files."""
from modpkg import shared
from modpkg.helpers import Accumulator, walk


def main():
    acc = Accumulator()
    for i in range(50):
        acc.add(shared(i))
    print("modpkg", acc.total, sum(walk(5)), __name__)


if __name__ == "__main__":
    main()

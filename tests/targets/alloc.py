"""Allocation-heavy: builds trees of dicts, lists, strings and bytes (small
objects from pymalloc, big ones from malloc/mmap), checks their contents, and
throws them away. Finishes on SIGUSR1."""
from _target import check, check_clean, did_work, install, say, stopped, work_done


def make_node(i):
    return {"id": i, "name": "n%d" % i, "kids": [], "blob": bytes(i % 64)}


def build(n):
    nodes = [make_node(i) for i in range(n)]
    for i in range(1, n):
        nodes[(i - 1) // 2]["kids"].append(nodes[i])
    return nodes[0]


def checksum(root):
    total = 0
    stack = [root]
    while stack:
        node = stack.pop()
        total += node["id"] + len(node["name"]) + len(node["blob"])
        stack.extend(node["kids"])
    return total


def expected(n):
    return sum(i + len(str(i)) + 1 + i % 64 for i in range(n))


def big_buffers(i):
    a = bytearray(1 << 20)
    a[i % len(a)] = 7
    s = "xy" * 50000
    parts = [str(j) for j in range(2000)]
    joined = ",".join(parts)
    check(sum(a) == 7 and len(s) == 100000, "big buffers wrong")
    check(joined.split(",")[1999] == "1999", "join/split wrong")
    return len(joined)


def one_round(i, want):
    n = 300 + i % 7
    got = checksum(build(n))
    check(got == want[n], "checksum of a %d-node tree: %d != %d" % (n, got, want[n]))
    big_buffers(i)


def main():
    install()
    want = {n: expected(n) for n in range(300, 307)}
    one_round(0, want)
    say("ready")
    i = 1
    while not stopped():
        one_round(i, want)
        did_work()
        i += 1
    check(work_done() > 0, "no round completed")
    check_clean()
    say("ok", work_done(), "rounds")


main()

"""A small request-handling service, the example rprof profiles.

It handles synthetic HTTP-like requests: parses them, routes them, talks to
an in-memory "database", renders JSON. Run it for a fixed number of
requests (default), or forever with --forever (for `rprof attach`).

    python3 examples/service.py [--requests N] [--forever]
"""
import argparse
import json
import re
import time
from collections import defaultdict
from functools import lru_cache

ROUTE = re.compile(r"^/(?P<kind>users|orders)/(?P<id>\d+)$")


class Database:
    def __init__(self):
        self.users = {i: {"id": i, "name": "user%d" % i, "tier": i % 3} for i in range(500)}
        self.orders = defaultdict(list)
        for n in range(3000):
            self.orders[n % 500].append({"order": n, "amount": (n * 37) % 1000 / 10})

    def user(self, uid):
        return self.users.get(uid)

    def orders_of(self, uid):
        return self.orders.get(uid, [])


@lru_cache(maxsize=128)
def discount(tier):
    return {0: 0.0, 1: 0.05, 2: 0.1}[tier]


def parse(raw):
    method, path, _ = raw.split(" ", 2)
    return method, path


def total(orders, tier):
    gross = sum(o["amount"] for o in orders)
    return round(gross * (1 - discount(tier)), 2)


def handle_user(db, uid):
    user = db.user(uid)
    if user is None:
        return 404, {"error": "no such user"}
    orders = db.orders_of(uid)
    return 200, {"user": user["name"], "orders": len(orders), "total": total(orders, user["tier"])}


def handle_orders(db, uid):
    orders = sorted(db.orders_of(uid), key=lambda o: -o["amount"])
    return 200, {"top": [o["order"] for o in orders[:3]]}


def route(db, method, path):
    m = ROUTE.match(path)
    if not m or method != "GET":
        return 400, {"error": "bad request"}
    uid = int(m.group("id"))
    if m.group("kind") == "users":
        return handle_user(db, uid)
    return handle_orders(db, uid)


def serve_one(db, n):
    kind = "users" if n % 3 else "orders"
    raw = "GET /%s/%d HTTP/1.1" % (kind, (n * 7) % 520)
    status, body = route(db, *parse(raw))
    return status, json.dumps(body, sort_keys=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--forever", action="store_true")
    args = ap.parse_args()
    db = Database()
    served = defaultdict(int)
    n = 0
    while args.forever or n < args.requests:
        status, _ = serve_one(db, n)
        served[status] += 1
        n += 1
        if args.forever and n % 200 == 0:
            time.sleep(0.01)
    print("served", dict(sorted(served.items())))


if __name__ == "__main__":
    main()

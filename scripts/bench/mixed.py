"""Benchmark workload 2: a mixed, "realistic" request-handler loop.

Generates a deterministic stream of HTTP-like requests as text, then for
each one: parses it (str methods, re), decodes a JSON body, routes it to a
handler that works on small classes, dicts and comprehensions, and renders
a JSON response; every so often it builds a report that sorts with key
functions, groups with generators and formats text.  Python calls,
builtin calls and plain bytecode are mixed roughly as in application code.

Usage: python mixed.py [SCALE]   (SCALE multiplies the work; default 1)
Prints the work's own CPU time (BENCH_CPU_SECONDS <s>) and, as the last
line, its wall time: BENCH_SECONDS <s>.
"""
import json
import random
import re
import sys
import time
from collections import defaultdict

PATH_RE = re.compile(r"^/api/v1/(users|orders|items)(?:/(\d+))?$")
EMAIL_RE = re.compile(r"^[a-z0-9._]+@[a-z]+\.(?:com|org|net)$")
NAMES = ["ada", "brian", "chen", "dana", "emil", "fatima", "goro", "hana",
         "ivan", "jules", "kofi", "lena", "mira", "nils", "olga", "pablo"]
DOMAINS = ["example.com", "mail.org", "corp.net"]
PRODUCTS = ["widget", "gadget", "doohickey", "sprocket", "gizmo", "flange",
            "grommet", "bracket", "lever", "spindle"]


class BadRequest(Exception):
    pass


class Request(object):
    __slots__ = ("method", "path", "headers", "body")

    def __init__(self, method, path, headers, body):
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body

    @classmethod
    def parse(cls, raw):
        head, _, body = raw.partition("\n\n")
        lines = head.split("\n")
        method, path, version = lines[0].split(" ")
        if version != "HTTP/1.1":
            raise BadRequest("version")
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(": ")
            headers[key.strip().lower()] = value.strip()
        data = json.loads(body) if body else None
        return cls(method, path, headers, data)


class User(object):
    def __init__(self, uid, name, email):
        self.uid = uid
        self.name = name
        self.email = email
        self.orders = []

    def to_dict(self):
        return {"id": self.uid, "name": self.name.title(), "email": self.email,
                "orders": len(self.orders)}


class Order(object):
    def __init__(self, oid, user, lines):
        self.oid = oid
        self.user = user
        self.lines = lines

    @property
    def total(self):
        return sum(line["price"] * line["qty"] for line in self.lines)

    def to_dict(self):
        return {"id": self.oid, "user": self.user.uid,
                "lines": [dict(line) for line in self.lines],
                "total": round(self.total, 2)}


class Store(object):
    def __init__(self):
        self.users = {}
        self.orders = {}
        self.next_order = 1
        self.hits = defaultdict(int)

    def create_user(self, body):
        email = body.get("email", "")
        if not EMAIL_RE.match(email):
            raise BadRequest("email")
        uid = len(self.users) + 1
        user = User(uid, body["name"], email)
        self.users[uid] = user
        return user.to_dict()

    def get_user(self, uid):
        user = self.users.get(uid)
        if user is None:
            raise BadRequest("no such user")
        return user.to_dict()

    def create_order(self, body):
        user = self.users.get(body.get("user"))
        if user is None:
            raise BadRequest("no such user")
        lines = [{"product": item["product"], "qty": int(item["qty"]),
                  "price": float(item["price"])}
                 for item in body["items"] if int(item["qty"]) > 0]
        order = Order(self.next_order, user, lines)
        self.next_order += 1
        self.orders[order.oid] = order
        user.orders.append(order)
        return order.to_dict()

    def list_items(self):
        totals = defaultdict(float)
        for order in self.orders.values():
            for line in order.lines:
                totals[line["product"]] += line["price"] * line["qty"]
        ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
        return [{"product": p, "revenue": round(r, 2)} for p, r in ranked[:5]]


def route(store, req):
    m = PATH_RE.match(req.path)
    if not m:
        raise BadRequest("path")
    kind, ident = m.group(1), m.group(2)
    store.hits[(req.method, kind)] += 1
    if kind == "users":
        if req.method == "POST":
            return 201, store.create_user(req.body)
        return 200, store.get_user(int(ident))
    if kind == "orders":
        return 201, store.create_order(req.body)
    return 200, store.list_items()


def handle(store, raw):
    try:
        req = Request.parse(raw)
        status, payload = route(store, req)
    except (BadRequest, KeyError, ValueError) as e:
        status, payload = 400, {"error": str(e)}
    body = json.dumps(payload, sort_keys=True)
    return "HTTP/1.1 %d\nContent-Length: %d\n\n%s" % (status, len(body), body)


def generate_requests(rng, n):
    users = 0
    for i in range(n):
        roll = rng.random()
        if users < 5 or roll < 0.15:
            name = rng.choice(NAMES)
            email = "%s.%d@%s" % (name, i, rng.choice(DOMAINS))
            if roll < 0.01:
                email = email.upper()            # rejected by EMAIL_RE
            body = json.dumps({"name": name, "email": email})
            method, path = "POST", "/api/v1/users"
            users += 1
        elif roll < 0.55:
            items = [{"product": rng.choice(PRODUCTS), "qty": rng.randint(0, 5),
                      "price": "%.2f" % (rng.randint(100, 9999) / 100.0)}
                     for _ in range(rng.randint(1, 4))]
            body = json.dumps({"user": rng.randint(1, users), "items": items})
            method, path = "POST", "/api/v1/orders"
        elif roll < 0.9:
            body = ""
            method, path = "GET", "/api/v1/users/%d" % rng.randint(1, users + 2)
        else:
            body = ""
            method, path = "GET", "/api/v1/items"
        headers = ["Host: api.example.com", "User-Agent: bench/%d" % (i % 7),
                   "X-Request-Id: %08x" % rng.getrandbits(32)]
        if body:
            headers.append("Content-Type: application/json")
        yield "%s %s HTTP/1.1\n%s\n\n%s" % (method, path, "\n".join(headers), body)


def report(store):
    by_domain = defaultdict(list)
    for user in store.users.values():
        by_domain[user.email.rpartition("@")[2]].append(user)
    lines = []
    for domain in sorted(by_domain, key=lambda d: (-len(by_domain[d]), d)):
        spenders = sorted(by_domain[domain],
                          key=lambda u: (-sum(o.total for o in u.orders), u.uid))
        top = ", ".join("%s(%d)" % (u.name, len(u.orders)) for u in spenders[:3])
        lines.append("{:<12} {:>5} users; top: {}".format(domain, len(spenders), top))
    hits = sorted(store.hits.items(), key=lambda kv: kv[1], reverse=True)
    lines.extend("%-4s %-6s %d" % (m, k, n) for (m, k), n in hits)
    return "\n".join(lines)


def work(scale):
    rng = random.Random(12345)
    store = Store()
    n = int(4000 * scale)
    statuses = defaultdict(int)
    size = 0
    reports = []
    for i, raw in enumerate(generate_requests(rng, n)):
        response = handle(store, raw)
        statuses[response.split("\n", 1)[0]] += 1
        size += len(response)
        if i % 500 == 499:
            reports.append(report(store))
    return sorted(statuses.items()), size, len(reports[-1]) if reports else 0


def main():
    scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    t0, c0 = time.perf_counter(), time.process_time()
    result = work(scale)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    print("result %r" % (result,))
    print("BENCH_CPU_SECONDS %.6f" % cpu)
    print("BENCH_SECONDS %.6f" % elapsed)


if __name__ == "__main__":
    main()

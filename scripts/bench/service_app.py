"""A small WSGI service for scripts/bench.py's "service" section, run by
gunicorn (one sync worker) under a bounded loopback load.

Each request does what a small JSON API does: route on the path, parse the
query string, look rows up in an in-memory table, filter and sort them with
key functions, aggregate, render an HTML fragment with a template and
escaping, and serialise a JSON body. About 0.3-1 ms of pure Python a request,
a few hundred profiler events.

With RPROF_BENCH_CPROFILE=1 in the environment the worker runs under
cProfile (cProfile.Profile().enable() when the app is imported, i.e. in the
worker after the fork): the in-process reference line.
"""
import html
import json
import os
import re
import sys
from urllib.parse import parse_qs

if os.environ.get("RPROF_BENCH_CPROFILE") == "1":
    if sys.version_info >= (3, 15):
        from profiling.tracing import Profile
    else:
        from cProfile import Profile
    _PROFILE = Profile()
    _PROFILE.enable()

CATEGORIES = ["books", "music", "tools", "garden", "toys", "food"]
PRODUCTS = [
    {"id": i, "name": "product-%03d" % i, "category": CATEGORIES[i % len(CATEGORIES)],
     "price": round(3.5 + (i * 37 % 200) / 7.0, 2), "stock": (i * 13) % 50,
     "tags": ["t%d" % (i % 7), "t%d" % (i % 11)]}
    for i in range(400)
]
BY_ID = {p["id"]: p for p in PRODUCTS}
ROW = '<tr><td>{id}</td><td>{name}</td><td class="{cls}">{price:.2f}</td><td>{tags}</td></tr>'
ID_PATH = re.compile(r"^/product/(\d+)$")


def _int(q, name, default):
    try:
        return int(q.get(name, [default])[0])
    except (TypeError, ValueError):
        return default


def search(q):
    cat = q.get("category", [None])[0]
    limit = _int(q, "limit", 20)
    max_price = float(q.get("max_price", ["1e9"])[0])
    rows = [p for p in PRODUCTS if (cat is None or p["category"] == cat) and p["price"] <= max_price]
    rows.sort(key=lambda p: (-p["stock"], p["price"], p["name"]))
    rows = rows[:limit]
    total = sum(p["price"] * p["stock"] for p in rows)
    body = "".join(ROW.format(id=p["id"], name=html.escape(p["name"]), price=p["price"],
                              cls="low" if p["stock"] < 5 else "ok",
                              tags=html.escape(",".join(sorted(p["tags"]))))
                   for p in rows)
    return {"count": len(rows), "value": round(total, 2), "html": "<table>%s</table>" % body,
            "ids": [p["id"] for p in rows]}


def product(pid):
    p = BY_ID.get(pid)
    if p is None:
        return None
    related = [r for r in PRODUCTS if r["category"] == p["category"] and r["id"] != pid][:5]
    return {"product": p, "related": [{"id": r["id"], "name": r["name"]} for r in related]}


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    q = parse_qs(environ.get("QUERY_STRING", ""))
    status = "200 OK"
    if path == "/search":
        data = search(q)
    else:
        m = ID_PATH.match(path)
        data = product(int(m.group(1))) if m else None
        if data is None:
            status, data = "404 Not Found", {"error": "not found"}
    body = json.dumps(data, sort_keys=True).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]

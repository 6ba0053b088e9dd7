"""The tutorial's app as two processes over the cluster answers exactly as
one process with memory storage, and each strategy is exact under
concurrent hits from both processes."""
import http.client
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

# The scripted session: (method path, X-API-KEY or None, times), covering
# every route of the tutorial.
SESSION = [
    ("/products", None, 6),            # per-route, per IP: 5 per minute, then the custom 429
    ("/products", "alice", 6),         # per user: alice has her own 5
    ("/products/1", None, 2),
    ("/products/99", None, 1),         # 404 body, still counted
    ("/rb-products", "user1", 11),     # role-based: 10 per minute for users
    ("/rb-products", "admin123", 3),   # 100 per minute for the admin
    ("/flash-sale", None, 11),         # burst + sustained: 10 per minute; 200 per day
    ("/health", None, 3),              # exempt
    ("/popular", None, 12),            # shared: 20 per minute over /popular and /deals
    ("/deals", None, 10),
    ("/about", None, 2),               # the global default, 50 per hour
]

HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining")
TIMES = ("X-RateLimit-Reset", "Retry-After")


def get(port, path, key, conns):
    c = conns.get(port)
    if c is None:
        c = conns[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"X-API-KEY": key} if key else {}
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    body = r.read()
    now = time.time()
    return r.status, json.loads(body), r.headers, now


def run_session(ports):
    """Every step, request i to ports[i % len(ports)]; the answer as
    (status, body, headers, times relative to the request)."""
    out, conns, i = [], {}, 0
    for path, key, times in SESSION:
        for _ in range(times):
            status, body, headers, now = get(ports[i % len(ports)], path, key, conns)
            rel = {}
            if headers.get("X-RateLimit-Reset"):
                rel["X-RateLimit-Reset"] = int(headers["X-RateLimit-Reset"]) - now
            if headers.get("Retry-After"):
                rel["Retry-After"] = int(headers["Retry-After"])
            out.append((f"{path} key={key} #{i}", status, body, {h: headers.get(h) for h in HEADERS}, rel))
            i += 1
    for c in conns.values():
        c.close()
    return out


def test_session_identical_to_memory(uri, apps):
    run = "session-" + uuid.uuid4().hex  # counts of earlier runs stay apart
    one = apps("memory://", key_prefix=run)
    want = run_session([one.port])
    a, b = apps(uri, key_prefix=run), apps(uri, key_prefix=run)
    got = run_session([a.port, b.port])
    assert len(got) == len(want) == sum(n for _, _, n in SESSION)
    statuses = [w[1] for w in want]
    assert statuses.count(429) == 1 + 1 + 1 + 1 + 2, statuses  # /products ×2, rb user, flash-sale, shared ×2
    for g, w in zip(got, want):
        assert g[:4] == w[:4], f"{g[0]}: got {g[1:4]}, memory storage answered {w[1:4]}"
        # Instants differ by when each session ran: within a second of the
        # request they are the same.
        assert g[4].keys() == w[4].keys(), g[0]
        for h in g[4]:
            assert abs(g[4][h] - w[4][h]) <= 1.5, f"{g[0]} {h}: {g[4][h]} vs {w[4][h]}"


@pytest.mark.parametrize("strategy", ["fixed-window", "fixed-window-elastic-expiry", "moving-window"])
def test_strategy_exact(uri, apps, strategy):
    run = strategy + "-" + uuid.uuid4().hex
    a = apps(uri, strategy=strategy, key_prefix=run)
    b = apps(uri, strategy=strategy, key_prefix=run)
    ports = [a.port, b.port]

    def hit(i):
        c = http.client.HTTPConnection("127.0.0.1", ports[i % 2], timeout=30)
        try:
            c.request("GET", "/rb-products", headers={"X-API-KEY": "admin123"})  # 100 per minute
            r = c.getresponse()
            r.read()
            return r.status
        finally:
            c.close()
    with ThreadPoolExecutor(max_workers=32) as pool:
        statuses = list(pool.map(hit, range(1000)))
    assert statuses.count(200) == 100 and statuses.count(429) == 900, (strategy, {s: statuses.count(s) for s in set(statuses)})

"""The storage against a real cluster, and what it does when nodes are
down, slow or answer garbage."""
import http.server
import socket
import threading
import time
import uuid

import pytest
from limits import parse
from limits.errors import ConfigurationError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

import ratemesh_limits
from conftest import NODES, TOKEN, free_port

RUN = uuid.uuid4().hex  # the keys of earlier runs stay apart


def test_operations(uri):
    s = storage_from_string(uri)
    assert s.check()
    t = time.time()
    assert s.incr(RUN + "/ops/fixed", 60) == 1
    assert s.incr(RUN + "/ops/fixed", 60, amount=4) == 5
    assert s.get(RUN + "/ops/fixed") == 5
    assert int(t) + 59 <= s.get_expiry(RUN + "/ops/fixed") <= int(time.time()) + 60
    assert s.get(RUN + "/ops/none") == 0
    first = s.incr(RUN + "/ops/elastic", 30, elastic_expiry=True)
    assert first == 1
    assert s.incr(RUN + "/ops/elastic", 30, elastic_expiry=True) == 2
    s.clear(RUN + "/ops/fixed")
    assert s.get(RUN + "/ops/fixed") == 0
    assert [s.acquire_entry(RUN + "/ops/mw", 3, 60) for _ in range(4)] == [True, True, True, False]
    start, count = s.get_moving_window(RUN + "/ops/mw", 3, 60)
    assert count == 3 and t - 1 <= start <= time.time()
    assert s.acquire_entry(RUN + "/ops/mw2", 3, 60, amount=4) is False
    s.clear(RUN + "/ops/mw")
    assert s.get_moving_window(RUN + "/ops/mw", 3, 60)[1] == 0
    with pytest.raises(NotImplementedError):
        s.reset()


def test_moving_window_strategy(uri):
    storage = storage_from_string(uri)  # the strategy holds it weakly
    limiter = MovingWindowRateLimiter(storage)
    item = parse("3 per minute")
    assert [limiter.hit(item, RUN + "/mw-strategy") for _ in range(4)] == [True, True, True, False]
    reset, remaining = limiter.get_window_stats(item, RUN + "/mw-strategy")
    assert remaining == 0 and time.time() < reset <= time.time() + 60


def test_bounds_raise(uri):
    s = storage_from_string(uri)
    with pytest.raises(ratemesh_limits.RatemeshStorageError, match="key"):
        s.incr("k" * 513, 60)
    with pytest.raises(ratemesh_limits.RatemeshStorageError, match="expiry"):
        s.incr("long", 86401)
    with pytest.raises(ratemesh_limits.RatemeshStorageError, match="amount"):
        s.incr("neg", 60, amount=-1)
    with pytest.raises(ratemesh_limits.RatemeshStorageError, match="limit"):
        s.acquire_entry("big", 5000, 60)


def test_token(uri):
    if not TOKEN:
        pytest.skip("the cluster has no API token")
    s = storage_from_string("ratemesh://" + NODES)
    with pytest.raises(ratemesh_limits.RatemeshStorageError, match="401.*api token required"):
        s.get("k")
    s = storage_from_string("ratemesh://" + NODES, token="not-the-token-at-all")
    with pytest.raises(ratemesh_limits.RatemeshStorageError, match="401.*not valid"):
        s.get("k")


class _Garbage(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.send_response(200)
        self.send_header("Content-Length", "9")
        self.end_headers()
        self.wfile.write(b"not json!")

    def log_message(self, *args):
        pass


def test_failover(uri):
    dead = free_port()
    slow = socket.socket()  # accepts connections (the backlog) and never answers
    slow.bind(("127.0.0.1", 0))
    slow.listen(8)
    garbage = http.server.HTTPServer(("127.0.0.1", 0), _Garbage)
    threading.Thread(target=garbage.serve_forever, daemon=True).start()
    try:
        bad = [f"127.0.0.1:{dead}", f"127.0.0.1:{slow.getsockname()[1]}", f"127.0.0.1:{garbage.server_port}"]
        opts = {"timeout": 0.3}
        if TOKEN:
            opts["token"] = TOKEN
        s = storage_from_string("ratemesh://" + ",".join(bad + [NODES]), **opts)
        assert s.incr(RUN + "/failover", 60) == 1
        assert s.incr(RUN + "/failover", 60) == 2  # the answering node is kept
        down = storage_from_string("ratemesh://" + ",".join(bad), **opts)
        with pytest.raises(ratemesh_limits.RatemeshStorageError) as err:
            down.incr(RUN + "/failover", 60)
        text = str(err.value)
        assert "Connection refused" in text and "timed out" in text and "garbage, not a JSON object: b'not json!'" in text, text
        assert down.check() is False
    finally:
        garbage.shutdown()
        garbage.server_close()
        slow.close()


@pytest.mark.parametrize("bad, why", [
    ("ratemesh://", "names no node"),
    ("ratemesh://127.0.0.1", "has no port"),
    ("ratemesh://127.0.0.1:70000", "bad port"),
    ("ratemesh://127.0.0.1:8081,127.0.0.1:x", "bad port"),
    ("ratemesh://127.0.0.1:8081?colour=blue", "unknown option 'colour'"),
    ("ratemesh://127.0.0.1:8081?timeout=0", "timeout"),
])
def test_bad_uri_at_limiter_init(bad, why):
    from flask import Flask
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address
    with pytest.raises(ConfigurationError, match=why):
        Limiter(get_remote_address, app=Flask(__name__), storage_uri=bad)


def test_swallow_errors_and_fallback():
    """With every node down, swallow_errors lets requests through and the
    in-memory fallback limits them, as with Redis down."""
    from flask import Flask
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address
    down = f"ratemesh://127.0.0.1:{free_port()}?timeout=0.2"
    for kwargs, statuses in [
        ({"swallow_errors": True}, [200, 200, 200]),
        ({"in_memory_fallback_enabled": True}, [200, 200, 429]),
    ]:
        app = Flask(__name__)
        limiter = Limiter(get_remote_address, app=app, storage_uri=down, **kwargs)

        @app.route("/")
        @limiter.limit("2 per minute")
        def index():
            return "ok"
        client = app.test_client()
        assert [client.get("/").status_code for _ in range(3)] == statuses, kwargs
    app = Flask(__name__)
    limiter = Limiter(get_remote_address, app=app, storage_uri=down)

    @app.route("/")
    @limiter.limit("2 per minute")
    def plain():
        return "ok"
    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(ratemesh_limits.RatemeshStorageError, match="no node answered"):
        app.test_client().get("/")

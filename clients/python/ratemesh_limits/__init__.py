"""A `limits` storage whose counts live in a ratemesh cluster.

Importing this module registers the schemes ``ratemesh://`` and
``ratemesh+https://`` with the `limits` library (and so with Flask-Limiter)::

    import ratemesh_limits  # registers the scheme
    limiter = Limiter(get_remote_address, app=app,
                      storage_uri="ratemesh://10.0.0.1:8081,10.0.0.2:8081")

Each operation is one HTTP call to a node's counter API (/v1/counters/...),
which the node forwards to the key's owner: the counts are exact across
every app process. Standard library only.
"""

from __future__ import annotations

import json
import math
import ssl
import threading
import time
import urllib.parse
from typing import Any, Dict, List, Optional, Tuple

from limits.errors import ConfigurationError

from ._http import Closed, Connection, ProtocolError
from limits.storage import MovingWindowSupport, Storage

__all__ = ["RatemeshStorage", "RatemeshStorageError", "parse_uri"]

_StorageError = getattr(__import__("limits.errors", fromlist=["x"]), "StorageError", None)


class RatemeshStorageError(_StorageError or ConnectionError):  # type: ignore[misc]
    """No node of the cluster answered an operation, or every node refused it.

    A subclass of `limits.errors.StorageError` where that exists (limits 3
    and later), else of ConnectionError: Flask-Limiter's swallow_errors and
    in-memory fallback treat it as they treat Redis being down.
    """

    def __init__(self, message: str) -> None:
        if _StorageError is not None:
            try:
                super().__init__(ConnectionError(message))
            except TypeError:
                super().__init__(message)
            self.message = message
        else:
            super().__init__(message)

    def __str__(self) -> str:
        return getattr(self, "message", None) or super().__str__()


# The options a URI's query or the storage options may set.
_OPTIONS = {
    "token": "bearer token of the nodes' API (--api-token)",
    "timeout": "seconds to wait for a node before trying the next (default 1)",
    "ca": "CA certificate file that verifies the nodes (ratemesh+https)",
}


def parse_uri(uri: str, **options: Any) -> Tuple[str, List[Tuple[str, int]], Dict[str, Any]]:
    """Parse ``ratemesh[+https]://host:port[,host:port...][?option=value...]``.

    Returns (scheme, [(host, port)...], options), the storage options
    overriding the URI's. Raises limits' ConfigurationError naming what is
    wrong: no host, a bad port, an unknown option or a bad value.
    """
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("ratemesh", "ratemesh+https"):
        raise ConfigurationError(f"ratemesh storage: scheme {parts.scheme!r} in {uri!r}; want ratemesh:// or ratemesh+https://")
    if parts.path not in ("", "/"):
        raise ConfigurationError(f"ratemesh storage: unexpected path {parts.path!r} in {uri!r}; want ratemesh://host:port[,host:port...]")
    nodes: List[Tuple[str, int]] = []
    for item in parts.netloc.split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host:
            raise ConfigurationError(f"ratemesh storage: node {item!r} in {uri!r} has no port; want host:port")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError(f"ratemesh storage: node {item!r} in {uri!r} has a bad port {port!r}; want 1-65535")
        nodes.append((host.strip("[]"), int(port)))
    if not nodes:
        raise ConfigurationError(f"ratemesh storage: {uri!r} names no node; want ratemesh://host:port[,host:port...]")
    opts: Dict[str, Any] = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    opts.update(options)
    for name in opts:
        if name not in _OPTIONS:
            known = ", ".join(f"{k} ({v})" for k, v in _OPTIONS.items())
            raise ConfigurationError(f"ratemesh storage: unknown option {name!r}; the options are {known}")
    try:
        timeout = float(opts.get("timeout", 1.0))
    except (TypeError, ValueError):
        timeout = float("nan")
    if not timeout > 0 or math.isinf(timeout):
        raise ConfigurationError(f"ratemesh storage: timeout {opts.get('timeout')!r}; want a positive number of seconds")
    opts["timeout"] = timeout
    if "ca" in opts and parts.scheme != "ratemesh+https":
        raise ConfigurationError("ratemesh storage: the ca option needs ratemesh+https://")
    return parts.scheme, nodes, opts


class RatemeshStorage(Storage, MovingWindowSupport):
    """Rate limit storage in a ratemesh cluster, with the semantics of
    `limits`' Redis storage.

    Connections are kept alive (one per node and thread). A node that does
    not answer within the timeout, refuses the connection or answers with
    an error of its own is skipped for the next listed node; when none
    answers the operation raises RatemeshStorageError. Input the nodes
    refuse (a key longer than 512 bytes, an expiry beyond 24 hours) raises
    it at once.
    """

    STORAGE_SCHEME = ["ratemesh", "ratemesh+https"]

    def __init__(self, uri: str, wrap_exceptions: bool = False, **options: Any) -> None:
        scheme, self.nodes, opts = parse_uri(uri, **options)
        self.timeout: float = opts["timeout"]
        self.token: Optional[str] = opts.get("token") or None
        self.https = scheme == "ratemesh+https"
        self.context: Optional[ssl.SSLContext] = None
        if self.https:
            try:
                self.context = ssl.create_default_context(cafile=opts.get("ca"))
            except (OSError, ssl.SSLError) as err:
                raise ConfigurationError(f"ratemesh storage: ca {opts.get('ca')!r}: {err}") from err
        # The request headers every call sends, formatted once.
        self._headers = b"Content-Type: application/json\r\n"
        if self.token:
            self._headers += b"Authorization: Bearer " + self.token.encode() + b"\r\n"
        self._local = threading.local()
        super().__init__(uri)

    @property
    def base_exceptions(self) -> Any:  # limits 3 and later
        return RatemeshStorageError

    # ---- transport ----

    def _conn(self, i: int) -> Connection:
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        c = conns.get(i)
        if c is None:
            host, port = self.nodes[i]
            c = conns[i] = Connection(host, port, self.timeout, self.context)
        return c

    def _drop(self, i: int) -> None:
        c = self._local.conns.pop(i, None)
        if c is not None:
            c.close()

    def _post(self, i: int, op: str, payload: bytes) -> Tuple[int, bytes]:
        """One request to node i. A kept-alive connection the node closed
        while idle fails before the node read anything: it is retried once
        on a new connection."""
        c = self._conn(i)
        reused = c.reused
        try:
            return c.request("POST", "/v1/counters/" + op, payload, self._headers)
        except (Closed, BrokenPipeError, ConnectionResetError):
            if not reused:
                raise
            self._drop(i)
            return self._conn(i).request("POST", "/v1/counters/" + op, payload, self._headers)

    def _call(self, op: str, body: Dict[str, Any]) -> Dict[str, Any]:
        payload = json.dumps(body).encode()
        start = getattr(self._local, "next", 0)
        failures = []
        for k in range(len(self.nodes)):
            i = (start + k) % len(self.nodes)
            host, port = self.nodes[i]
            try:
                status, data = self._post(i, op, payload)
                try:
                    answer = json.loads(data)
                except ValueError:
                    answer = None
                if not isinstance(answer, dict):
                    raise ValueError(f"answered {status} with garbage, not a JSON object: {data[:80]!r}")
            except (OSError, ValueError) as err:
                self._drop(i)
                failures.append(f"{host}:{port}: {err or type(err).__name__}")
                continue
            if status == 200:
                self._local.next = i
                return answer
            message = answer.get("error", data[:200].decode(errors="replace"))
            if status in (400, 401, 413):
                # Every node gives the same answer to the same request.
                raise RatemeshStorageError(f"ratemesh {op} refused by {host}:{port} ({status}): {message}")
            failures.append(f"{host}:{port}: {status} {message}")
            self._drop(i)
        self._local.next = (start + 1) % len(self.nodes)
        raise RatemeshStorageError(f"ratemesh {op}: no node answered: " + "; ".join(failures))

    # ---- the storage interface ----

    def incr(self, key: str, expiry: int, elastic_expiry: bool = False, amount: int = 1) -> int:
        """Add amount to key's counter, which expires expiry seconds after
        the hit that created it, or after every hit when elastic_expiry."""
        body: Dict[str, Any] = {"key": key, "expiry": expiry, "amount": amount}
        if elastic_expiry:
            body["elastic"] = True
        return int(self._call("incr", body)["count"])

    def get(self, key: str) -> int:
        """The counter of key, 0 when it has none."""
        return int(self._call("get", {"key": key})["count"])

    def get_expiry(self, key: str) -> int:
        """When key's counter expires, in Unix seconds (now when it has none)."""
        return int(self._call("get", {"key": key})["expiry"])

    def check(self) -> bool:
        """Whether any node answers and is ready."""
        for i, (host, port) in enumerate(self.nodes):
            try:
                status, _ = self._conn(i).request("GET", "/readyz")
                if status == 200:
                    return True
            except (OSError, ProtocolError):
                self._drop(i)
        return False

    def reset(self) -> Optional[int]:
        """Not supported: a cluster keeps no list of a storage's keys to
        delete (limits' Memcached storage does not support it either)."""
        raise NotImplementedError("ratemesh storage: reset() is not supported; clear(key) each key instead")

    def clear(self, key: str) -> None:
        """Forget key's counter and moving window."""
        self._call("clear", {"key": key})

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        """Take amount entries of key's moving window if fewer than
        limit - amount + 1 lie within the last expiry seconds."""
        return bool(self._call("acquire", {"key": key, "limit": limit, "expiry": expiry, "amount": amount})["acquired"])

    def get_moving_window(self, key: str, limit: int, expiry: int) -> Tuple[int, int]:
        """(time of the newest entry in the window, or now; entries in it),
        as limits' Redis and memory storages report them."""
        w = self._call("window", {"key": key, "limit": limit, "expiry": expiry})
        return int(w["start"]), int(w["count"])

    def close(self) -> None:
        """Close this thread's connections."""
        for i in list(getattr(self._local, "conns", {})):
            self._drop(i)

"""A small HTTP/1.1 client for the counter API: one kept-alive connection,
one request at a time, Content-Length or chunked bodies.

http.client parses every response's headers with the email package, which
costs the app's Python thread more CPU than the whole call costs the node:
with Flask's threads sharing one interpreter lock, that CPU is the storage's
price per request. This client reads the three headers it needs and skips
the rest.
"""

from __future__ import annotations

import socket
import ssl
from typing import Optional, Tuple

# Bounds on what a node may send: a status line and a header line, a
# response's header count and its body. A counter API answer is under
# 200 bytes; anything far beyond these is not a ratemesh node.
_MAX_LINE = 8192
_MAX_HEADERS = 100
_MAX_BODY = 1 << 20


class ProtocolError(ValueError):
    """The peer's answer is not HTTP/1.1 as a ratemesh node speaks it."""


class Closed(ConnectionError):
    """The peer closed a kept-alive connection before answering a request:
    it read nothing of it (Go's server closes idle connections only), so
    the request may be sent again on a new connection."""


class Connection:
    """One connection to host:port, opened on first use. Not thread-safe:
    the storage keeps one per thread and node."""

    def __init__(self, host: str, port: int, timeout: float, context: Optional[ssl.SSLContext]) -> None:
        self.host, self.port, self.timeout, self.context = host, port, timeout, context
        self.sock: Optional[socket.socket] = None
        self.rfile = None
        self.host_header = f"{host}:{port}".encode() if ":" not in host else f"[{host}]:{port}".encode()

    def _open(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.context is not None:
            sock = self.context.wrap_socket(sock, server_hostname=self.host)
        self.sock, self.rfile = sock, sock.makefile("rb")

    @property
    def reused(self) -> bool:
        """Whether the next request goes over a connection opened before."""
        return self.sock is not None

    def close(self) -> None:
        if self.rfile is not None:
            self.rfile.close()
        if self.sock is not None:
            self.sock.close()
        self.sock = self.rfile = None

    def request(self, method: str, path: str, body: bytes = b"", headers: bytes = b"") -> Tuple[int, bytes]:
        """Send one request (headers: preformatted "Name: value\\r\\n"
        lines) and return the status and body of its answer."""
        if self.sock is None:
            self._open()
        head = b"%s %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n\r\n" % (
            method.encode(), path.encode(), self.host_header, headers, len(body))
        self.sock.sendall(head + body)
        return self._response()

    def _line(self) -> bytes:
        line = self.rfile.readline(_MAX_LINE + 1)
        if len(line) > _MAX_LINE:
            raise ProtocolError("a line of the answer is longer than %d bytes" % _MAX_LINE)
        return line

    def _response(self) -> Tuple[int, bytes]:
        status_line = self._line()
        if not status_line:
            raise Closed("the node closed the connection before answering")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError("not an HTTP/1.1 status line: %r" % status_line[:80])
        status = int(parts[1])
        length, chunked, close = self._headers()
        if chunked:
            body = self._chunked()
        elif length is not None:
            body = self._exactly(length)
        else:  # no length: the body ends with the connection
            body = self.rfile.read(_MAX_BODY + 1)
            close = True
            if len(body) > _MAX_BODY:
                raise ProtocolError("an answer longer than %d bytes" % _MAX_BODY)
        if close:
            self.close()
        return status, body

    def _headers(self) -> Tuple[Optional[int], bool, bool]:
        length, chunked, close = None, False, False
        for _ in range(_MAX_HEADERS):
            line = self._line()
            if line in (b"\r\n", b"\n"):
                return length, chunked, close
            if not line.endswith(b"\n"):
                raise ProtocolError("the answer ended within its headers")
            name, sep, value = line.partition(b":")
            if not sep:
                raise ProtocolError("not a header line: %r" % line[:80])
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                if not value.isdigit() or int(value) > _MAX_BODY:
                    raise ProtocolError("bad Content-Length %r" % value[:20])
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = value == b"chunked"
            elif name == b"connection":
                close = value == b"close"
        raise ProtocolError("more than %d header lines" % _MAX_HEADERS)

    def _exactly(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if len(data) != n:
            raise ProtocolError("the answer ended %d bytes short of its length" % (n - len(data)))
        return data

    def _chunked(self) -> bytes:
        out = bytearray()
        while True:
            size = self._line().split(b";", 1)[0].strip()
            try:
                n = int(size, 16)
            except ValueError:
                raise ProtocolError("bad chunk size %r" % size[:20]) from None
            if n == 0:
                while self._line() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return bytes(out)
            if len(out) + n > _MAX_BODY:
                raise ProtocolError("an answer longer than %d bytes" % _MAX_BODY)
            out += self._exactly(n)
            self._exactly(2)  # the chunk's CRLF

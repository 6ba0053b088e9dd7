"""The storage's HTTP client against answers a ratemesh node never gives:
each is refused with an error that names what was wrong, bounded in
memory, or read correctly where HTTP allows it (chunked, no length)."""
import socket
import threading

import pytest

from ratemesh_limits._http import Closed, Connection, ProtocolError


def serve_once(answer: bytes):
    """A server that reads one request and writes answer, then closes."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def run():
        conn, _ = srv.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            conn.sendall(answer)
        srv.close()

    threading.Thread(target=run, daemon=True).start()
    return Connection("127.0.0.1", srv.getsockname()[1], 2.0, None)


@pytest.mark.parametrize("answer,body", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", b"{}"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n", b'{"a":1}'),
    (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\n{\"error\":\"x\"}", b'{"error":"x"}'),
])
def test_answers_http_allows(answer, body):
    c = serve_once(answer)
    assert c.request("POST", "/v1/counters/get", b"{}") == (int(answer.split()[1]), body)


@pytest.mark.parametrize("answer,why", [
    (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.1 status line"),
    (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 200 + b"\r\n", "more than 100 header lines"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 10000 + b"\r\n\r\n", "longer than 8192 bytes"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", "ended 8 bytes short"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffff\r\n", "longer than 1048576 bytes"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "not a header line"),
    (b"HTTP/1.1 200 OK\r\nContent-Le", "ended within its headers"),
])
def test_refuses_what_no_node_sends(answer, why):
    c = serve_once(answer)
    with pytest.raises(ProtocolError, match=why):
        c.request("POST", "/v1/counters/get", b"{}")


def test_closed_before_answer():
    c = serve_once(b"")
    with pytest.raises(Closed):
        c.request("POST", "/v1/counters/get", b"{}")

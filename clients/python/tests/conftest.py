"""Fixtures of the ratemesh_limits tests: the cluster they run against
(RATEMESH_NODES, a comma-separated list of host:port, and RATEMESH_TOKEN,
set by the Go test that starts the nodes), and Flask processes of the
tutorial's app."""
import os
import re
import socket
import subprocess
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

NODES = os.environ.get("RATEMESH_NODES", "")
TOKEN = os.environ.get("RATEMESH_TOKEN", "")


@pytest.fixture(scope="session")
def uri():
    if not NODES:
        pytest.skip("RATEMESH_NODES is not set: run through the Go test TestPython (internal/counterapi)")
    return "ratemesh://" + NODES + ("?token=" + TOKEN if TOKEN else "")


class App:
    """One process of the tutorial's app on a port of its own."""

    def __init__(self, storage_uri, **config):
        env = dict(os.environ, STORAGE_URI=storage_uri, PORT="0", PYTHONPATH=ROOT,
                   FLASK_RATELIMIT_HEADERS_ENABLED="true")
        for k, v in config.items():
            env["FLASK_RATELIMIT_" + k.upper()] = v
        self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "examples", "app.py")],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.log = []
        found = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.log.append(line)
                m = re.search(r"Running on http://127\.0\.0\.1:(\d+)", line)
                if m and not found.is_set():
                    self.port = int(m.group(1))
                    found.set()
        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        if not found.wait(20):
            self.stop()
            raise RuntimeError("the app did not start within 20 s: " + "".join(self.log))

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def apps():
    started = []

    def start(storage_uri, **config):
        a = App(storage_uri, **config)
        started.append(a)
        return a
    yield start
    for a in started:
        a.stop()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

"""Throughput of the tutorial's app with a given storage: starts one app
process (examples/app.py) with STORAGE_URI=argv[1], then for argv[2]
seconds (default 10) 8 threads on kept-alive connections GET /products/1
with a new X-API-KEY each request, so every request counts on a fresh key.
Prints requests per second and the statuses seen."""
import http.client
import os
import re
import subprocess
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    uri, seconds = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    env = dict(os.environ, STORAGE_URI=uri, PORT="0", PYTHONPATH=os.path.dirname(HERE))
    app = subprocess.Popen([sys.executable, os.path.join(HERE, "app.py")], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    port = None
    for line in app.stderr:
        m = re.search(r"Running on http://127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
            break
    threading.Thread(target=lambda: [None for _ in app.stderr], daemon=True).start()
    run = uuid.uuid4().hex[:8]
    counts, lock, stop = {}, threading.Lock(), time.time() + seconds

    def client(n):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        i, seen = 0, {}
        while time.time() < stop:
            c.request("GET", "/products/1", headers={"X-API-KEY": f"{run}-{n}-{i}"})
            r = c.getresponse()
            r.read()
            seen[r.status] = seen.get(r.status, 0) + 1
            i += 1
        with lock:
            for k, v in seen.items():
                counts[k] = counts.get(k, 0) + v
    start = time.time()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.time() - start
    app.terminate()
    app.wait(10)
    print(f"{uri.split(':')[0]}: {sum(counts.values()) / took:.0f} req/s, statuses {counts}")


if __name__ == "__main__":
    main()

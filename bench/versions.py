"""Versions on the release server: what a loaded version costs in memory and gives back when it is
unloaded, and how long a promotion and a rollback take, client side, idle and under load (every
answer checked against the version its header names). Starts and stops the server itself, with its
own repository (hard links to models/) and state folder.

  cargo build --release && .venv/bin/python bench/versions.py

Exit code 1 if an answer under load failed or came from a version other than the one it names.
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from soak import free_port, multipart, rss_once_settled as settled_rss  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BOUNDARY_TYPE = "multipart/form-data; boundary=soakboundary"


def call(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), data


def timed(port, method, path, body=None, headers=None):
    started = time.perf_counter()
    status, _, data = call(port, method, path, body, headers)
    assert status == 200, (method, path, status, data[:300])
    return (time.perf_counter() - started) * 1e3


def start_server(work, *extra, env=None):
    """The release server on a free port, on `work`'s models/ and data/, uncached; returns once it
    answers /health (up to 2 minutes): (port, process)."""
    port = free_port()
    server = subprocess.Popen(
        [str(ROOT / "target/release/food-api"), "--port", str(port), "--prediction-cache-size", "0",
         "--model-repository", str(work / "models"), "--data-dir", str(work / "data"), *extra],
        cwd=ROOT, env={**os.environ, "RUST_LOG": "warn", **(env or {})}, stderr=subprocess.DEVNULL,
    )
    for _ in range(240):
        try:
            if call(port, "GET", "/health")[0] == 200:
                break
        except OSError:
            time.sleep(0.5)
    return port, server


def versions():
    found = []
    for folder in sorted((ROOT / "models/food").iterdir()):
        if not folder.name.startswith("."):
            found.append((json.loads((folder / "manifest.json").read_text())["input_size"], folder))
    return [folder for _, folder in sorted(found)]


def state_of(port, version):
    models = json.loads(call(port, "GET", "/models")[2])
    return next(v["state"] for v in models["models"][0]["versions"] if v["version"] == version)


def summary(times):
    times = sorted(times)
    return f"median {statistics.median(times):.2f} ms, max {times[-1]:.2f} ms over {len(times)}"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=5, help="load/unload cycles for the memory figure")
    parser.add_argument("--load-seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()

    lite0, lite2 = versions()
    v0, v2 = lite0.name, lite2.name
    work = Path(tempfile.mkdtemp(prefix="versions-bench-"))
    for folder in (lite0, lite2):
        (work / "models/food" / folder.name).mkdir(parents=True)
        for file in folder.iterdir():
            os.link(file, work / "models/food" / folder.name / file.name)
    port, server = start_server(work)
    failed = False
    try:
        base = settled_rss(server.pid)
        print(f"RSS with {v0} (stable) loaded: {base / 1e6:.0f} MB")
        loaded, unloaded, load_ms = [], [], []
        for _ in range(args.cycles):
            load_ms.append(timed(port, "POST", f"/models/food/versions/{v2}/load"))
            loaded.append(settled_rss(server.pid))
            timed(port, "POST", f"/models/food/versions/{v2}/unload")
            while state_of(port, v2) != "available":
                time.sleep(0.05)
            unloaded.append(settled_rss(server.pid))
        print(f"load {v2}: {summary(load_ms)} (read, validate, warm up)")
        print("RSS with both loaded: " + ", ".join(f"{r / 1e6:.0f}" for r in loaded) + " MB")
        print("RSS after each unload: " + ", ".join(f"{r / 1e6:.0f}" for r in unloaded) + " MB"
              f" (first +{(unloaded[0] - base) / 1e6:.0f} MB, last +{(unloaded[-1] - base) / 1e6:.0f} MB over the start)")

        timed(port, "POST", f"/models/food/versions/{v2}/load")
        orange = (ROOT / "sample/orange.jpg").read_bytes()
        body = multipart([("image", orange, "orange.jpg")])
        reference = {}
        for version in (v0, v2):
            status, headers, data = call(port, "POST", f"/models/food/versions/{version}/predict", body,
                                         {"Content-Type": BOUNDARY_TYPE})
            reference[version] = json.loads(data)
        promote, rollback = [], []
        for _ in range(20):
            promote.append(timed(port, "PUT", "/models/food/aliases/stable", json.dumps({"version": v2}),
                                 {"Content-Type": "application/json"}))
            rollback.append(timed(port, "POST", "/models/food/rollback"))
        print(f"idle: promotion {summary(promote)}; rollback {summary(rollback)}")

        stop = time.time() + args.load_seconds
        answers, lock = [], threading.Lock()

        def client():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            while time.time() < stop:
                conn.request("POST", "/predict", body=body, headers={"Content-Type": BOUNDARY_TYPE})
                response = conn.getresponse()
                data = response.read()
                with lock:
                    answers.append((response.status, response.getheader("X-Model-Version"), data))

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        [t.start() for t in threads]
        flips, target = [], v2
        while time.time() + 1 < stop:
            time.sleep(1)
            if target == v2:
                flips.append(("promotion", timed(port, "PUT", "/models/food/aliases/stable",
                                                 json.dumps({"version": v2}), {"Content-Type": "application/json"})))
            else:
                flips.append(("rollback", timed(port, "POST", "/models/food/rollback")))
            target = v0 if target == v2 else v2
        [t.join() for t in threads]
        bad = [a for a in answers if a[0] != 200]
        mixed = []
        per_version = {}
        for status, version, data in answers:
            if status != 200:
                continue
            answer = json.loads(data)
            ref = reference.get(version)
            if ref is None or answer["model"]["version"] != version or answer["label"] != ref["label"] \
                    or abs(answer["confidence"] - ref["confidence"]) > 1e-4:
                mixed.append((version, answer["label"], answer["confidence"]))
            per_version[version] = per_version.get(version, 0) + 1
        for kind in ("promotion", "rollback"):
            times = [ms for k, ms in flips if k == kind]
            print(f"under load ({args.clients} clients): {kind} {summary(times)}")
        print(f"answers under load: {len(answers)} ({per_version}), not 200: {len(bad)}, "
              f"answer not matching its version: {len(mixed)}")
        failed = bool(bad or mixed)
    finally:
        server.terminate()
        server.wait(timeout=60)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

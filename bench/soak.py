"""Soak harness: mixed traffic against the release server while it reloads every 10 s, every
third reload a broken model. Loopback only; bounded in time; starts and stops the server itself.

  cargo build --release && .venv/bin/python bench/soak.py --minutes 5

Prints requests by status, unexpected 5xx (anything but a designed 503 or 504), wrong answers, crashes,
RSS after warm-up and at the end, and reload outcomes. Exit code 1 if any check failed.
"""

import argparse
import collections
import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOUNDARY = "soakboundary"


def multipart(fields):
    """fields: list of (name, bytes, filename or None) -> body bytes."""
    out = bytearray()
    for name, data, filename in fields:
        out += f"--{BOUNDARY}\r\n".encode()
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"Content-Disposition: {disposition}\r\n\r\n".encode()
        out += data + b"\r\n"
    out += f"--{BOUNDARY}--\r\n".encode()
    return bytes(out)


def settled_rss(port, pid):
    """RSS once traffic has stopped and only the serving model is left in memory, so that the
    start and end figures compare the same state (mid-reload, two models are alive)."""
    for _ in range(100):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/system_status")
        status = json.loads(conn.getresponse().read())
        conn.close()
        if status["model"]["models_in_memory"] == 1:
            break
        time.sleep(0.1)
    return rss_once_settled(pid)


def rss_once_settled(pid):
    """The allocator hands freed pages back over a few seconds: wait until RSS stops falling."""
    previous = rss_bytes(pid)
    for _ in range(30):
        time.sleep(1)
        now = rss_bytes(pid)
        if abs(now - previous) < 2e6:
            return now
        previous = now
    return previous


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_bytes(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Soak:
    def __init__(self, port, model_dir, seconds, concurrency, pid=None):
        self.port, self.model_dir, self.deadline = port, model_dir, time.time() + seconds
        self.pid, self.rss_samples = pid, []
        self.concurrency = concurrency
        self.lock = threading.Lock()
        self.statuses = collections.Counter()
        self.kinds = collections.Counter()
        self.unexpected, self.wrong, self.errors = [], [], collections.Counter()
        self.reloads = collections.Counter()
        coffee = (ROOT / "sample/coffee.png").read_bytes()
        orange = (ROOT / "sample/orange.jpg").read_bytes()
        self.coffee, self.orange = coffee, orange
        self.bad = [
            multipart([("image", b"", "empty.jpg")]),
            multipart([("image", b"just text", "notes.jpg")]),
            multipart([("image", coffee[: len(coffee) // 2], "half.png")]),
            multipart([("text", b"no image here", None)]),
        ]

    def post(self, conn, path, body, content_type=f"multipart/form-data; boundary={BOUNDARY}"):
        conn.request("POST", path, body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        return response.status, response.read()

    def record(self, kind, status, payload, expect_label=None):
        with self.lock:
            self.statuses[status] += 1
            self.kinds[(kind, status)] += 1
            if status >= 500 and status not in (503, 504):  # designed: queue full, deadline
                self.unexpected.append((kind, status, payload[:200]))
            if expect_label and status == 200:
                label = json.loads(payload)["label"]
                if label != expect_label:
                    self.wrong.append((kind, label))

    def client(self, seed):
        rng = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while time.time() < self.deadline:
            roll = rng.random()
            try:
                if roll < 0.4:  # uncached: the same photo with bytes after the JPEG end marker
                    body = multipart([("image", self.orange + os.urandom(8), "orange.jpg")])
                    self.record("uncached", *self.post(conn, "/predict", body), expect_label="orange")
                elif roll < 0.7:
                    body = multipart([("image", self.coffee, "coffee.png"), ("text", b"a cup of coffee", None)])
                    self.record("cached", *self.post(conn, "/predict", body), expect_label="espresso")
                elif roll < 0.9:
                    self.record("bad", *self.post(conn, "/predict", rng.choice(self.bad)))
                else:
                    conn.request("GET", "/health")
                    response = conn.getresponse()
                    self.record("health", response.status, response.read())
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.errors[type(e).__name__] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def reloader(self, every):
        weights = self.model_dir / json.loads((self.model_dir / "manifest.json").read_text())["weights"]
        good = weights.read_bytes()
        n = 0
        while every and time.time() + every < self.deadline:
            time.sleep(every)
            n += 1
            broken = n % 3 == 0
            if broken:
                tmp = weights.with_suffix(".tmp")
                tmp.write_bytes(good[: len(good) // 3])
                os.replace(tmp, weights)
            # A new connection each time: the server closes idle keep-alive connections after 5 s.
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            status, _ = self.post(conn, "/reload_model", b"", "application/json")
            conn.close()
            self.reloads[("broken" if broken else "good", status)] += 1
            if self.pid:
                self.rss_samples.append(round(rss_bytes(self.pid) / 1e6))
            if broken:
                tmp = weights.with_suffix(".tmp")
                tmp.write_bytes(good)
                os.replace(tmp, weights)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=24)
    parser.add_argument("--queue-capacity", type=int, default=8)
    parser.add_argument("--reload-seconds", type=float, default=10, help="0: no reloads")
    parser.add_argument("--warm-up-seconds", type=float, default=25)
    parser.add_argument("--format", choices=["torchscript", "onnx"], default="torchscript",
                        help="the image model's format (the manifest's \"format\"): onnx serves it on ONNX Runtime")
    args = parser.parse_args()

    binary = ROOT / "target/release/food-api"
    model_dir = Path(tempfile.mkdtemp(prefix="soak-model-"))
    for name in ["manifest.json", "efficientnet_lite0.pt", "efficientnet_lite0.onnx", "minilm_l6_v2.pt", "tokenizer.json"]:
        shutil.copy(ROOT / "checkpoints" / name, model_dir / name)
    if args.format == "onnx":
        manifest = json.loads((model_dir / "manifest.json").read_text())
        manifest.update(format="onnx", weights="efficientnet_lite0.onnx")
        (model_dir / "manifest.json").write_text(json.dumps(manifest))
    shutil.copy(ROOT / "class_mapping.json", model_dir / "class_mapping.json")
    port = free_port()
    server = subprocess.Popen(
        [str(binary), "--port", str(port), "--model-dir", str(model_dir),
         "--class-mapping", str(model_dir / "class_mapping.json"), "--queue-capacity", str(args.queue_capacity),
         # Its own repository and state: the drop-in copy becomes a version there, not in models/.
         "--model-repository", str(model_dir / "repository"), "--data-dir", str(model_dir / "data")],
        cwd=ROOT, env={**os.environ, "RUST_LOG": "warn"}, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(240):
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=1).request("GET", "/health")
                break
            except OSError:
                time.sleep(0.25)
        soak = Soak(port, model_dir, args.minutes * 60, args.concurrency, server.pid)
        # Warm-up includes two reloads: the allocator keeps the pages of the first swapped-out
        # models, which is a one-off step, not growth.
        warm_up = Soak(port, model_dir, args.warm_up_seconds, args.concurrency)
        threads = [threading.Thread(target=warm_up.client, args=(i,)) for i in range(args.concurrency)]
        threads.append(threading.Thread(target=warm_up.reloader, args=(args.reload_seconds,)))
        [t.start() for t in threads]
        [t.join() for t in threads]
        rss_start = settled_rss(port, server.pid)
        started = time.time()
        soak.deadline = started + args.minutes * 60
        threads = [threading.Thread(target=soak.client, args=(i,)) for i in range(args.concurrency)]
        threads.append(threading.Thread(target=soak.reloader, args=(args.reload_seconds,)))
        peak = [rss_start]
        def watch():
            while time.time() < soak.deadline and server.poll() is None:
                peak[0] = max(peak[0], rss_bytes(server.pid))
                time.sleep(0.5)
        threads.append(threading.Thread(target=watch))
        [t.start() for t in threads]
        [t.join() for t in threads]
        elapsed = time.time() - started
        crashed = server.poll() is not None
        rss_end = 0 if crashed else settled_rss(port, server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(model_dir, ignore_errors=True)

    total = sum(soak.statuses.values())
    growth = (rss_end - rss_start) / rss_start * 100 if rss_start else float("nan")
    print(f"soak: {elapsed:.0f} s, concurrency {args.concurrency}, queue {args.queue_capacity}: {total} requests, {total / elapsed:.1f} req/s")
    print("by status:", dict(sorted(soak.statuses.items())))
    print("by kind:", {f"{k} {s}": n for (k, s), n in sorted(soak.kinds.items())})
    print("client-side errors:", dict(soak.errors) or "none")
    print("unexpected 5xx:", len(soak.unexpected), soak.unexpected[:3])
    print("wrong answers:", len(soak.wrong), soak.wrong[:3])
    print("crashed:", crashed, f"exit code {server.returncode}")
    print("reloads:", {f"{k} model -> {s}": n for (k, s), n in sorted(soak.reloads.items())})
    print("RSS after each reload (MB):", soak.rss_samples)
    print(f"RSS (one model in memory, no traffic) after warm-up {rss_start / 1e6:.0f} MB, "
          f"at the end {rss_end / 1e6:.0f} MB ({growth:+.1f}%); peak during the soak {peak[0] / 1e6:.0f} MB")
    good_reloads_ok = all(s == 200 for (k, s) in soak.reloads if k == "good")
    broken_refused = all(s == 422 for (k, s) in soak.reloads if k == "broken")
    failed = soak.unexpected or soak.wrong or crashed or not good_reloads_ok or not broken_refused or soak.errors or growth > 10
    print("result:", "FAILED" if failed else "ok")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

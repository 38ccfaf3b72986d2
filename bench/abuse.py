"""Abuse harness: costly requests, 64 at once per kind (and all kinds mixed), against the release
server with its default settings, while an ordinary client keeps sending photos and GET /health.
Each kind gets a fresh server, so that its peak RSS (VmHWM) is its own. Loopback only; bounded in
time; starts and stops the servers itself.

  cargo build --release && .venv/bin/python bench/abuse.py

Prints, per kind: statuses, errors (any 5xx but the designed 503 refusal, and crashes), the
process's peak RSS, and the ordinary client's p99 for /health and for photos. Exit code 1 if any
target is missed: no 5xx error, no crash, peak RSS under 1.5 GB, /health p99 under 100 ms.
"""

import argparse
import collections
import http.client
import json
import multiprocessing
import os
import select
import socket
import struct
import subprocess
import tempfile
import sys
import threading
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOUNDARY = "abuseboundary"
MODEL = "food"
AT_ONCE = 64


def multipart(fields):
    out = bytearray()
    for name, data, filename in fields:
        out += f"--{BOUNDARY}\r\n".encode()
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"Content-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return bytes(out + f"--{BOUNDARY}--\r\n".encode())


def png_16bit_rgba_zeros(side):
    """A side x side 16-bit RGBA PNG of zeros: side^2 x 8 bytes decoded, a few hundred KB here."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\0" * (1 + side * 8)
    compressor, parts = zlib.compressobj(9), []
    for _ in range(side):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def gif_frame_larger_than_screen():
    """A 1x1 screen whose one frame is 11000x11000 (484 MB as RGBA), with an empty LZW stream."""
    return (b"GIF89a" + bytes([1, 0, 1, 0, 0x80, 0, 0, 0, 0, 0, 255, 255, 255, 0x2C, 0, 0, 0, 0])
            + struct.pack("<HH", 11000, 11000) + bytes([0, 2, 1, 0x2C, 0, 0x3B]))


def gzip_bomb(size):
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\0" * (1 << 20)
    parts = [compressor.compress(zeros) for _ in range(size >> 20)]
    return b"".join(parts) + compressor.flush()


def exchange(port, head, body, stall_after=None, timeout=120):
    """Sends a request and reads the status, stopping the upload as soon as an answer arrives (a
    server that refuses from the head does not read the rest). `stall_after`: bytes of body sent
    before the client stops sending (a slow client). Returns the status, or the error's name."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(head)
        body = memoryview(body)  # slices without copies: the client should not eat the server's CPU
        sent, limit = 0, len(body) if stall_after is None else stall_after
        while sent < limit:
            if select.select([sock], [], [], 0)[0]:
                break
            n = sock.send(body[sent:min(limit, sent + 65536)])
            sent += n
        response = b""
        while b"\r\n" not in response:
            data = sock.recv(65536)
            if not data:
                return "closed"
            response += data
        return int(response.split(b" ", 2)[1])
    except OSError as e:
        return type(e).__name__
    finally:
        sock.close()


def request_head(path, content_type, length, extra=""):
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n{extra}Connection: close\r\n\r\n").encode()


def kinds():
    v2 = f"/v2/models/{MODEL}/infer"
    bomb = gzip_bomb(1 << 30)
    png = multipart([("image", png_16bit_rgba_zeros(6324), "big.png")])
    gif = multipart([("image", gif_frame_larger_than_screen(), "frame.gif")])
    numbers = b'{"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [' + b"1," * 40_000_000 + b'1]}]}'
    slow = b'{"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["' + b"A" * 1_000_000
    form = f"multipart/form-data; boundary={BOUNDARY}"
    return {
        "gzip bomb (1 GB of zeros) to v2": (request_head(v2, "application/json", len(bomb), "Content-Encoding: gzip\r\n"), bomb, None),
        "16-bit RGBA PNG 6324x6324": (request_head("/predict", form, len(png)), png, None),
        "GIF frame 11000x11000 on a 1x1 screen": (request_head("/predict", form, len(gif)), gif, None),
        "v2 body of 40 M numbers (80 MB)": (request_head(v2, "application/json", len(numbers)), numbers, None),
        "v2 client that stalls mid-body": (request_head(v2, "application/json", len(slow) + 10), slow, 1000),
    }


def rss(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def p99(values):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * 0.99))] * 1e3 if values else float("nan")


def ordinary(port, stop, results):
    """The ordinary client, in a process of its own: the attackers' threads would otherwise hold
    Python's GIL and add their waits to its measured latencies."""
    orange = (ROOT / "sample/orange.jpg").read_bytes()
    health, photos, statuses = [], [], collections.Counter()

    def timed(method, path, body=None, headers=None):
        started = time.time()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request(method, path, body=body, headers=headers or {})
            status = conn.getresponse().status
            conn.close()
        except OSError as e:
            status = type(e).__name__
        return time.time() - started, status

    def photos_loop():
        while not stop.is_set():
            body = multipart([("image", orange + os.urandom(8), "orange.jpg")])
            took, status = timed("POST", "/predict", body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
            photos.append(took)
            statuses[f"photo {status}"] += 1

    def health_loop():
        while not stop.is_set():
            took, status = timed("GET", "/health")
            health.append(took)
            statuses[f"health {status}"] += 1
            stop.wait(0.02)

    threads = [threading.Thread(target=photos_loop), threading.Thread(target=health_loop)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    results.put((health, photos, dict(statuses)))


def run(binary, name, attacks):
    port = free_port()
    # Its own state folder: what a run does to aliases stays out of data/.
    data = tempfile.mkdtemp(prefix="abuse-data-")
    server = subprocess.Popen([str(binary), "--port", str(port), "--data-dir", data], cwd=ROOT,
                              env={**os.environ, "RUST_LOG": "error"}, stderr=subprocess.DEVNULL)
    try:
        for _ in range(480):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.25)
        baseline = rss(server.pid, "VmRSS")
        context = multiprocessing.get_context("fork")
        stop, results = context.Event(), context.Queue()
        client = context.Process(target=ordinary, args=(port, stop, results))
        client.start()
        time.sleep(1)  # the ordinary client's traffic is under way before the attack
        statuses, lock = collections.Counter(), threading.Lock()

        def attack(head, body, stall_after):
            status = exchange(port, head, body, stall_after)
            with lock:
                statuses[status] += 1

        started = time.time()
        threads = [threading.Thread(target=attack, args=attacks[i % len(attacks)]) for i in range(AT_ONCE * len(attacks))]
        [t.start() for t in threads]
        [t.join() for t in threads]
        took = time.time() - started
        time.sleep(0.5)  # and goes on a moment after it
        stop.set()
        health, photos, ordinary_statuses = results.get(timeout=120)
        client.join()
        crashed = server.poll() is not None
        peak = 0 if crashed else rss(server.pid, "VmHWM")
    finally:
        server.terminate()
        server.wait(timeout=60)
    errors = sum(n for s, n in statuses.items() if isinstance(s, int) and s >= 500 and s != 503)
    errors += sum(n for s, n in ordinary_statuses.items() if s.split()[1].startswith("5") and s.split()[1] != "503")
    return {
        "kind": name, "requests": sum(statuses.values()), "seconds": round(took, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)},
        "errors": errors, "crashed": crashed,
        "baseline_rss_mb": round(baseline / 1e6), "peak_rss_mb": round(peak / 1e6),
        "ordinary": dict(ordinary_statuses),
        "health_p99_ms": round(p99(health), 1), "photo_p99_ms": round(p99(photos), 1),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=str(ROOT / "target/release/food-api"))
    parser.add_argument("--only", help="run the kinds whose name contains this (and not the mix)")
    args = parser.parse_args()
    every = kinds()
    results = [run(args.binary, name, [attack]) for name, attack in every.items() if not args.only or args.only in name]
    if not args.only:
        results.append(run(args.binary, "all kinds mixed", list(every.values())))
    failed = False
    for r in results:
        missed = r["errors"] or r["crashed"] or r["peak_rss_mb"] >= 1500 or not r["health_p99_ms"] < 100
        failed |= bool(missed)
        print(json.dumps(r))
    print("result:", "FAILED" if failed else "ok")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

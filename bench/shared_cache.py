"""What the shared cache (Redis, --redis-url) costs and gives: one release server at a time, in
interleaved rounds so that the machine's drift falls on all alike, wrk on bench/predict.lua:

- cached c=64 with the in-process LRU (L1) alone, against the same load served by Redis alone
  (--prediction-cache-size 0: every answer an L2 hit, its lookup and decode on every request);
- uncached c=16 without Redis and with it (every request a Redis miss, then a write);
- the Redis lookup as the server times it (timings_ms.cache), over sequential L2 hits.

Redis is Debian's redis-server, started here on a free loopback port (no persistence).

  cargo build --release && .venv/bin/python bench/shared_cache.py [--rounds 3 --seconds 10]
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, Server, bench_images, free_port, http_ok, log, wrk  # noqa: E402


def lookups(url: str, images: list[Path], n: int) -> list[float]:
    """timings_ms.cache of n sequential predictions (the server's own timing of the Redis GET)."""
    out = []
    for i in range(n):
        image = images[i % len(images)].read_bytes()
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n"
                f"Content-Type: image/jpeg\r\n\r\n").encode() + image + \
               f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nImage of food\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(url + "/predict", data=body,
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        answer = json.load(urllib.request.urlopen(request, timeout=30))
        assert answer["cache"] == "shared", answer["cache"]
        out.append(answer["timings_ms"]["cache"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="shared-cache-bench-"))
    images = bench_images(work)
    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL, cwd=work)
    redis_url = f"redis://127.0.0.1:{redis_port}"
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-p", str(redis_port), "PING"], capture_output=True, text=True).stdout.strip() != "PONG":
        if time.monotonic() > deadline:
            sys.exit(f"redis-server did not answer on port {redis_port} within 10 s")
        time.sleep(0.05)
    modes = {
        "l1": ("cached", 64, []),
        "l2 only": ("cached", 64, ["--redis-url", redis_url, "--prediction-cache-size", "0"]),
        "no redis": ("uncached", 16, []),
        "redis": ("uncached", 16, ["--redis-url", redis_url]),
    }
    results = {m: [] for m in modes}
    lookup_ms: list[float] = []
    try:
        for round_ in range(args.rounds):
            for mode, (load, concurrency, flags) in modes.items():
                subprocess.run(["redis-cli", "-p", str(redis_port), "FLUSHALL"], check=True, capture_output=True)
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                server = Server(f"food-api-shared-{mode.replace(' ', '-')}",
                                [str(ROOT / "target/release/food-api"), "--port", str(port),
                                 "--data-dir", str(work / f"data-{round_}-{mode}"), "--history-url", "off", *flags],
                                url, lambda s: http_ok(s.url + "/health"), env={"RUST_LOG": "warn"})
                try:
                    wrk(url + "/predict", images, "uncached", 8, 3)  # warm-up
                    if load == "cached":
                        wrk(url + "/predict", images, "cached", 4, 2)  # the photos' answers in L1, or in Redis
                    if mode == "l2 only":
                        lookup_ms += lookups(url, images, 200)
                    server.wait_idle()
                    r = wrk(url + "/predict", images, load, concurrency, args.seconds)
                    results[mode].append(r)
                    log(f"round {round_ + 1} {mode} {load} c={concurrency}: {r['req_per_s']:.1f} req/s, "
                        f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, statuses {r['statuses']}")
                finally:
                    server.stop()
    finally:
        redis.terminate()
        redis.wait()
    print(f"\n{args.rounds} interleaved rounds, {args.seconds} s per point, medians (runs):")
    for base, other in (("l1", "l2 only"), ("no redis", "redis")):
        b = statistics.median(r["req_per_s"] for r in results[base])
        for mode in (base, other):
            rs = results[mode]
            m = statistics.median(r["req_per_s"] for r in rs)
            p50 = statistics.median(r["p50_ms"] for r in rs)
            p99 = statistics.median(r["p99_ms"] for r in rs)
            print(f"  {modes[mode][0]:8s} c={modes[mode][1]:<3d} {mode:9s} {m:9.1f} req/s  {m / b:.3f}x  "
                  f"p50 {p50:.2f} ms  p99 {p99:.2f} ms  {[round(r['req_per_s'], 1) for r in rs]}")
    lookup_ms.sort()
    print(f"  Redis lookup (timings_ms.cache, {len(lookup_ms)} sequential L2 hits): p50 {statistics.median(lookup_ms):.3f} ms, "
          f"p99 {lookup_ms[int(len(lookup_ms) * 0.99) - 1]:.3f} ms")


if __name__ == "__main__":
    main()

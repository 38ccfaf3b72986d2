"""The same photos over each way in, on one release server at concurrency 16, uncached (every
request's image bytes new) and cached (the same few photos again): multipart POST /predict, JSON
with base64 POST /predict, the Open Inference Protocol's infer in JSON (base64) and with its binary
data extension (raw bytes), and gRPC ModelInfer (raw bytes). HTTP is loaded by wrk with
bench/predict.lua, gRPC by examples/grpc_bench.rs (the same scheme: one connection per concurrent
client, the same uncached tails). Rounds are interleaved so that the machine's drift falls on all
alike; the table gives medians and ratios to multipart.

  cargo build --release --example grpc_bench && .venv/bin/python bench/protocols.py [--rounds 3 --seconds 10]
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, Server, bench_images, free_port, http_ok, log, wrk  # noqa: E402

# (name, HTTP path or None for gRPC, predict.lua style)
WAYS = [
    ("multipart /predict", "/predict", "multipart"),
    ("JSON base64 /predict", "/predict", "json"),
    ("v2 infer, JSON base64", "/v2/models/food/infer", "v2json"),
    ("v2 infer, binary data", "/v2/models/food/infer", "v2binary"),
    ("gRPC ModelInfer", None, "grpc"),
]
CONCURRENCY = 16


def grpc_load(address: str, images: list[Path], mode: str, concurrency: int, seconds: float) -> dict:
    out = subprocess.run([str(ROOT / "target/release/examples/grpc_bench"), address, str(concurrency), str(seconds),
                          mode, *map(str, images)], capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["req_per_s"] = result["requests"] / result["duration_s"]
    if result.get("grpc_errors"):
        result["statuses"]["errors"] = result["grpc_errors"]
    return result


def load(server: Server, grpc: str, way: tuple, images: list[Path], mode: str, concurrency: int, seconds: float) -> dict:
    _, path, style = way
    if path is None:
        return grpc_load(grpc, images, mode, concurrency, seconds)
    return wrk(server.url + path, images, mode, concurrency, seconds, style)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="protocols-bench-"))
    images = bench_images(work)
    port, grpc_port = free_port(), free_port()
    grpc = f"127.0.0.1:{grpc_port}"
    server = Server("food-api-protocols", [str(ROOT / "target/release/food-api"), "--port", str(port),
                                           "--grpc-port", str(grpc_port), "--data-dir", str(work / "data"),
                                           "--model-repository", str(work / "models"), "--history-url", "off"],
                    f"http://127.0.0.1:{port}", lambda s: http_ok(s.url + "/health"), env={"RUST_LOG": "warn"})
    results: dict[tuple[str, str], list[dict]] = {}
    try:
        for way in WAYS:  # each way warmed once, and checked to answer 200s
            r = load(server, grpc, way, images, "uncached", 8, 2)
            assert r["requests"] > 0 and not r.get("grpc_errors") and set(r["statuses"]) <= {"200", "OK"}, (way, r)
        for round_ in range(args.rounds):
            for mode in ("uncached", "cached"):
                for way in WAYS:
                    if mode == "cached":
                        load(server, grpc, way, images, "cached", 4, 1)  # the photos' answers in the cache
                    server.wait_idle()
                    r = load(server, grpc, way, images, mode, CONCURRENCY, args.seconds)
                    results.setdefault((way[0], mode), []).append(r)
                    log(f"round {round_ + 1} {mode} {way[0]}: {r['req_per_s']:.1f} req/s, p50 {r['p50_ms']:.2f} ms, "
                        f"p99 {r['p99_ms']:.2f} ms, statuses {r['statuses']}")
    finally:
        server.stop()
    (ROOT / "bench" / "results" / "protocols.json").write_text(
        json.dumps({f"{w} {m}": rs for (w, m), rs in results.items()}, indent=1))
    print(f"\n{args.rounds} interleaved rounds, {args.seconds} s per point, c={CONCURRENCY}, medians (runs):\n")
    print("| way in | mode | req/s | vs multipart | p50 ms | p99 ms | runs (req/s) |")
    print("|---|---|---:|---:|---:|---:|---|")
    for mode in ("uncached", "cached"):
        base = statistics.median(r["req_per_s"] for r in results[(WAYS[0][0], mode)])
        for way in WAYS:
            rs = results[(way[0], mode)]
            m = statistics.median(r["req_per_s"] for r in rs)
            p50 = statistics.median(r["p50_ms"] for r in rs)
            p99 = statistics.median(r["p99_ms"] for r in rs)
            runs = ", ".join(f"{r['req_per_s']:.1f}" for r in rs)
            print(f"| {way[0]} | {mode} | {m:.1f} | {m / base:.2f}x | {p50:.2f} | {p99:.2f} | {runs} |")


if __name__ == "__main__":
    main()

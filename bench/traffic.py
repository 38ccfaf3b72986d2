"""The throughput cost of routing and of shadow traffic: one release server, uncached photos at
concurrency 16 (wrk, bench/predict.lua), under four policies, in interleaved rounds so that the
machine's drift falls on all alike:

  none       no policy (everything to stable, the route still decided per request)
  routing    a policy that sends 100% to stable: the cost of evaluating a policy (a random draw
             per request: wrk sends no X-User-Id)
  shadow10   routing plus a 10% shadow to Lite2, whose forward pass costs more than Lite0's
  lite2      everything to Lite2: its own throughput, to say what a 10% shadow of it should cost
             (1 / (1/lite0 + 0.1/lite2) requests/s if mirrors cost exactly their forward passes)

  cargo build --release && .venv/bin/python bench/traffic.py [--rounds 3 --seconds 15]
"""

import argparse
import json
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, Server, bench_images, free_port, http_ok, log, wrk  # noqa: E402

POLICIES = {
    "none": None,
    "routing": {"split": [{"target": "stable", "weight": 100}]},
    "shadow10": None,  # filled in with the Lite2 version's name
    "lite2": None,
}


def request(url: str, method: str, body=None) -> dict:
    data = json.dumps(body).encode() if body is not None else b""
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read() or b"{}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="traffic-bench-"))
    images = bench_images(work)
    lite2 = next(p.name for p in sorted((ROOT / "models/food").iterdir()) if p.name.startswith("lite2-"))
    POLICIES["shadow10"] = {"split": [{"target": "stable", "weight": 100}], "shadow": {"target": lite2, "percent": 10}}
    POLICIES["lite2"] = {"split": [{"target": lite2, "weight": 100}]}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = Server("food-api-traffic", [str(ROOT / "target/release/food-api"), "--port", str(port),
                                          "--data-dir", str(work / "data")],
                    url, lambda s: http_ok(s.url + "/health"), env={"RUST_LOG": "warn"})
    rates: dict[str, list[float]] = {name: [] for name in POLICIES}
    try:
        request(f"{url}/models/food/versions/{lite2}/load", "POST")
        wrk(url + "/predict", images, "uncached", 8, 5)  # warm-up
        for round_ in range(args.rounds):
            for name, policy in POLICIES.items():
                if policy is None:
                    request(f"{url}/models/food/routing", "DELETE")
                else:
                    request(f"{url}/models/food/routing", "PUT", policy)
                current = request(f"{url}/models/food/routing", "GET")
                server.wait_idle()
                r = wrk(url + "/predict", images, "uncached", args.concurrency, args.seconds)
                rates[name].append(r["req_per_s"])
                log(f"round {round_ + 1} {name}: {r['req_per_s']:.1f} req/s, p50 {r['p50_ms']:.1f} ms, "
                    f"p99 {r['p99_ms']:.1f} ms, statuses {r['statuses']} (policy generation {current.get('generation')})")
        mirrors = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
        shadow_lines = [line for line in mirrors.splitlines() if line.startswith("food_api_shadow_mirrors_total")]
    finally:
        server.stop()
    base = statistics.median(rates["routing"])
    print(f"\nuncached, concurrency {args.concurrency}, {args.seconds:.0f} s per point, median of rounds:")
    for name, values in rates.items():
        if values:
            median = statistics.median(values)
            print(f"  {name:9s} {median:7.1f} req/s  ({median / base:.3f}x routing)  runs {[round(v, 1) for v in values]}")
    none, alone2 = statistics.median(rates["none"]), statistics.median(rates["lite2"])
    expected = 1 / (1 / none + 0.1 / alone2)
    print(f"  a 10% Lite2 shadow costing exactly its forward passes: {expected:.1f} req/s "
          f"({expected / base:.3f}x); measured {statistics.median(rates['shadow10']) / expected:.3f}x of that")
    print("  " + "\n  ".join(shadow_lines))


if __name__ == "__main__":
    main()

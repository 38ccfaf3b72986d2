"""What the inference history costs: one release server at a time with the history off, on SQLite
(the default) and on PostgreSQL, in interleaved rounds so that the machine's drift falls on all
alike; each measured uncached at concurrency 16 and cached at concurrency 64 (wrk,
bench/predict.lua), with the rows written and dropped in each phase read from /metrics. Then the
writer alone: rows per second it commits on each database (benches/history_writer.rs).

PostgreSQL is Debian's package, started here in a temporary folder on a free loopback port (as the
`postgres` user when run as root), with its default durability (fsync on).

  cargo build --release && .venv/bin/python bench/history.py [--rounds 3 --seconds 15]
"""

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, Server, bench_images, free_port, http_ok, log, wrk  # noqa: E402


class Postgres:
    """A throwaway PostgreSQL cluster: initdb, pg_ctl start, and stop + remove at the end."""

    def __init__(self):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
        if not bins:
            sys.exit("PostgreSQL's server is not installed: apt-get install postgresql (scripts/test.sh does)")
        self.bin = Path(bins[-1]).parent
        # A folder of its own in /tmp (the work folder is private to this user).
        self.dir = Path(tempfile.mkdtemp(prefix="history-bench-pg-"))
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self.port = free_port()
        self.run("initdb", "-D", str(self.dir / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.run("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w", "-o",
                 f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1", "start")
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, program: str, *args: str) -> None:
        subprocess.run(self.as_postgres + [str(self.bin / program), *args], check=True, capture_output=True)

    def sql(self, statement: str) -> None:
        subprocess.run(["psql", self.url, "-q", "-c", statement], check=False, capture_output=True)

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)


def history_rows(url: str) -> dict[str, int]:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    rows = {}
    for line in text.splitlines():
        if line.startswith("food_api_history_rows_total{"):
            outcome = line.split('outcome="')[1].split('"')[0]
            rows[outcome] = int(float(line.rsplit(" ", 1)[1]))
    return rows


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--writer-only", action="store_true", help="only the writer's rows/s on each database")
    args = parser.parse_args()
    if args.writer_only:
        args.rounds = 0
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="history-bench-"))
    images = bench_images(work)
    pg = Postgres()
    modes = {"off": ["--history-url", "off"], "sqlite": [], "postgres": ["--history-url", pg.url]}
    results: dict[str, dict[str, list]] = {m: {"uncached": [], "cached": [], "rows": []} for m in modes}
    try:
        for round_ in range(args.rounds):
            for mode, flags in modes.items():
                pg.sql("TRUNCATE predictions")
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                data = work / f"data-{mode}-{round_}"
                server = Server(f"food-api-history-{mode}", [str(ROOT / "target/release/food-api"), "--port", str(port),
                                                            "--data-dir", str(data), *flags],
                                url, lambda s: http_ok(s.url + "/health"), env={"RUST_LOG": "warn"})
                try:
                    wrk(url + "/predict", images, "uncached", 8, 3)  # warm-up
                    server.wait_idle()
                    for phase, mode_, concurrency in (("uncached", "uncached", 16), ("cached", "cached", 64)):
                        before = history_rows(url) if mode != "off" else {}
                        r = wrk(url + "/predict", images, mode_, concurrency, args.seconds)
                        rows = delta(history_rows(url), before) if mode != "off" else {}
                        results[mode][phase].append(r["req_per_s"])
                        results[mode]["rows"].append((phase, r["requests"], rows))
                        log(f"round {round_ + 1} {mode} {phase} c={concurrency}: {r['req_per_s']:.1f} req/s, "
                            f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, statuses {r['statuses']}, rows {rows}")
                finally:
                    server.stop()
        writer = subprocess.run(["cargo", "bench", "--quiet", "--bench", "history_writer", "--",
                                 f"sqlite://{work / 'writer.sqlite'}", pg.url],
                                cwd=ROOT, capture_output=True, text=True)
        writer_lines = [line for line in writer.stdout.splitlines() if "rows/s" in line] or [writer.stderr[-2000:]]
    finally:
        pg.stop()
    print(f"\n{args.rounds} interleaved rounds, {args.seconds} s per point, median (runs):")
    for phase in ("uncached", "cached") if args.rounds else ():
        off = statistics.median(results["off"][phase])
        for mode in modes:
            values = results[mode][phase]
            median = statistics.median(values)
            print(f"  {phase:8s} {mode:8s} {median:9.1f} req/s  {median / off:.3f}x off  {[round(v, 1) for v in values]}")
    for mode in ("sqlite", "postgres"):
        for phase, requests, rows in results[mode]["rows"]:
            if phase == "cached":
                print(f"  {mode} cached run: {requests} requests, rows {rows}")
    print("writer alone (benches/history_writer.rs):")
    for line in writer_lines:
        print("  " + line)


if __name__ == "__main__":
    main()

"""The compose cluster (deploy/compose: two replicas, Redis, nginx) for real, from its images.
Run by scripts/compose-test.sh once the images are built:

    check_compose.py COMPOSE_FILE STABLE_VERSION NEW_VERSION PHOTO

Brings the cluster up under its own project name on a free loopback port, then checks, through
nginx as a caller would:
1. the time from `docker-compose up` to ready;
2. an answer computed by one replica is a shared (Redis) hit on the other, and that hit's latency;
3. one replica killed (SIGKILL) under load: the other keeps answering; failed requests counted;
4. Redis stopped: still 200s, no shared hits, /health says degraded; Redis back: shared hits again;
5. a new model version rolled out to the replicas one at a time (load, then stable) under load:
   no 5xx, and at the end both serve it.
Prints the figures; exits non-zero listing what failed. Takes the cluster down at the end.
"""
import json
import os
import secrets
import statistics
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from checks import check, failures, free_port

PROJECT = "food-api-test"


class Cluster:
    def __init__(self, compose_file: str):
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.compose = ["docker-compose", "-p", PROJECT, "-f", compose_file]
        # The replicas share the shared cache's signing secret, as `deploy deploy` gives them one.
        self.env = os.environ | {"FOOD_API_PUBLISH_PORT": str(self.port), "FOOD_API_ADMIN_TOKEN": self.token,
                                 "FOOD_API_CACHE_SECRET": secrets.token_hex(32)}

    def run(self, *args: str, check_ok: bool = True) -> str:
        done = subprocess.run(self.compose + list(args), env=self.env, capture_output=True, text=True, timeout=600)
        if check_ok and done.returncode != 0:
            raise RuntimeError(f"docker-compose {' '.join(args)}: {done.stderr}")
        return done.stdout

    def container(self, service: str) -> str:
        return self.run("ps", "-q", service).strip()

    def inspect(self, service: str, template: str) -> str:
        return subprocess.run(["docker", "inspect", "-f", template, self.container(service)],
                              capture_output=True, text=True, check=True).stdout.strip()

    def ip(self, service: str) -> str:
        return self.inspect(service, "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")

    def address(self, service: str) -> str:
        return f"http://{self.ip(service)}:8000"

    def wait_healthy(self, service: str, within: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < within:
            if self.inspect(service, "{{.State.Health.Status}}") == "healthy":
                return time.monotonic() - started
            time.sleep(0.2)
        raise RuntimeError(f"{service} not healthy within {within:.0f} s")


class Load:
    """Predictions through nginx from `threads` threads until stopped; every outcome kept."""

    def __init__(self, base: str, image: bytes, threads: int, tag: str):
        self.base, self.image, self.tag = base, image, tag
        self.stop, self.lock, self.outcomes = threading.Event(), threading.Lock(), []
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(threads)]

    def run(self, worker: int):
        session, i = requests.Session(), 0
        while not self.stop.is_set():
            # Every third request repeats an earlier text (cache hits), the rest are new (forward passes).
            text = f"{self.tag} {worker} {i if i % 3 else max(i - 3, 0)}"
            started = time.monotonic()
            try:
                r = session.post(f"{self.base}/predict", files={"image": ("dish.jpg", self.image), "text": (None, text)}, timeout=30)
                body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
                outcome = (r.status_code, r.headers.get("X-Replica"), body.get("model", {}).get("version"), started)
            except requests.RequestException as e:
                outcome = (type(e).__name__, None, None, started)
            with self.lock:
                self.outcomes.append(outcome)
            i += 1

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join()

    def failed(self):
        return [o for o in self.outcomes if o[0] != 200]


def predict(session, base, image, text):
    r = session.post(f"{base}/predict", files={"image": ("dish.jpg", image), "text": (None, text)}, timeout=30)
    r.raise_for_status()
    return r.headers.get("X-Replica"), r.json()


def main(compose_file: str, stable: str, new: str, photo: str) -> int:
    image = Path(photo).read_bytes()
    cluster = Cluster(compose_file)
    cluster.run("down", "-v", "--remove-orphans", check_ok=False)
    try:
        # 1. Up: `up -d` returns once both replicas are healthy and nginx has started.
        started = time.monotonic()
        cluster.run("up", "-d")
        while True:
            try:
                if requests.get(f"{cluster.base}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() - started > 300:
                raise RuntimeError("not ready through nginx within 300 s")
            time.sleep(0.1)
        ready = time.monotonic() - started
        check(True, f"docker-compose up to ready through nginx: {ready:.1f} s (two replicas, Redis, nginx)")
        session = requests.Session()
        replica, answer = predict(session, cluster.base, image, "first")
        check(answer["model"]["version"] == stable and replica in ("api1", "api2"),
              f"the cluster serves {answer['model']['version']} (expected {stable}), answered by {replica}")

        # 2. Computed on one replica, a shared hit on the other; the hit's cost. Writes to Redis are
        # not awaited (a slow Redis must not slow an answer), so the next request can overtake
        # one: it waits here until Redis holds the answer (counted), then goes to the other replica.
        redis_ip = cluster.ip("redis")
        dbsize = lambda: int(subprocess.run(["redis-cli", "-h", redis_ip, "DBSIZE"], capture_output=True,  # noqa: E731
                                            text=True, check=True).stdout)
        pairs, shared, landed_at_once, hit_ms = 0, 0, 0, []
        for i in range(60):
            before = dbsize()
            first, a = predict(session, cluster.base, image, f"shared {i}")
            if a["cache"] != "miss":
                continue
            landed_at_once += dbsize() > before
            waited = time.monotonic()
            while dbsize() == before and time.monotonic() - waited < 5:
                time.sleep(0.001)
            for _ in range(4):  # nginx's round robin: the next request goes to the other replica
                second, b = predict(session, cluster.base, image, f"shared {i}")
                if second != first:
                    break
            else:
                raise RuntimeError(f"4 requests in a row answered by {first}: no round robin")
            pairs += 1
            shared += b["cache"] == "shared"
            hit_ms.append(b["timings_ms"]["cache"])
        check(pairs >= 50 and shared == pairs,
              f"an answer computed by one replica is a shared hit on the other: {shared} of {pairs} "
              f"(the write had landed before the answer reached the client in {landed_at_once} of {pairs})")
        hit_ms.sort()
        p50 = statistics.median(hit_ms)
        check(p50 < 1.0, f"shared hit latency (the Redis GET round trip, timings_ms.cache): p50 {p50:.3f} ms, "
                         f"max {hit_ms[-1]:.3f} ms over {len(hit_ms)}")

        # 3. One replica killed under load.
        with Load(cluster.base, image, threads=4, tag="failover") as load:
            time.sleep(3)  # load running on both replicas before the kill (no race hidden: counts below)
            before = len(load.outcomes)
            subprocess.run(["docker", "kill", cluster.container("api1")], check=True, capture_output=True)
            killed_at = time.monotonic()
            while time.monotonic() - killed_at < 5:
                time.sleep(0.1)
        after_kill = [o for o in load.outcomes if o[3] >= killed_at]
        served_by = {o[1] for o in after_kill if o[0] == 200}
        check(before > 0 and len(after_kill) > 0 and served_by == {"api2"},
              f"api1 killed under load: {len(after_kill)} requests after the kill, answered by {sorted(served_by)}")
        check(len(load.failed()) == 0,
              f"failed requests while a replica was killed: {len(load.failed())} of {len(load.outcomes)} {load.failed()[:5]}")
        cluster.run("start", "api1")
        back = cluster.wait_healthy("api1", 300)
        seen = set()
        for i in range(20):
            seen.add(predict(session, cluster.base, image, f"back {i}")[0])
        check(seen == {"api1", "api2"}, f"api1 healthy again {back:.1f} s after its restart and back in nginx's rotation: {sorted(seen)}")

        # 4. Redis stopped, then back.
        cluster.run("stop", "redis")
        statuses, levels = [], set()
        for i in range(20):
            r = session.post(f"{cluster.base}/predict", files={"image": ("dish.jpg", image), "text": (None, f"no redis {i % 10}")}, timeout=30)
            statuses.append(r.status_code)
            levels.add(r.json().get("cache"))
        health = {requests.get(f"{cluster.base}/health", timeout=5).json()["shared_cache"] for _ in range(4)}
        check(set(statuses) == {200} and "shared" not in levels,
              f"Redis stopped: {len(statuses)} requests all 200, answers {sorted(levels)} (no shared hits)")
        check(health == {"degraded"}, f"Redis stopped: /health shared_cache {sorted(health)} on both replicas, still ready")
        cluster.run("start", "redis")
        restarted, recovered = time.monotonic(), None
        i = 0
        while recovered is None and time.monotonic() - restarted < 60:
            first, a = predict(session, cluster.base, image, f"redis back {i}")
            second, b = predict(session, cluster.base, image, f"redis back {i}")
            if first != second and b["cache"] == "shared":
                recovered = time.monotonic() - restarted
            i += 1
        check(recovered is not None, f"Redis back: shared hits again {recovered or -1:.1f} s after its restart")

        # 5. A new version rolled out, one replica at a time, under load.
        auth = {"Authorization": f"Bearer {cluster.token}"}
        with Load(cluster.base, image, threads=2, tag="rollout") as load:
            for service in ("api1", "api2"):
                direct = cluster.address(service)
                r = requests.post(f"{direct}/models/food/versions/{new}/load", headers=auth, timeout=300)
                check(r.status_code == 200, f"{service}: load {new}: {r.status_code}")
                r = requests.put(f"{direct}/models/food/aliases/stable", json={"version": new}, headers=auth, timeout=30)
                check(r.status_code == 200, f"{service}: stable -> {new}: {r.status_code} {r.text[:200]}")
                time.sleep(2)  # traffic on the mixed cluster, for the counts below
        outcomes = load.outcomes
        bad = [o for o in outcomes if o[0] != 200]
        check(len(outcomes) > 20 and not bad, f"rollout under load: {len(outcomes)} requests, {len(bad)} not 200 {bad[:5]}")
        last = {}
        for status, replica, version, _ in outcomes:
            last[replica] = version
        check(last == {"api1": new, "api2": new}, f"after the rollout both replicas serve {new}: {last}")
        mixed = {(o[1], o[2]) for o in outcomes}
        check(("api1", new) in mixed and ("api2", stable) in mixed,
              f"one at a time: api1 served {new} while api2 still served {stable}")
    except Exception as e:  # the cluster is taken down and the failure reported either way
        failures.append(f"{type(e).__name__}: {e}")
        print(f"FAIL {type(e).__name__}: {e}")
        print(cluster.run("logs", "--tail", "30", check_ok=False))
    finally:
        cluster.run("down", "-v", "--remove-orphans", check_ok=False)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))

"""The callers' clients (the clients/python package and examples/client.rs) against the real
server, made to answer 503 by a queue of one. Run by tests/api/client.rs:

    check_client.py BASE_URL PHOTO TEXT_FILE RUST_EXAMPLE ADMIN_TOKEN

Exits non-zero, listing what failed. Checks:
- 8 concurrent predictions (different texts: no cache hits, no single flight) through FoodClient
  all succeed, while the server answered some of the tries 503; after each 503 the client waited
  at least its Retry-After; the same through AsyncFoodClient;
- the same load through 4 runs of the Rust example at once: all succeed, and some retried;
- a mistake (a text file as the photo) is not retried: BadInput 415 after one try;
- nothing listening: Unreachable within the deadline, after several tries;
- a server that answers a byte at a time: DeadlineExceeded at the deadline (sync and async), not
  when the server is done; a 200 that is not JSON: UnexpectedResponse;
- versions and routing: a pinned version answers and says so; FoodClient sends no token;
  AdminClient does, and neither shows it;
- warm-up: answers with a label once ready; gives up on a server that never becomes ready.
"""
import asyncio
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))
from food_client import (AdminClient, AsyncFoodClient, BadInput, DeadlineExceeded, FoodClient,  # noqa: E402
                         UnexpectedResponse, Unreachable)

failures = []


def check(condition: bool, what: str) -> None:
    print(("ok   " if condition else "FAIL ") + what)
    if not condition:
        failures.append(what)


class Recorder:
    """Counts the statuses the server answered and the waits the client chose."""

    def __init__(self):
        self.lock, self.statuses, self.waits_after_503 = threading.Lock(), [], []

    def hooks(self):
        """A client's response hook and sleep: each client its own last status."""
        last = {}

        def hook(response):
            with self.lock:
                self.statuses.append(response.status_code)
            last["status"] = response.status_code

        def waited(seconds):
            if last.get("status") == 503:
                with self.lock:
                    self.waits_after_503.append(seconds)

        return hook, waited

    def client(self, base: str, **kwargs) -> FoodClient:
        hook, waited = self.hooks()

        def sleep(seconds):
            waited(seconds)
            time.sleep(seconds)

        return FoodClient(base, event_hooks={"response": [hook]}, sleep=sleep, **kwargs)

    def async_client(self, base: str, **kwargs) -> AsyncFoodClient:
        hook, waited = self.hooks()

        async def async_hook(response):
            hook(response)

        async def sleep(seconds):
            waited(seconds)
            await asyncio.sleep(seconds)

        return AsyncFoodClient(base, event_hooks={"response": [async_hook]}, sleep=sleep, **kwargs)


class Slow(threading.Thread):
    """A fake server for what the real one never does: a 200 that drips its body a byte every
    0.3 s (under any read timeout, past any deadline), or a 200 whose body is an HTML page."""

    def __init__(self, kind: str):
        super().__init__(daemon=True)
        self.kind, self.sock = kind, socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def run(self):
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self.answer, args=(conn,), daemon=True).start()

    def answer(self, conn):
        try:
            conn.recv(65536)
            if self.kind == "html":
                body = b"<html>a proxy's page</html>"
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
            for _ in range(100):
                time.sleep(0.3)
                conn.sendall(b" ")
        except OSError:
            pass
        finally:
            conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(base: str, photo: str, text_file: str, example: str, token: str) -> int:
    image = Path(photo).read_bytes()

    # 1. Load through the Python client on a queue of one.
    recorder = Recorder()
    clients = [recorder.client(base, deadline=60, retries=30) for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: clients[i].predict(image, text=f"dish number {i}"), range(8)))
    check(all(a.label for a in answers), "8 concurrent predictions through FoodClient all answered")
    refused = recorder.statuses.count(503)
    check(refused > 0, f"the server refused some tries with 503 ({refused} of {len(recorder.statuses)}), and the client retried them")
    check(bool(recorder.waits_after_503) and min(recorder.waits_after_503) >= 1.0,
          f"after a 503 the client waited at least Retry-After (1 s): waits {sorted(recorder.waits_after_503)[:3]}...")

    # 1b. The same through the asyncio client, 8 at once on one event loop.
    recorder = Recorder()

    async def eight():
        clients = [recorder.async_client(base, deadline=60, retries=30) for _ in range(8)]
        try:
            return await asyncio.gather(*(c.predict(image, text=f"async dish {i}") for i, c in enumerate(clients)))
        finally:
            await asyncio.gather(*(c.aclose() for c in clients))

    answers = asyncio.run(eight())
    check(all(a.label for a in answers), "8 concurrent predictions through AsyncFoodClient all answered")
    check(recorder.statuses.count(503) > 0 and min(recorder.waits_after_503, default=0) >= 1.0,
          f"the async client retried {recorder.statuses.count(503)} tries refused with 503, each after Retry-After")

    # 2. The Rust example, four at once, while the Python client keeps the queue full for the first
    # 3 s: their first tries meet 503s, and once the load stops their retries (6 tries, 1 s apart
    # at least) get through. Load for as long as they run would leave a queue of one full on every
    # try and make the outcome a draw (seen on a loaded CI machine: 2 of 4 gave up after 6 tries).
    busy = threading.Event()
    load_until = time.monotonic() + 3

    def keep_busy():
        client, i = FoodClient(base, deadline=60, retries=30), 100
        while not busy.is_set() and time.monotonic() < load_until:
            client.predict(image, text=f"background dish {i}")
            i += 1

    with ThreadPoolExecutor(2) as pool:
        background = [pool.submit(keep_busy) for _ in range(2)]
        runs = [subprocess.Popen([example, base, photo, f"rust dish {i}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for i in range(4)]
        outputs = [run.communicate(timeout=120) + (run.returncode,) for run in runs]
        busy.set()
        for b in background:
            b.result()
    check(all(code == 0 and '"label"' in out for out, _, code in outputs),
          f"4 runs of the Rust example all answered: exit codes {[code for _, _, code in outputs]}")
    retries = sum(err.count("retrying in") for _, err, _ in outputs)
    check(retries > 0, f"the Rust example retried ({retries} retries over 4 runs)")
    if failures:
        print("\n".join(err for _, err, _ in outputs))

    # 3. A client's mistake is not retried.
    recorder = Recorder()
    try:
        recorder.client(base).predict(Path(text_file).read_bytes(), filename="notes.txt")
        check(False, "a text file as the photo is refused")
    except BadInput as e:
        check(e.status == 415 and e.code == "unsupported_media_type" and e.attempts == 1 and recorder.statuses == [415]
              and bool(e.request_id),
              f"a text file as the photo: BadInput {e.status} ({e.code}) after {e.attempts} try, not retried")

    # 4. Nothing listening: several tries, then the deadline.
    closed = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    try:
        FoodClient(closed, deadline=2.0, retries=50, backoff=0.05).predict(image)
        check(False, "a closed port fails")
    except Unreachable as e:
        took = time.monotonic() - started
        check(e.status is None and e.attempts >= 3 and took <= 2.5,
              f"a closed port: Unreachable after {e.attempts} tries in {took:.2f} s (deadline 2 s)")

    # 4b. The deadline is hard: a 200 that drips for 30 s is given up on at 2 s, sync and async.
    slow, html = Slow("drip"), Slow("html")
    slow.start()
    html.start()
    started = time.monotonic()
    try:
        FoodClient(slow.url, deadline=2.0, read_timeout=10).predict(image)
        check(False, "a dripping answer fails at the deadline")
    except DeadlineExceeded as e:
        took = time.monotonic() - started
        check(took <= 2.3, f"a dripping answer: DeadlineExceeded after {took:.2f} s (deadline 2 s, read timeout 10 s)")

    async def dripping():
        async with AsyncFoodClient(slow.url, deadline=2.0, read_timeout=10) as client:
            await client.predict(image)

    started = time.monotonic()
    try:
        asyncio.run(dripping())
        check(False, "a dripping answer fails at the deadline (async)")
    except DeadlineExceeded:
        took = time.monotonic() - started
        check(took <= 2.3, f"a dripping answer, async: DeadlineExceeded after {took:.2f} s (deadline 2 s)")
    try:
        FoodClient(html.url).predict(image)
        check(False, "an HTML 200 is refused")
    except UnexpectedResponse as e:
        check(e.status == 200 and e.attempts == 1 and "not JSON" in str(e), f"an HTML 200: UnexpectedResponse ({e})")

    # 4c. Versions and routing headers; no token from FoodClient; AdminClient's token never shown.
    sent = []
    plain = FoodClient(base, deadline=60, retries=30, event_hooks={"request": [lambda r: sent.append(dict(r.headers))]})
    stable = plain.predict(image, text="pinned dish", version="stable")
    check(bool(stable.model_version) and stable.route == "pinned" and bool(stable.request_id),
          f"version='stable' pins it: X-Model-Version {stable.model_version}, X-Route {stable.route}")
    by_path = plain.predict(image, text="by path", model="food", version=stable.model_version)
    check(by_path.model_version == stable.model_version, f"model='food', version={by_path.model_version}: its route answers")
    sticky = plain.predict(image, text="sticky dish", user="user-42")
    check(sticky.route != "pinned" and any(h.get("x-user-id") == "user-42" for h in sent),
          f"user= sends X-User-Id (route {sticky.route})")
    check(not any("authorization" in h for h in sent), "FoodClient sent no Authorization header")
    admin = AdminClient(base, token)
    models = admin.models()
    check(models["models"][0]["name"] == "food" and token not in repr(admin) and "redacted" in repr(admin),
          f"AdminClient lists the models with its token, and shows {admin!r}")

    # 5. Warm-up.
    warm = FoodClient(base, deadline=60, retries=30).warm_up(image, ready_timeout=30)
    check(bool(warm.label), f"warm-up on a ready server: one real prediction ({warm.label})")
    started = time.monotonic()
    try:
        FoodClient(closed, backoff=0.05, max_backoff=0.2).warm_up(image, ready_timeout=1.0)
        check(False, "warm-up on a server that never becomes ready fails")
    except Unreachable as e:
        took = time.monotonic() - started
        check(took <= 1.5, f"warm-up gives up on a server never ready within its 1 s ({took:.2f} s): {e}")

    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))

"""The callers' clients (clients/python/food_client.py and examples/client.rs) against the real
server, made to answer 503 by a queue of one. Run by tests/api/client.rs:

    check_client.py BASE_URL PHOTO TEXT_FILE RUST_EXAMPLE

Exits non-zero, listing what failed. Checks:
- 8 concurrent predictions (different texts: no cache hits, no single flight) through the Python
  client all succeed, while the server answered some of the tries 503; after each 503 the client
  waited at least its Retry-After;
- the same load through 4 runs of the Rust example at once: all succeed, and some retried;
- a mistake (a text file as the photo) is not retried: FoodAPIError 415 after one try;
- nothing listening: the client gives up within its deadline, after several tries;
- warm-up: answers with a label once ready; gives up on a server that never becomes ready.
"""
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))
from food_client import FoodAPIError, FoodClient  # noqa: E402

failures = []


def check(condition: bool, what: str) -> None:
    print(("ok   " if condition else "FAIL ") + what)
    if not condition:
        failures.append(what)


class Recorder:
    """Counts the statuses the server answered and the waits the client chose."""

    def __init__(self):
        self.lock, self.statuses, self.waits_after_503 = threading.Lock(), [], []

    def client(self, base: str, **kwargs) -> FoodClient:
        client = FoodClient(base, **kwargs)
        last_status = threading.local()

        def hook(response, *args, **kw):
            with self.lock:
                self.statuses.append(response.status_code)
            last_status.value = response.status_code

        def sleep(seconds):
            if getattr(last_status, "value", None) == 503:
                with self.lock:
                    self.waits_after_503.append(seconds)
            time.sleep(seconds)

        client.session.hooks["response"].append(hook)
        client.sleep = sleep
        return client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(base: str, photo: str, text_file: str, example: str) -> int:
    image = Path(photo).read_bytes()

    # 1. Load through the Python client on a queue of one.
    recorder = Recorder()
    clients = [recorder.client(base, deadline=60, retries=30) for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: clients[i].predict(image, text=f"dish number {i}"), range(8)))
    check(all("label" in a for a in answers), "8 concurrent predictions through the Python client all answered")
    refused = recorder.statuses.count(503)
    check(refused > 0, f"the server refused some tries with 503 ({refused} of {len(recorder.statuses)}), and the client retried them")
    check(bool(recorder.waits_after_503) and min(recorder.waits_after_503) >= 1.0,
          f"after a 503 the client waited at least Retry-After (1 s): waits {sorted(recorder.waits_after_503)[:3]}...")

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
    except FoodAPIError as e:
        check(e.status == 415 and e.code == "unsupported_media_type" and e.attempts == 1 and recorder.statuses == [415],
              f"a text file as the photo: FoodAPIError {e.status} ({e.code}) after {e.attempts} try, not retried")

    # 4. Nothing listening: several tries, then the deadline.
    closed = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    try:
        FoodClient(closed, deadline=2.0, retries=50, backoff=0.05).predict(image)
        check(False, "a closed port fails")
    except FoodAPIError as e:
        took = time.monotonic() - started
        check(e.status is None and e.attempts >= 3 and took <= 2.5,
              f"a closed port: gave up after {e.attempts} tries in {took:.2f} s (deadline 2 s)")

    # 5. Warm-up.
    warm = FoodClient(base, deadline=60, retries=30).warm_up(image, ready_timeout=30)
    check("label" in warm, f"warm-up on a ready server: one real prediction ({warm.get('label')})")
    started = time.monotonic()
    try:
        FoodClient(closed, backoff=0.05, max_backoff=0.2).warm_up(image, ready_timeout=1.0)
        check(False, "warm-up on a server that never becomes ready fails")
    except FoodAPIError as e:
        took = time.monotonic() - started
        check(took <= 1.5, f"warm-up gives up on a server never ready within its 1 s ({took:.2f} s): {e}")

    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))

"""A small client for food-api, for callers that must not fail on a blip: a per-try timeout,
retries with exponential backoff and full jitter on connection errors, timeouts, 429, 502, 503
and 504 (a prediction changes nothing, so trying it again is safe), Retry-After honoured, one
overall deadline that no retry outlives, and a warm-up for before an event: wait until the server
is ready, then send one real prediction so that the model's first forward pass is not a user's.

    from food_client import FoodClient
    client = FoodClient("http://127.0.0.1:8000", deadline=10)
    client.warm_up(open("dish.jpg", "rb").read())
    answer = client.predict(open("dish.jpg", "rb").read(), text="a bowl of ramen")
    print(answer["label"], answer["confidence"], answer["cache"])

Needs `requests` (pip install requests). Copy this file into your project: it is the whole client.
"""
from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass, field

import requests

RETRIED_STATUSES = frozenset({429, 502, 503, 504})


class FoodAPIError(Exception):
    """The server's answer was an error that retrying cannot fix (or the deadline passed).

    status is the HTTP status (None when no answer came), code the server's error_type when it sent
    its JSON error ({"error": "<sentence>", "error_type": "overloaded"}), attempts how many tries."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None, attempts: int = 1):
        super().__init__(message)
        self.status, self.code, self.attempts = status, code, attempts


@dataclass
class FoodClient:
    base_url: str
    timeout: float = 10.0  # seconds for one try (connect and read)
    deadline: float = 30.0  # seconds for a whole call, retries and waits included
    retries: int = 5  # tries after the first
    backoff: float = 0.1  # first backoff's ceiling; doubled each retry ...
    max_backoff: float = 5.0  # ... up to this
    token: str | None = None  # the admin token, for management routes only
    session: requests.Session = field(default_factory=requests.Session)
    sleep: callable = time.sleep  # replaceable in tests

    def predict(self, image: bytes, text: str | None = None, top_k: int | None = None,
                filename: str = "image.jpg") -> dict:
        """POST /predict (multipart); the answer's JSON."""
        files = {"image": (filename, image)}
        if text is not None:
            files["text"] = (None, text)
        params = {"top_k": top_k} if top_k is not None else None
        return self.request("POST", "/predict", files=files, params=params).json()

    def ready(self) -> bool:
        """One look at readiness (GET /v2/health/ready), no retries."""
        try:
            return self.session.get(self.base_url + "/v2/health/ready", timeout=self.timeout).status_code == 200
        except requests.RequestException:
            return False

    def warm_up(self, image: bytes, ready_timeout: float = 120.0, text: str | None = None) -> dict:
        """Waits (with backoff) until the server is ready, then sends one real prediction; its answer.

        Raises FoodAPIError when the server is not ready within ready_timeout seconds."""
        give_up = time.monotonic() + ready_timeout
        attempt = 0
        while not self.ready():
            wait = self._backoff(attempt)
            if time.monotonic() + wait > give_up:
                raise FoodAPIError(f"{self.base_url} was not ready within {ready_timeout:.0f} s", attempts=attempt + 1)
            self.sleep(wait)
            attempt += 1
        return self.predict(image, text=text)

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        """One call with retries; the successful response, or FoodAPIError."""
        give_up = time.monotonic() + self.deadline
        headers = kwargs.pop("headers", {}) or {}
        if self.token:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        last = "no try was made"
        status = code = None
        for attempt in range(self.retries + 1):
            left = give_up - time.monotonic()
            if left <= 0:
                break
            retry_after = None
            try:
                response = self.session.request(method, self.base_url + path, headers=headers,
                                                timeout=min(self.timeout, left), **kwargs)
            except (requests.ConnectionError, requests.Timeout) as e:
                last, status, code = f"{type(e).__name__}: {e}", None, None
            else:
                if response.ok:
                    return response
                status, code, last = response.status_code, *_error_of(response)
                if status not in RETRIED_STATUSES:
                    raise FoodAPIError(f"{status}: {last}", status, code, attempt + 1)
                retry_after = _retry_after(response.headers.get("Retry-After"))
            if attempt == self.retries:
                break
            # The server's Retry-After when it gave one (with jitter on top, so that callers it
            # turned away together do not come back together), else the backoff.
            wait = self._backoff(attempt) if retry_after is None else retry_after + random.uniform(0, self.backoff)
            if time.monotonic() + wait >= give_up:
                break
            self.sleep(wait)
        raise FoodAPIError(f"gave up after {attempt + 1} tries within {self.deadline:.1f} s: {last}",
                           status, code, attempt + 1)

    def _backoff(self, attempt: int) -> float:
        # Full jitter (AWS architecture blog, "Exponential Backoff And Jitter").
        return random.uniform(0, min(self.max_backoff, self.backoff * 2 ** attempt))


def _error_of(response: requests.Response) -> tuple[str | None, str]:
    try:
        body = response.json()
        return body.get("error_type"), body.get("error", response.text)
    except (ValueError, AttributeError):
        return None, response.text[:200]


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110, 10.2.3)."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())

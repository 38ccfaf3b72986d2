"""What the sync and async clients share: when to retry, how long to wait, how to read an answer."""
from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import httpx

from .errors import (DeadlineExceeded, Overloaded, ServerError, UnexpectedResponse, Unreachable,
                     error_for)

RETRIED_STATUSES = frozenset({429, 502, 503, 504})


@dataclass
class Policy:
    connect_timeout: float = 3.0  # seconds to connect, per try
    read_timeout: float = 10.0  # seconds between bytes of the answer, per try
    deadline: float = 30.0  # seconds for a whole call, retries and waits included: a hard limit
    retries: int = 5  # tries after the first
    backoff: float = 0.1  # first backoff's ceiling; doubled each retry ...
    max_backoff: float = 5.0  # ... up to this

    def timeout(self, left: float) -> httpx.Timeout:
        return httpx.Timeout(min(self.read_timeout, left), connect=min(self.connect_timeout, left),
                             pool=min(self.connect_timeout, left))

    def wait(self, attempt: int, retry_after: Optional[float]) -> float:
        """The pause before try attempt + 2: the server's Retry-After when it gave one (with jitter
        on top, so that callers it turned away together do not come back together), else the
        backoff with full jitter (AWS architecture blog, "Exponential Backoff And Jitter")."""
        if retry_after is not None:
            return retry_after + random.uniform(0, self.backoff)
        return random.uniform(0, min(self.max_backoff, self.backoff * 2 ** attempt))


@dataclass
class Call:
    """One call's clock and what its last try met."""

    policy: Policy
    started: float = field(default_factory=time.monotonic)
    attempts: int = 0
    last: str = "no try was made"
    status: Optional[int] = None
    code: Optional[str] = None
    request_id: Optional[str] = None

    abandoned: bool = False  # the last try was given up at the deadline

    def left(self) -> float:
        return self.policy.deadline - (time.monotonic() - self.started)

    def answered(self, response: httpx.Response) -> Optional[float]:
        """A try's answer: None when it succeeded; the Retry-After (or 0.0 when none) when it
        may be retried; raises the typed error when it may not."""
        if response.is_success:
            return None
        error = error_for(response, self.attempts)
        self.status, self.code, self.last, self.request_id = error.status, error.code, str(error), error.request_id
        if response.status_code not in RETRIED_STATUSES:
            raise error
        hint = retry_after(response.headers.get("retry-after"))
        return -1.0 if hint is None else hint

    def failed(self, error: Exception) -> None:
        """A try that got no answer (connection refused or reset, a timeout)."""
        self.last, self.status, self.code = f"{type(error).__name__}: {error}", None, None

    def next_wait(self, attempt: int, hint: float) -> Optional[float]:
        """The pause before the next try, or None when no try fits before the deadline."""
        if attempt >= self.policy.retries:
            return None
        wait = self.policy.wait(attempt, None if hint < 0 else hint)
        return wait if wait < self.left() else None

    def steps(self, retry: bool = True):
        """The retry loop without its I/O, for the blocking and the asyncio client alike: yields
        ("try", seconds left) and is sent the try's outcome (the response, the httpx.TransportError,
        or None when the try was given up at the deadline); yields ("sleep", seconds) between tries
        and is sent None; returns the successful response; raises the typed error when it gives up."""
        for attempt in range(self.policy.retries + 1 if retry else 1):
            left = self.left()
            if left <= 0:
                break
            self.attempts = attempt + 1
            outcome = yield "try", left
            if outcome is None:
                self.abandoned = True
                break
            if isinstance(outcome, Exception):
                self.failed(outcome)
                hint = -1.0
            else:
                hint = self.answered(outcome)
                if hint is None:
                    return outcome
            wait = self.next_wait(attempt, hint)
            if wait is None:
                break
            yield "sleep", wait
        raise self.give_up()

    def give_up(self) -> Exception:
        tries = f"after {self.attempts} tr{'y' if self.attempts == 1 else 'ies'} within {self.policy.deadline:.1f} s"
        args = (self.status, self.code, self.attempts, self.request_id)
        if self.abandoned:
            return DeadlineExceeded(f"no answer within the deadline, {tries}: {self.last}", *args)
        if self.status in (429, 503):
            return Overloaded(f"the server stayed full, {tries}: {self.last}", *args)
        if self.status is not None:
            return ServerError(f"gave up {tries}: {self.last}", *args)
        if self.left() <= 0:
            return DeadlineExceeded(f"no answer within the deadline, {tries}: {self.last}", *args)
        return Unreachable(f"no answer {tries}: {self.last}", *args)


def retry_after(value: Optional[str]) -> Optional[float]:
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


def json_of(response: httpx.Response, attempts: int) -> Any:
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("content-type", "no content type")
        raise UnexpectedResponse(f"{response.status_code} with a body that is not JSON ({kind}): "
                                 f"{response.text[:120]!r}", response.status_code, None, attempts,
                                 response.headers.get("x-request-id")) from None


@dataclass
class Prediction:
    """An answer of /predict: the label, its confidence, the top classes, and which version
    answered, by which route, from which cache level."""

    label: str
    confidence: float
    top_k: list
    cache: Optional[str]
    model_version: Optional[str]
    route: Optional[str]
    request_id: Optional[str]
    raw: dict = field(repr=False)

    @classmethod
    def of(cls, response: httpx.Response, attempts: int) -> "Prediction":
        body = json_of(response, attempts)
        if not isinstance(body, dict) or not isinstance(body.get("label"), str):
            raise UnexpectedResponse(f"{response.status_code} without a label: {str(body)[:120]}",
                                     response.status_code, None, attempts, response.headers.get("x-request-id"))
        headers = response.headers
        return cls(body["label"], body.get("confidence"), body.get("top_k", []), body.get("cache"),
                   headers.get("x-model-version"), headers.get("x-route"), headers.get("x-request-id"), body)


def predict_request(image: bytes, text: Optional[str], top_k: Optional[int], filename: str,
                    model: Optional[str], version: Optional[str], user: Optional[str]) -> dict:
    """The method, path and parts of a prediction. A model named: its route (`version`, default
    `stable`); else /predict, with X-Model-Version pinning a version or alias when given."""
    files = {"image": (filename, image)}
    data = {"text": text} if text is not None else None
    headers = {}
    if model is not None:
        path = f"/models/{model}/versions/{version or 'stable'}/predict"
    else:
        path = "/predict"
        if version is not None:
            headers["X-Model-Version"] = version
    if user is not None:
        headers["X-User-Id"] = user
    params = {"top_k": top_k} if top_k is not None else None
    return {"method": "POST", "path": path, "files": files, "data": data, "headers": headers, "params": params}

"""The blocking clients: FoodClient for predictions (never sends a token), AdminClient for the
management routes (always does)."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable, Optional

import httpx

from ._policy import Call, Policy, Prediction, json_of, predict_request
from .errors import FoodAPIError


class _Blocking:
    def __init__(self, base_url: str, *, policy: Policy, headers: dict, sleep: Callable[[float], None],
                 transport: Optional[httpx.BaseTransport], event_hooks: Optional[dict]):
        self.base_url = base_url.rstrip("/")
        self.policy = policy
        self._sleep = sleep
        self._http = httpx.Client(base_url=self.base_url, headers=headers, transport=transport,
                                  event_hooks=event_hooks or {})
        # Each try runs on this pool so that the caller waits no longer than the deadline, even
        # for a server that sends its answer a byte at a time (httpx's read timeout is per read).
        # A try given up on ends within its own timeouts.
        self._tries = ThreadPoolExecutor(max_workers=16, thread_name_prefix="food-client")

    def _send(self, method: str, path: str, *, retry: bool = True, **kwargs: Any) -> tuple[httpx.Response, Call]:
        call = Call(self.policy)
        steps = call.steps(retry)
        step, outcome = next(steps), None
        try:
            while True:
                kind, seconds = step
                if kind == "sleep":
                    self._sleep(seconds)
                    outcome = None
                else:
                    outcome = self._try(method, path, seconds, kwargs)
                step = steps.send(outcome)
        except StopIteration as done:
            return done.value, call

    def _try(self, method: str, path: str, left: float, kwargs: dict) -> Optional[object]:
        """One try within `left` seconds: the response, the transport error, or None at the deadline."""
        timeout = self.policy.timeout(left)
        try:
            return self._tries.submit(self._http.request, method, path, timeout=timeout, **kwargs).result(timeout=left)
        except FutureTimeout:
            return None
        except httpx.TransportError as e:
            return e

    def close(self) -> None:
        self._http.close()
        self._tries.shutdown(wait=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FoodClient(_Blocking):
    """Predictions with retries (connection errors, timeouts, 429/502/503/504, Retry-After
    honoured) within a hard deadline. Sends no credentials."""

    def __init__(self, base_url: str, *, connect_timeout: float = 3.0, read_timeout: float = 10.0,
                 deadline: float = 30.0, retries: int = 5, backoff: float = 0.1, max_backoff: float = 5.0,
                 sleep: Callable[[float], None] = time.sleep, transport: Optional[httpx.BaseTransport] = None,
                 event_hooks: Optional[dict] = None):
        policy = Policy(connect_timeout, read_timeout, deadline, retries, backoff, max_backoff)
        super().__init__(base_url, policy=policy, headers={}, sleep=sleep, transport=transport, event_hooks=event_hooks)

    def __repr__(self) -> str:
        return f"FoodClient({self.base_url!r}, deadline={self.policy.deadline})"

    def predict(self, image: bytes, text: Optional[str] = None, top_k: Optional[int] = None, *,
                filename: str = "image.jpg", model: Optional[str] = None, version: Optional[str] = None,
                user: Optional[str] = None) -> Prediction:
        """One photo (and an optional text). version pins a version or alias, model names a model
        (its `stable` unless version says), user is the sticky key of a weighted split."""
        request = predict_request(image, text, top_k, filename, model, version, user)
        response, call = self._send(request.pop("method"), request.pop("path"), **request)
        return Prediction.of(response, call.attempts)

    def ready(self) -> bool:
        """One look at readiness (GET /v2/health/ready), no retries."""
        try:
            timeout = self.policy.timeout(self.policy.connect_timeout)
            return self._http.get("/v2/health/ready", timeout=timeout).status_code == 200
        except httpx.HTTPError:
            return False

    def warm_up(self, image: bytes, ready_timeout: float = 120.0, text: Optional[str] = None) -> Prediction:
        """Waits (with backoff) until the server is ready, then sends one real prediction, so that
        the model's first forward pass is not a user's. Raises Unreachable if never ready."""
        from .errors import Unreachable

        give_up, attempt = time.monotonic() + ready_timeout, 0
        while not self.ready():
            wait = self.policy.wait(attempt, None)
            if time.monotonic() + wait > give_up:
                raise Unreachable(f"{self.base_url} was not ready within {ready_timeout:.0f} s", attempts=attempt + 1)
            self._sleep(wait)
            attempt += 1
        return self.predict(image, text=text)


class AdminClient(_Blocking):
    """The management routes, with the admin token (Authorization: Bearer). Reads are retried;
    changes are tried once unless repeating them is harmless (PUT)."""

    def __init__(self, base_url: str, token: str, *, connect_timeout: float = 3.0, read_timeout: float = 60.0,
                 deadline: float = 120.0, retries: int = 3, sleep: Callable[[float], None] = time.sleep,
                 transport: Optional[httpx.BaseTransport] = None):
        if not token:
            raise FoodAPIError("an admin client needs the admin token")
        policy = Policy(connect_timeout, read_timeout, deadline, retries)
        super().__init__(base_url, policy=policy, headers={"Authorization": f"Bearer {token}"}, sleep=sleep,
                         transport=transport, event_hooks=None)

    def __repr__(self) -> str:
        return f"AdminClient({self.base_url!r}, token=[redacted])"

    def _json(self, method: str, path: str, retry: bool, **kwargs: Any) -> Any:
        response, call = self._send(method, path, retry=retry, **kwargs)
        return json_of(response, call.attempts)

    def models(self) -> dict:
        return self._json("GET", "/models", True)

    def version(self, model: str, version: str) -> dict:
        return self._json("GET", f"/models/{model}/versions/{version}", True)

    def load(self, model: str, version: str) -> dict:
        return self._json("POST", f"/models/{model}/versions/{version}/load", False)

    def unload(self, model: str, version: str) -> dict:
        return self._json("POST", f"/models/{model}/versions/{version}/unload", False)

    def set_alias(self, model: str, alias: str, version: str) -> dict:
        return self._json("PUT", f"/models/{model}/aliases/{alias}", True, json={"version": version})

    def rollback(self, model: str) -> dict:
        return self._json("POST", f"/models/{model}/rollback", False)

    def routing(self, model: str) -> dict:
        return self._json("GET", f"/models/{model}/routing", True)

    def set_routing(self, model: str, policy: dict) -> dict:
        return self._json("PUT", f"/models/{model}/routing", True, json=policy)

    def deployments(self, limit: int = 100) -> list:
        return self._json("GET", "/deployments", True, params={"limit": limit})["deployments"]

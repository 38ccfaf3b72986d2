"""The asyncio client: FoodClient's predictions with `await`, the deadline kept by cancelling the
try in flight."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Optional

import httpx

from ._policy import Call, Policy, Prediction, predict_request
from .errors import Unreachable


class AsyncFoodClient:
    """As FoodClient, for asyncio code: `async with AsyncFoodClient(url) as client:
    answer = await client.predict(photo)`. Sends no credentials."""

    def __init__(self, base_url: str, *, connect_timeout: float = 3.0, read_timeout: float = 10.0,
                 deadline: float = 30.0, retries: int = 5, backoff: float = 0.1, max_backoff: float = 5.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 transport: Optional[httpx.AsyncBaseTransport] = None, event_hooks: Optional[dict] = None):
        self.base_url = base_url.rstrip("/")
        self.policy = Policy(connect_timeout, read_timeout, deadline, retries, backoff, max_backoff)
        self._sleep = sleep
        self._http = httpx.AsyncClient(base_url=self.base_url, transport=transport, event_hooks=event_hooks or {})

    def __repr__(self) -> str:
        return f"AsyncFoodClient({self.base_url!r}, deadline={self.policy.deadline})"

    async def _send(self, method: str, path: str, **kwargs: Any) -> tuple[httpx.Response, Call]:
        call = Call(self.policy)
        steps = call.steps()
        step = next(steps)
        try:
            while True:
                kind, seconds = step
                if kind == "sleep":
                    await self._sleep(seconds)
                    step = steps.send(None)
                else:
                    step = steps.send(await self._try(method, path, seconds, kwargs))
        except StopIteration as done:
            return done.value, call

    async def _try(self, method: str, path: str, left: float, kwargs: dict) -> Optional[object]:
        """One try within `left` seconds: the response, the transport error, or None at the
        deadline (the try is cancelled)."""
        request = self._http.request(method, path, timeout=self.policy.timeout(left), **kwargs)
        try:
            return await asyncio.wait_for(request, timeout=left)
        except asyncio.TimeoutError:
            return None
        except httpx.TransportError as e:
            return e

    async def predict(self, image: bytes, text: Optional[str] = None, top_k: Optional[int] = None, *,
                      filename: str = "image.jpg", model: Optional[str] = None, version: Optional[str] = None,
                      user: Optional[str] = None) -> Prediction:
        request = predict_request(image, text, top_k, filename, model, version, user)
        response, call = await self._send(request.pop("method"), request.pop("path"), **request)
        return Prediction.of(response, call.attempts)

    async def ready(self) -> bool:
        try:
            timeout = self.policy.timeout(self.policy.connect_timeout)
            return (await self._http.get("/v2/health/ready", timeout=timeout)).status_code == 200
        except httpx.HTTPError:
            return False

    async def warm_up(self, image: bytes, ready_timeout: float = 120.0, text: Optional[str] = None) -> Prediction:
        give_up, attempt = time.monotonic() + ready_timeout, 0
        while not await self.ready():
            wait = self.policy.wait(attempt, None)
            if time.monotonic() + wait > give_up:
                raise Unreachable(f"{self.base_url} was not ready within {ready_timeout:.0f} s", attempts=attempt + 1)
            await self._sleep(wait)
            attempt += 1
        return await self.predict(image, text=text)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

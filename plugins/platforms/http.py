"""What every HTTP connector shares: one client, and the platform's answers mapped to
the core's error kinds (401 → reconnect, 429 → wait Retry-After, 5xx/timeouts → retry,
other 4xx → refused)."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx

from server.platforms import AuthExpired, Config, Connector, RateLimited, Rejected, Transient

DEFAULT_RETRY_AFTER_S = 30.0
MAX_BODY_IN_ERROR = 300


def retry_after(response: httpx.Response) -> float:
    """Seconds to wait: Retry-After as seconds or an HTTP date, else a default."""
    raw = response.headers.get("retry-after", "").strip()
    if raw.isdigit():
        return float(raw)
    if raw:
        parsed = email.utils.parsedate_to_datetime(raw) if "," in raw else None
        if parsed is not None:
            return max(0.0, parsed.timestamp() - time.time())
    return DEFAULT_RETRY_AFTER_S


class HttpConnector(Connector):
    """A connector that speaks HTTP to `base_url` with an httpx client."""

    def __init__(self, config: Config, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(config, timeout)
        self.client = httpx.Client(base_url=self.base_url, timeout=timeout, follow_redirects=False,
                                   transport=transport, headers={"User-Agent": "fieldcal/1"})

    def auth_headers(self) -> dict[str, str]:
        return {}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.auth_headers(), **kwargs.pop("headers", {})}
        try:
            response = self.client.request(method, path, headers=headers, **kwargs)
        except httpx.TimeoutException as exc:
            raise Transient(f"{self.name}: {method} {path} timed out") from exc
        except httpx.HTTPError as exc:
            raise Transient(f"{self.name}: {method} {path} failed: {type(exc).__name__}") from exc
        return self.check_response(method, path, response)

    def check_response(self, method: str, path: str, response: httpx.Response) -> httpx.Response:
        status = response.status_code
        if status < 300:
            return response
        said = f"{self.name}: {method} {path} answered {status}: {response.text[:MAX_BODY_IN_ERROR]}"
        if status == 401:
            raise AuthExpired(said)
        if status == 429:
            raise RateLimited(said, retry_after(response))
        if status >= 500 or status == 408:
            raise Transient(said)
        raise Rejected(said)

"""`ServeOptions`: the server's limits and batching settings (the `bertforge serve` flags), TEI's defaults."""

from __future__ import annotations

from dataclasses import dataclass

from bertforge.errors import BertforgeError


@dataclass(frozen=True)
class ServeOptions:
    max_batch_tokens: int = 16384  # padded tokens (rows x longest) in one forward pass
    max_batch_size: int = 16  # model inputs (rows) in one forward pass: more, longest first, go in the next one
    max_wait_ms: float = 5.0  # how long a request waits for others to batch with, when the model is idle
    batching: bool = True  # False: one request per forward pass (a baseline for load tests)
    max_client_batch_size: int = 32  # inputs in one request (more: 413)
    max_concurrent_requests: int = 512  # /predict requests queued or running, once their body is in (more: 429)
    max_body_bytes: int = 2_000_000  # request body size (more: 413, answered before the rest is read)
    api_key: str | None = None  # Bearer token required on every route but /health and the static pages
    read_timeout: float = 30.0  # seconds for a request's headers, then as many for its body (more: 408 / closed)
    drain_timeout: float = 25.0  # seconds a stop waits for requests in flight, then answers the rest 503
    auto_truncate: bool = False  # a request without "truncate" is cut to fit (TEI >= 1.9's default is True)
    cors_allow_origin: tuple[str, ...] = ("*",)  # origins a browser may call from ("*": any, TEI's default)
    metrics_need_key: bool = False  # /metrics wants the API key too (by default scrapers need none, as in TEI)

    def __post_init__(self) -> None:
        limits = ("max_batch_tokens", "max_batch_size", "max_client_batch_size", "max_concurrent_requests")
        for name in (*limits, "max_body_bytes"):
            if getattr(self, name) < 1:
                raise BertforgeError(f"{name} must be at least 1, not {getattr(self, name)}")
        for name in ("read_timeout", "drain_timeout"):
            if not getattr(self, name) > 0:
                raise BertforgeError(f"{name} must be more than 0 seconds, not {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise BertforgeError(f"max_wait_ms must not be negative, not {self.max_wait_ms}")
        if not all(origin.strip() for origin in self.cors_allow_origin):
            raise BertforgeError("--cors-allow-origin: an origin is empty")
        if self.api_key is not None and not self.api_key.strip():
            raise BertforgeError("the API key is empty")

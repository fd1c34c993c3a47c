"""`Drain`: the requests a stopping server cuts short once its drain deadline (`--drain-timeout`) has passed.

A stop waits for the requests in flight, but one that never ends (a client holding a half-sent body) would hold
the process until an orchestrator's SIGKILL, losing every answer still due. The app runs each wait of a request
(for its body, for the model) under `drain.waiting(what)`; at the deadline the server calls `drain.expire()`,
which ends those waits: each request is answered 503, and one log line says how many were cut short and why.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Iterator

import anyio

from bertforge.serve.errors import ApiError

log = logging.getLogger("bertforge")


class Drain:
    """The waits of requests in flight, each cancellable at the drain deadline. Used on the event loop only."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self._waits: dict[anyio.CancelScope, str] = {}  # a request's current wait -> what it waits for

    @contextlib.contextmanager
    def waiting(self, what: str) -> Iterator[None]:
        """Around one wait of a request ("sending its body", "waiting for the model"); raises a 503 `ApiError`
        if the drain deadline ended it."""
        with anyio.CancelScope() as scope:
            self._waits[scope] = what
            try:
                yield
            finally:
                del self._waits[scope]
        if scope.cancelled_caught:
            raise ApiError(
                "Unhealthy",
                f"the server is stopping and its drain deadline ({self.timeout:g} s, --drain-timeout) passed "
                f"while this request was {what}",
            )

    def expire(self) -> None:
        """The deadline has passed: answer every request still waiting with 503, and log how many there were."""
        if not self._waits:
            return
        counts = collections.Counter(self._waits.values())
        for scope in self._waits:
            scope.cancel()
        log.warning(
            "drain deadline of %g s (--drain-timeout) passed: answered %d request(s) still in flight with 503 (%s)",
            self.timeout,
            sum(counts.values()),
            ", ".join(f"{n} {what}" for what, n in counts.items()),
        )

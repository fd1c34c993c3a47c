"""Dynamic batching: the inputs of concurrent requests run through the model together.

One worker thread owns the `Predictor` (a model is not thread-safe, and the CPU's threads are better spent inside
one forward pass than on several): it featurizes each request, queues its features (rows), and runs forward passes
of rows taken oldest round first, longest first, up to a budget of padded tokens (`max_batch_tokens`: rows x longest
row) and at most `max_batch_size` rows: sorted by length, a crowd of queued requests becomes several passes of
similar lengths, each padded to its own longest (one wide pass padded every short sentence to the longest; on MiniLM
at 32 clients it served fewer requests/s). Requests that came while the model was busy go in the next pass at once;
a pass waits for more only while other requests are still arriving (read, being checked: the app brackets that
with `arriving()`; a body still on its way does not count, so a slow client holds no pass back), and then at most
until its oldest request has waited `max_wait_ms`, so a lone request is never kept waiting for company that is not
coming. Each request's rows are post-processed together, exactly as `Predictor.predict` would, and the result goes
back to its own request through an asyncio future.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bertforge.errors import BertforgeError
from bertforge.inference import Predictor
from bertforge.inference.predictor import padded_width
from bertforge.serve.errors import ApiError
from bertforge.serve.prometheus import Metrics
from bertforge.tasks.task import MODEL_INPUTS, Features, Outputs

log = logging.getLogger("bertforge")

_STOP = object()  # tells the worker to finish what it holds and end


@dataclass
class Timing:
    """What answering one request took, for TEI's response headers; the worker fills it before the answer."""

    tokenization: float = 0.0  # seconds turning its inputs into features
    queue: float = 0.0  # seconds from submission to its first forward pass
    inference: float = 0.0  # seconds of the forward passes its rows ran in (shared with other requests)
    tokens: int = 0  # model inputs (word-pieces and special tokens) of its features
    truncated: int = 0  # of its inputs, those cut to fit the model


@dataclass(eq=False)
class _Job:
    """One request: its examples, and the features and outputs gathered for them."""

    examples: Sequence
    truncate: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)
    features: Features | None = None
    outputs: list[Outputs | None] = field(default_factory=list)
    left: int = 0  # rows without outputs yet
    timing: Timing = field(default_factory=Timing)

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        """Hand the result (or error) to the request's event loop; a request gone meanwhile is skipped."""

        def resolve() -> None:
            if not self.future.done():
                if error is None:
                    self.future.set_result(result)
                else:
                    self.future.set_exception(error)

        try:
            self.loop.call_soon_threadsafe(resolve)
        except RuntimeError:  # the event loop has closed: nobody is waiting
            pass


@dataclass(eq=False)
class _Row:
    job: _Job
    index: int  # the feature's index in its job
    length: int
    round: int  # the gathering round that queued it: older rounds go first, so no row waits forever


class Batcher:
    """`await batcher.submit(examples, truncate)` -> (the task's results, the features' outputs) of one request,
    computed in forward passes shared with concurrent requests."""

    def __init__(
        self,
        predictor: Predictor,
        metrics: Metrics,
        *,
        max_batch_tokens: int = 16384,
        max_batch_size: int = 16,
        max_wait_ms: float = 5.0,
        batching: bool = True,
        limit: str = "",
    ):
        self.predictor, self.metrics = predictor, metrics
        self.max_batch_tokens, self.max_wait, self.batching = max_batch_tokens, max_wait_ms / 1000, batching
        self.max_batch_size = max_batch_size
        self.limit = limit  # how long an input may be, for the error of one that is longer and not truncated
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="bertforge-batcher", daemon=True)
        self._round = 0
        self._stopped = False
        self._arriving = 0  # requests read and being checked, not yet submitted

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Finish every queued request, then end the worker; requests after this are refused (503)."""
        self._stopped = True
        self._jobs.put(_STOP)
        self._thread.join()

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Around the checking of a request whose body has arrived, up to its `submit`: a pass may wait for it."""
        self._arriving += 1  # changed on the event loop's thread only, read by the worker
        try:
            yield
        finally:
            self._arriving -= 1

    def submit(self, examples: Sequence, truncate: bool, timing: Timing | None = None) -> asyncio.Future:
        """Queue one request's examples; the future gets (the task's results, the features' outputs) or an
        `ApiError`. `timing` is filled in on the way."""
        if self._stopped:
            raise ApiError("Unhealthy", "the server is shutting down")
        loop = asyncio.get_running_loop()
        job = _Job(examples, truncate, loop, loop.create_future(), timing=timing or Timing())
        self._jobs.put(job)
        return job.future

    # ---------------------------------------------------------------------------------------- the worker
    def _work(self) -> None:
        pending: list[_Row] = []
        stopping = False
        while pending or not stopping:
            rows: list[_Row] = []
            try:
                if not pending:
                    stopping = self._take(pending, block=True)
                if self.batching and not stopping:
                    stopping = self._gather(pending)
                self._drop_gone(pending)
                if pending:
                    rows = self._select(pending)
                    self._forward(rows, pending)
            except Exception as exc:  # a bug of ours: its requests fail (500), the others are still served
                log.exception("the batching worker failed")
                jobs = list({id(row.job): row.job for row in rows + pending}.values())
                self._fail(jobs, pending, ApiError("Internal", f"internal error ({type(exc).__name__}): {exc}"))
            self._round += 1
        while True:  # anything queued after the stop signal (uvicorn sends none: it drains requests first)
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not _STOP:
                job.settle(error=ApiError("Unhealthy", "the server is shutting down"))

    def _take(self, pending: list[_Row], block: bool, timeout: float | None = None) -> bool:
        """Queue the rows of the next request (waiting up to `timeout` for one when `block`); True on the stop
        signal. Raises queue.Empty when none came."""
        job = self._jobs.get(block, timeout)
        if job is _STOP:
            return True
        self._admit(job, pending)
        return False

    def _gather(self, pending: list[_Row]) -> bool:
        """Take every request already queued; while others are arriving, wait for them too, until the oldest
        queued has waited `max_wait` or the budget is full. True on the stop signal."""
        if not pending:
            return False
        deadline = min(row.job.arrived for row in pending) + self.max_wait
        while self._padded(pending) < self.max_batch_tokens:
            wait = deadline - time.monotonic()
            block = wait > 0 and self._arriving > 0
            try:  # a blocking wait in slices of 2 ms: an arriving request may also fail its checks and never come
                if self._take(pending, block, min(wait, 0.002) if block else None):
                    return True
            except queue.Empty:
                if not block:
                    break
        return False

    def _admit(self, job: _Job, pending: list[_Row]) -> None:
        """Featurize a request's examples and queue its rows; a request that cannot be featurized fails alone."""
        if job.future.done():  # cancelled: the client went away
            return
        begun = time.monotonic()
        try:
            job.features = features = self.predictor.featurize(job.examples)
        except BertforgeError as exc:
            return job.settle(error=ApiError("Validation", str(exc)))
        except Exception as exc:  # the task's tokenization itself failed on this input
            log.exception("featurizing a request failed")
            return job.settle(error=ApiError("Tokenizer", f"could not tokenize the input: {exc}"))
        job.timing.tokenization = time.monotonic() - begun
        job.timing.tokens, job.timing.truncated = int(features.lengths.sum()), features.num_truncated
        if features.num_truncated and not job.truncate:
            return job.settle(error=ApiError("Validation", self._too_long(features.num_truncated, len(job.examples))))
        job.outputs, job.left = [None] * len(features), len(features)
        pending.extend(_Row(job, i, int(n), self._round) for i, n in enumerate(features.lengths))
        self.metrics.queue_size.inc(len(features))
        if not len(features):
            self._finish(job)

    def _too_long(self, n: int, of: int) -> str:
        which = "the input is" if of == 1 else f"{n} of {of} inputs {'is' if n == 1 else 'are'}"
        them = "them" if n > 1 else "it"
        return f'{which} longer than the model takes ({self.limit}); send "truncate": true to cut {them}'

    @staticmethod
    def _padded(rows: list[_Row]) -> int:
        return len(rows) * padded_width(max((row.length for row in rows), default=0))

    def _select(self, pending: list[_Row]) -> list[_Row]:
        """The next forward pass: rows of the oldest round first, longest first, while the padded size (rows x
        longest) fits the budget and there are at most max_batch_size; at least one row. Without batching,
        `pending` holds one request's rows."""
        pending.sort(key=lambda row: (row.round, -row.length))
        rows, longest = [], 0
        for row in pending:
            longest = max(longest, row.length)
            full = len(rows) == self.max_batch_size or padded_width(longest) * (len(rows) + 1) > self.max_batch_tokens
            if rows and full:
                break
            rows.append(row)
        del pending[: len(rows)]
        return rows

    def _forward(self, rows: list[_Row], pending: list[_Row]) -> None:
        """One forward pass; each request whose rows are all done gets its results."""
        self.metrics.queue_size.dec(len(rows))
        jobs = list({id(row.job): row.job for row in rows}.values())
        merged = Features(
            {
                name: [row.job.features.inputs[name][row.index] for row in rows]
                for name in MODEL_INPUTS
                if name in rows[0].job.features.inputs
            },
            list(range(len(rows))),
        )
        start = time.monotonic()
        for job in jobs:
            if not job.timing.queue:
                job.timing.queue = start - job.arrived
        try:
            outputs = self.predictor.run(merged, batch_size=len(rows))
        except Exception as exc:
            log.exception("a forward pass failed")
            return self._fail(jobs, pending, ApiError("Backend", f"inference failed: {exc}"))
        took = time.monotonic() - start
        self.metrics.inference.observe(took)
        for job in jobs:
            job.timing.inference += took
        self.metrics.batch_size.observe(len(rows))
        self.metrics.batch_requests.observe(len(jobs))
        self.metrics.tokens.inc(int(merged.lengths.sum()))
        broken = {}
        for row, out in zip(rows, outputs):
            row.job.outputs[row.index] = out
            row.job.left -= 1
            if not all(np.isfinite(v).all() for v in out.values()):
                broken[id(row.job)] = row.job
        self._fail(list(broken.values()), pending, ApiError("Backend", "the model returned NaN or infinite scores"))
        for job in jobs:
            if job.left == 0 and id(job) not in broken:
                self._finish(job)

    def _finish(self, job: _Job) -> None:
        try:
            results = self.predictor.postprocess(job.examples, job.features, job.outputs)
        except Exception as exc:
            log.exception("post-processing a request failed")
            return job.settle(error=ApiError("Backend", f"post-processing failed: {exc}"))
        job.settle((results, job.outputs))

    def _drop_gone(self, pending: list[_Row]) -> None:
        """Drop the queued rows of requests nobody waits for any more (answered 503 at the drain deadline): a stop
        past its deadline does not run them."""
        kept = [row for row in pending if not row.job.future.done()]
        self.metrics.queue_size.dec(len(pending) - len(kept))
        pending[:] = kept

    def _fail(self, jobs: list[_Job], pending: list[_Row], error: ApiError) -> None:
        """Fail these requests and drop their rows still queued."""
        for job in jobs:
            job.settle(error=error)
        failed = set(map(id, jobs))
        kept = [row for row in pending if id(row.job) not in failed]
        self.metrics.queue_size.dec(len(pending) - len(kept))
        pending[:] = kept

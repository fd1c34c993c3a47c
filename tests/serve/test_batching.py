"""Dynamic batching: concurrent requests share forward passes (the metrics say so) and each gets its own answer,
the one `Predictor.predict` gives that input alone; forward passes stay within the token budget; without
batching each request runs alone; a request the model fails on gets 424 and the worker goes on; requests over
--max-concurrent-requests get 429 (a stalled upload holds no slot); SIGTERM with a request still uploading answers
it, then exits 0."""

import asyncio
import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import uvicorn

from bertforge.serve import ServeOptions, create_app
from bertforge.serve.batching import Batcher
from bertforge.serve.errors import ApiError
from bertforge.serve.prometheus import Metrics
from bertforge.serve.server import bind, url_of
from tests.polarity import sentences
from tests.serve.conftest import Server, metric, start_server
from tests.serve.test_app import same
from tests.serve.test_slow_clients import receiving, stalled, wait_for

TEXTS = [text for text, _ in sentences(24, 5)]


def concurrently(server, bodies: list) -> list:
    """POST each body from its own thread, all released at once; the replies in order."""
    replies: list = [None] * len(bodies)
    start = threading.Barrier(len(bodies))

    def send(i: int) -> None:
        start.wait()
        replies[i] = server.call("POST", "/predict", bodies[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return replies


def test_concurrent_requests_share_forward_passes_and_each_gets_its_own_answer(servers, predictors):
    server, predictor = servers["classification"], predictors["classification"]
    before = server.metrics()
    replies = concurrently(server, [{"inputs": text} for text in TEXTS])
    after = server.metrics()
    assert [r.status for r in replies] == [200] * len(TEXTS)
    for text, reply in zip(TEXTS, replies):
        same(reply.body, predictor.predict(text))

    def grew(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    passes = grew("bertforge_batch_requests_count")
    assert grew("bertforge_batch_requests_sum") == len(TEXTS)
    assert passes - grew("bertforge_batch_requests_bucket", le="1.0") >= 1, "no forward pass held two requests"
    assert passes < len(TEXTS)


def test_without_batching_each_request_runs_alone(folders, tmp_path):
    server = start_server(folders["classification"], "--no-batching", log=tmp_path / "serve.log")
    try:
        replies = concurrently(
            server, [{"inputs": text} for text in TEXTS[:8]] + [{"inputs": [[t] for t in TEXTS[:3]]}]
        )
        assert [r.status for r in replies] == [200] * 9
        text = server.metrics()
        assert metric(text, "bertforge_batch_requests_count") == metric(
            text, "bertforge_batch_requests_bucket", le="1.0"
        )
        assert metric(text, "bertforge_batch_requests_count") == 9 and metric(text, "bertforge_batch_size_sum") == 11
        assert server.call("GET", "/info").body["batching"] is False
    finally:
        assert server.stop() == 0


def test_requests_over_the_limit_get_429_and_a_stalled_upload_holds_no_slot(predictors, monkeypatch, tmp_path):
    """--max-concurrent-requests 2, the model held busy: with a client stalled half-way through its body, two
    requests still get in flight, and a third is refused (429); once the model goes on, both are answered."""
    predictor, go_on = predictors["classification"], threading.Event()
    backend = predictor.backend
    monkeypatch.setattr(predictor, "backend", lambda batch: go_on.wait(60) and backend(batch))
    app = create_app(predictor, ServeOptions(max_concurrent_requests=2, max_wait_ms=0))
    replies: list = []
    with in_this_process(app, tmp_path) as server:
        (held,) = stalled(server, 1)
        try:
            wait_for(lambda: receiving(server) == 1, "the server reading the stalled body")
            send = lambda text: replies.append(server.call("POST", "/predict", {"inputs": text}))  # noqa: E731
            waiting = [threading.Thread(target=send, args=(text,)) for text in TEXTS[:2]]
            for t in waiting:
                t.start()
            in_flight = lambda: metric(server.metrics(), "bertforge_requests_in_flight")  # noqa: E731
            wait_for(lambda: in_flight() == 2 or replies, "two requests in flight")
            assert not replies, replies  # the old code: the stalled upload held one of the two slots
            refused = server.call("POST", "/predict", {"inputs": "one too many"})
            assert (refused.status, refused.body["error_type"]) == (429, "Overloaded")
            assert "2 requests in flight (--max-concurrent-requests 2)" in refused.body["error"]
            assert server.call("GET", "/health").status == 200  # overloaded is not unhealthy
            go_on.set()
            for t in waiting:
                t.join()
            assert receiving(server) == 1  # still held, still no slot
        finally:
            go_on.set()
            held.close()
    assert [r.status for r in replies] == [200, 200], replies


@contextlib.contextmanager
def in_this_process(app, tmp_path) -> Iterator[Server]:
    """`app` under uvicorn in a thread of this process (where a test can hold its model), for as long as the
    block runs."""
    sock = bind("127.0.0.1", 0)
    runner = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=runner.run, kwargs={"sockets": [sock]})
    thread.start()
    try:
        wait_for(lambda: runner.started or not thread.is_alive(), "uvicorn started")
        yield Server(process=None, url=url_of(sock), log=tmp_path / "no log")
    finally:
        runner.should_exit = True
        thread.join()
        sock.close()


def test_sigterm_finishes_a_request_still_uploading_then_exits_0(folders, tmp_path):
    """A lone request is answered, though --max-wait-ms is an hour: no pass waits for company that is not coming
    (the call's 2-minute ceiling only turns such a wait into a failure). SIGTERM while a client is half-way
    through its body (within --drain-timeout): the server closes the door to new connections, answers that
    request once its body is in, and only then exits 0."""
    server = start_server(folders["classification"], "--max-wait-ms", "3600000", log=tmp_path / "serve.log")
    alone = server.call("POST", "/predict", {"inputs": "alone"}, timeout=120)
    assert alone.status == 200, alone
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    body = json.dumps({"inputs": TEXTS[0]}).encode()
    slow = socket.create_connection((host, int(port)), timeout=60)
    head = f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
    slow.sendall(f"{head}\r\n\r\n".encode() + body[:5])
    try:
        wait_for(lambda: receiving(server) == 1, "the server reading the slow body")
        server.terminate()
        deadline = time.monotonic() + 60
        while True:  # stopping: no new connections
            try:
                server.call("GET", "/health")
            except (ConnectionRefusedError, ConnectionResetError):  # closed, or reset as the socket closed
                break
            assert time.monotonic() < deadline, "still accepting connections after SIGTERM"
            time.sleep(0.02)
        slow.sendall(body[5:])
        response = http.client.HTTPResponse(slow)
        response.begin()
        answer = json.loads(response.read())
    finally:
        status = server.stop()
        slow.close()
    assert status == 0, server.log.read_text()
    assert response.status == 200 and answer[0]["label"] in ("neg", "pos", "neutral")


@contextlib.contextmanager
def running(predictor, **options):
    """A started batcher, as `submit(requests, truncate)`: each request (a list of texts) sent at once, their
    results (results, outputs) or errors in order; `queued()` is called once all are queued. Stopped on leaving."""
    batcher = Batcher(predictor, Metrics(), **options)

    def submit(requests: list[list[str]], truncate: bool = True, queued=lambda: None) -> list:
        async def send():
            calls = [batcher.submit([predictor.example(t, str(i)) for i, t in enumerate(texts)], truncate)
                     for texts in requests]  # fmt: skip
            queued()  # every request is in the batcher's queue
            return await asyncio.gather(*calls, return_exceptions=True)

        return asyncio.run(send())

    batcher.start()
    try:
        yield submit
    finally:
        batcher.stop()
    assert batcher.metrics.registry.get_sample_value("bertforge_queue_size") == 0


def test_forward_passes_stay_within_the_token_budget(predictors, monkeypatch):
    predictor = predictors["ner-crf"]
    shapes = []
    backend = predictor.backend

    def recording(batch):
        shapes.append(batch["input_ids"].shape)
        return backend(batch)

    monkeypatch.setattr(predictor, "backend", recording)
    texts = [" ".join(["Ada in London"] * n) for n in (1, 30, 4, 12, 2, 60, 7)]
    with running(predictor, max_batch_tokens=256) as submit:
        results = submit([[t] for t in texts])
    assert all(rows * width <= 256 or rows == 1 for rows, width in shapes), shapes
    assert len(shapes) > 1 and max(rows for rows, _ in shapes) > 1, shapes
    monkeypatch.undo()
    for text, (result, _) in zip(texts, results):
        same(predictor.task.present(result[0]), predictor.predict(text))


def test_forward_passes_hold_at_most_max_batch_size_inputs_of_similar_lengths(predictors, monkeypatch):
    """Queued inputs beyond max_batch_size go in later passes, longest first: each pass pads to its own longest."""
    predictor = predictors["classification"]
    passes = []
    backend = predictor.backend

    all_queued = threading.Event()

    def recording(batch):
        passes.append(batch["attention_mask"].sum(1).tolist())
        if len(passes) == 1:  # the first pass is held until every request is queued: the rest come in one round
            assert all_queued.wait(60)
        return backend(batch)

    monkeypatch.setattr(predictor, "backend", recording)
    texts = [" ".join(["good film"] * n) for n in (3, 1, 9, 5, 2, 8, 4, 7, 6, 1, 2)]
    with running(predictor, max_batch_size=4) as submit:
        results = submit([[t] for t in texts], queued=all_queued.set)
    assert max(len(p) for p in passes) == 4 and sum(len(p) for p in passes) == len(texts), passes
    later = passes[1:]  # the queued round, split into passes of at most 4, longest first
    assert all(min(a) >= max(b) for a, b in zip(later, later[1:])), passes
    monkeypatch.undo()
    for text, (result, _) in zip(texts, results):
        same(predictor.task.present(result[0]), predictor.predict(text))


def test_a_failing_or_nan_model_fails_its_requests_and_the_worker_goes_on(predictors, monkeypatch):
    predictor = predictors["classification"]
    backend = predictor.backend

    def broken(batch):
        out = backend(batch)
        tokens = set(predictor.tokenizer.convert_ids_to_tokens(batch["input_ids"].ravel().tolist()))
        if "nan" in tokens:
            out["logits"][:] = np.nan
        if "boom" in tokens:
            raise RuntimeError("out of memory")
        return out

    monkeypatch.setattr(predictor, "backend", broken)
    with running(predictor, batching=False) as submit:
        boom, nan, fine = submit([["boom"], ["nan"], ["a fine film"]])
    for error, message in ((boom, "inference failed: out of memory"), (nan, "NaN or infinite")):
        assert isinstance(error, ApiError) and (error.status, error.error_type) == (424, "Backend")
        assert message in str(error)
    assert fine[0][0][0]["label"] in ("neg", "pos", "neutral")


def test_a_bug_in_the_worker_fails_its_requests_not_the_server(predictors, monkeypatch):
    predictor = predictors["classification"]
    select = Batcher._select
    calls = []

    def once_broken(self, pending):
        calls.append(len(pending))
        if len(calls) == 1:
            raise KeyError("bug")
        return select(self, pending)

    monkeypatch.setattr(Batcher, "_select", once_broken)
    with running(predictor, max_wait_ms=0) as submit:
        (error,) = submit([["a fine film"]])
        (fine,) = submit([["a fine film"]])
    assert (error.status, error.error_type, str(error)) == (500, "Internal", "internal error (KeyError): 'bug'")
    assert fine[0][0][0]["label"] in ("neg", "pos", "neutral")


@pytest.mark.parametrize("batching", [True, False])
def test_a_request_longer_than_the_model_is_refused_unless_truncated(predictors, batching):
    predictor = predictors["classification"]
    with running(predictor, batching=batching, limit="at most 224 tokens") as submit:
        (refused,) = submit([["fine", " ".join(["good"] * 300)]], truncate=False)
        ((results, _),) = submit([["fine", " ".join(["good"] * 300)]], truncate=True)
    assert isinstance(refused, ApiError) and (refused.status, refused.error_type) == (422, "Validation")
    assert str(refused).startswith("1 of 2 inputs is longer than the model takes (at most 224 tokens)")
    assert len(results) == 2


def test_the_rows_of_a_request_nobody_waits_for_are_not_run(predictors, monkeypatch):
    """A request answered 503 at the drain deadline (its future cancelled) while its rows are queued: the worker
    drops them instead of running them, so a stop past its deadline does not compute answers nobody reads."""
    predictor, go_on = predictors["classification"], threading.Event()
    passes, backend = [], predictor.backend

    def held(batch):
        passes.append(batch["input_ids"].shape[0])
        go_on.wait(60)
        return backend(batch)

    monkeypatch.setattr(predictor, "backend", held)
    batcher = Batcher(predictor, Metrics(), max_batch_size=1, max_wait_ms=0)

    async def main():
        examples = [predictor.example(text, str(i)) for i, text in enumerate(TEXTS[:3])]
        kept, gone = batcher.submit(examples, True), batcher.submit(examples, True)
        batcher.start()  # both queued first: the worker takes the two together, then runs one row a pass
        while not passes:
            await asyncio.sleep(0.01)
        gone.cancel()
        go_on.set()
        return await kept

    try:
        results, _ = asyncio.run(main())
    finally:
        go_on.set()
        batcher.stop()
    assert passes == [1, 1, 1]  # the kept request's three rows only
    assert len(results) == 3 and batcher.metrics.registry.get_sample_value("bertforge_queue_size") == 0

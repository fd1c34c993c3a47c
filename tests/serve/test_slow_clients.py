"""Slow, stalled and vanishing clients against a real `bertforge serve` process over real sockets: a crowd holding
half-sent bodies takes no slot and every other request is answered; headers and bodies have read deadlines;
a stop holding a half-sent body ends at --drain-timeout with a 503; a client gone mid-body is a 499 and one log
line, not a 500 and a traceback."""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
import time
from collections.abc import Callable

import pytest

from tests.serve.conftest import API_KEY, Server, metric, start_server

HELD = 100  # the Content-Length a stalled client announces; it sends 4 bytes of it, then waits


def stalled(server: Server, n: int, key: str | None = None) -> list[socket.socket]:
    """`n` connections that each send a /predict request's headers and 4 of its 100 bytes, then wait."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    head = f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{auth}Content-Length: {HELD}"
    crowd = []
    for _ in range(n):
        sock = socket.create_connection((host, int(port)), timeout=60)
        sock.sendall(f"{head}\r\n\r\n".encode() + b'{"in')
        crowd.append(sock)
    return crowd


def wait_for(condition: Callable[[], bool], what: str, ceiling: float = 300) -> None:
    """Poll until `condition()`; the ceiling only turns a hang into a failure."""
    deadline = time.monotonic() + ceiling
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def receiving(server: Server) -> float:
    return metric(server.metrics(), "bertforge_requests_receiving")


def load(server: Server, clients: int, each: int) -> list[int]:
    """`clients` threads, each sending `each` requests one after the other: their statuses."""
    statuses: list[int] = []

    def client(i: int) -> None:
        for j in range(each):
            statuses.append(server.call("POST", "/predict", {"inputs": f"a fine film, number {i}.{j}"}).status)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def untouched(crowd: list[socket.socket]) -> bool:
    """No byte and no close from the server on any of these connections."""
    readable, _, _ = select.select(crowd, [], [], 0)
    return not readable


def test_a_stalled_crowd_holds_no_slot_and_the_others_are_answered(folders, tmp_path):
    """Four times --max-concurrent-requests connections hold half-sent bodies (with the API key) while 8 clients
    send 200 requests: every one is answered 200, and the crowd is still held, untouched, afterwards. (Its
    throughput beside the crowd is a timing, not an outcome: it used to be asserted here, and a loaded machine
    slows either side 3x.)"""
    server = start_server(folders["classification"], "--max-concurrent-requests", "16", "--read-timeout", "600",
                          log=tmp_path / "serve.log", key=API_KEY)  # fmt: skip
    try:
        assert load(server, 4, 4) == [200] * 16
        crowd = stalled(server, 64, API_KEY)
        try:
            # All 64 read by the server (the old code answered all but 16 at once: 429, holding slots)
            wait_for(lambda: receiving(server) == 64 or not untouched(crowd), "the server reading 64 bodies")
            statuses = load(server, 8, 25)
            assert sorted(set(statuses)) == [200], f"{statuses.count(429)} of 200 refused (429) beside the crowd"
            assert len(statuses) == 200
            assert receiving(server) == 64 and untouched(crowd), "the crowd was let go: the test proves nothing"
        finally:
            for sock in crowd:
                sock.close()
        wait_for(lambda: receiving(server) == 0, "the server noticing the crowd leave")
    finally:
        assert server.stop() == 0, server.log.read_text()[-3000:]


def test_a_header_or_body_slower_than_read_timeout_is_cut_off(folders, tmp_path):
    """--read-timeout 1: a body that stops coming gets 408 and the connection is closed; headers that stop
    coming, or come a byte at a time, get the connection closed; the server goes on serving."""
    server = start_server(folders["regression"], "--read-timeout", "1", log=tmp_path / "serve.log")
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    try:
        (body,) = stalled(server, 1)
        response = http.client.HTTPResponse(body)
        response.begin()  # blocks until the server answers: at the deadline
        answer = json.loads(response.read())
        assert (response.status, answer["error_type"]) == (408, "Timeout"), answer
        assert "within 1 s (--read-timeout): got 4 of 100 bytes" in answer["error"]
        assert body.recv(1) == b""  # closed, not kept waiting for the rest
        body.close()

        half = socket.create_connection((host, int(port)), timeout=60)
        half.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Le")
        assert half.recv(1) == b""  # closed without an answer
        half.close()

        header = f"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: {'a' * 200}\r\n\r\n".encode()
        dribble = socket.create_connection((host, int(port)), timeout=60)
        sent = 0
        with pytest.raises(OSError):  # reset or broken pipe, once the server has closed it
            for sent in range(len(header)):  # 0.05 s a byte: 10 s for the whole header, ten times the deadline
                dribble.sendall(header[sent : sent + 1])
                time.sleep(0.05)
                if select.select([dribble], [], [], 0)[0] and dribble.recv(1) == b"":
                    raise ConnectionResetError("closed by the server")
        assert sent < len(header) - 1, "the whole header got through, a byte at a time"
        dribble.close()

        assert server.predict({"inputs": "still serving"})
    finally:
        assert server.stop() == 0, server.log.read_text()[-3000:]


def test_sigterm_with_a_half_sent_body_ends_at_the_drain_deadline(folders, tmp_path):
    """A client holds a half-sent body (well within --read-timeout) when SIGTERM comes: at --drain-timeout it is
    answered 503, the server logs what it cut short, and exits 0 instead of waiting for ever."""
    server = start_server(folders["regression"], "--drain-timeout", "1", "--read-timeout", "600",
                          log=tmp_path / "serve.log")  # fmt: skip
    (held,) = stalled(server, 1)
    try:
        wait_for(lambda: receiving(server) == 1, "the server reading the held body")
        assert server.predict({"inputs": "answered before the stop"})
        server.terminate()
        response = http.client.HTTPResponse(held)
        response.begin()
        answer = json.loads(response.read())
        status = server.process.wait(60)
    finally:
        if server.process.poll() is None:  # the old behaviour: still draining
            server.process.kill()
        server.stop()
        held.close()
    assert status == 0, server.log.read_text()[-3000:]
    assert (response.status, answer["error_type"]) == (503, "Unhealthy"), answer
    assert "drain deadline (1 s, --drain-timeout) passed while this request was sending its body" in answer["error"]
    log = server.log.read_text()
    assert "drain deadline of 1 s (--drain-timeout) passed: answered 1 request(s) still in flight with 503 " \
           "(1 sending its body)" in log, log  # fmt: skip


def test_a_client_gone_before_its_body_is_a_499_and_one_log_line(servers):
    """Clients that close their connection half-way through a body: counted as 499 (not 500) in /metrics, and
    one line each in the log, no traceback."""
    server = servers["regression"]
    before, logged = server.metrics(), len(server.log.read_text())
    crowd = stalled(server, 5)
    wait_for(lambda: receiving(server) == 5, "the server reading the 5 bodies")
    for sock in crowd:
        sock.close()

    def grew(status: str) -> float:
        labels = {"route": "/predict", "status": status}
        return metric(server.metrics(), "bertforge_requests_total", **labels) - metric(
            before, "bertforge_requests_total", **labels
        )

    wait_for(lambda: grew("499") + grew("500") == 5, "the 5 requests counted")
    assert (grew("499"), grew("500")) == (5, 0)
    new = server.log.read_text()[logged:].splitlines()
    assert len(new) == 5 and all("closed the connection after 4 of 100 bytes of its request body" in line
                                 for line in new), new  # fmt: skip

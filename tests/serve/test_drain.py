"""The drain deadline: every request still waiting when it passes is answered 503, saying what it was waiting
for, and one log line counts them; a request done before it is not counted."""

import asyncio
import logging

import anyio
from anyio.lowlevel import checkpoint

from bertforge.serve.drain import Drain
from bertforge.serve.errors import ApiError


def test_expire_answers_every_wait_503_and_logs_one_line(caplog):
    async def main() -> tuple[list, asyncio.Future]:
        drain, outcomes = Drain(2.5), []
        model = asyncio.get_running_loop().create_future()  # the batcher's answer, never coming
        body = anyio.Event()  # the rest of a body, never coming

        async def request(what: str, wait) -> None:
            try:
                with drain.waiting(what):
                    await wait
                outcomes.append((what, "answered"))
            except ApiError as exc:
                outcomes.append((what, exc.status, exc.error_type, str(exc)))

        with anyio.fail_after(30):  # a ceiling: without the deadline's cancellations this would wait for ever
            async with anyio.create_task_group() as group:
                group.start_soon(request, "sending its body", body.wait())
                group.start_soon(request, "waiting for the model", model)
                group.start_soon(request, "waiting for the model", checkpoint())  # done before the deadline
                await anyio.wait_all_tasks_blocked()
                with caplog.at_level(logging.WARNING, logger="bertforge"):
                    drain.expire()
        return outcomes, model

    outcomes, model = asyncio.run(main())
    assert outcomes[0] == ("waiting for the model", "answered")
    stopped = "the server is stopping and its drain deadline (2.5 s, --drain-timeout) passed while this request was"
    assert sorted(outcomes[1:]) == [
        ("sending its body", 503, "Unhealthy", f"{stopped} sending its body"),
        ("waiting for the model", 503, "Unhealthy", f"{stopped} waiting for the model"),
    ]
    assert model.cancelled()  # the batcher sees it and drops the request's rows
    assert [r.getMessage() for r in caplog.records] == [
        "drain deadline of 2.5 s (--drain-timeout) passed: answered 2 request(s) still in flight with 503 "
        "(1 sending its body, 1 waiting for the model)"
    ]


def test_expire_with_nothing_waiting_logs_nothing(caplog):
    with caplog.at_level(logging.WARNING, logger="bertforge"):
        Drain(1).expire()
    assert not caplog.records

"""Servers for the serve tests: `python -m bertforge serve` in a subprocess on a free loopback port, one per
tiny model (the export tests' random-weight heads) for the whole session, and a client over real HTTP."""

import dataclasses
import http.client
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bertforge.inference import Predictor
from bertforge.model_folder import load_settings, write_settings
from tests.export.test_onnx import model_folder

API_KEY = "s3cret"
READY = re.compile(r"^bertforge serve: ready at (http://\S+)")


@dataclass
class Reply:
    status: int
    body: Any  # parsed JSON, else text
    headers: dict[str, str]


@dataclass
class Server:
    """A `bertforge serve` process and a client for it."""

    process: subprocess.Popen
    url: str
    log: Path  # its standard error
    key: str | None = None
    terminated: bool = False

    def call(self, method: str, path: str, body: Any = None, *, raw: bytes | None = None, key: str | None = "",
             headers: dict[str, str] | None = None, timeout: float = 60) -> Reply:  # fmt: skip
        """One request on a fresh keep-alive connection (http.client sends no `Connection: close`, so a
        server that answers before reading a large body drains it rather than resetting the connection).
        `key`: "" the server's own, None none."""
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
        sent = {"Content-Type": "application/json"} | (headers or {})
        if (key := self.key if key == "" else key) is not None:
            sent["Authorization"] = f"Bearer {key}"
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        try:
            connection.request(method, path, body=data, headers=sent)
            response = connection.getresponse()
            payload = response.read()
        finally:
            connection.close()
        kind = response.getheader("content-type", "")
        parsed = json.loads(payload) if kind.startswith("application/json") and payload else payload.decode()
        return Reply(response.status, parsed, {k.lower(): v for k, v in response.getheaders()})

    def predict(self, body: Any) -> Any:
        reply = self.call("POST", "/predict", body)
        assert reply.status == 200, reply
        return reply.body

    def metrics(self) -> str:
        reply = self.call("GET", "/metrics")
        assert reply.status == 200, reply
        return reply.body

    def terminate(self) -> None:
        """SIGTERM, once: a second one, once the server has put back the default handlers on its way out, would
        kill it."""
        if not self.terminated and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.terminated = True

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then the exit status."""
        self.terminate()
        try:
            return self.process.wait(timeout)
        finally:
            self.process.stdout.close()


def launch(
    model: Path, *flags: str, log: Path, key: str | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """`bertforge serve --model MODEL --port 0 FLAGS`, started (see `ready`); `env` adds to the environment."""
    env = dict(os.environ, OMP_NUM_THREADS="1") | (env or {})
    env.pop("BERTFORGE_API_KEY", None)
    if key:
        env["BERTFORGE_API_KEY"] = key  # the flag's default: keeps the key out of the process list
    command = [sys.executable, "-m", "bertforge", "serve", "--model", str(model), "--port", "0", "--threads", "1"]
    with open(log, "w") as err:
        return subprocess.Popen([*command, *flags], stdout=subprocess.PIPE, stderr=err, text=True, env=env)


def ready(process: subprocess.Popen, log: Path, key: str | None = None, timeout: float = 600) -> Server:
    """The server, once it has printed its ready line (the ceiling only turns a hang into a failure: start-up
    took over 60 s on a machine at load 10)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if select.select([process.stdout], [], [], 0.2)[0]:
            line = process.stdout.readline()
            if match := READY.match(line):
                return Server(process, match.group(1), log, key)
    process.kill()
    process.wait()
    pytest.fail(f"bertforge serve did not start: {log.read_text()[-3000:]}", pytrace=False)


def start_server(
    model: Path, *flags: str, log: Path, key: str | None = None, env: dict[str, str] | None = None
) -> Server:
    return ready(launch(model, *flags, log=log, key=key, env=env), log, key)


def metric(text: str, name: str, **labels: str) -> float:
    """A sample's value from Prometheus text (0 when absent)."""
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = "^" + re.escape(name) + (r"\{" + re.escape(selector) + r"\}" if labels else "") + r" (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.fixture(scope="session")
def folders(sample, tmp_path_factory) -> dict[str, Path]:
    """Tiny model folders: a 3-label classifier (its folder says it was trained on pairs), a regressor (on single
    texts), a CRF tagger (LOC, PER) and a v2.0 QA model."""
    root = tmp_path_factory.mktemp("serve-models")
    made = {name: model_folder(root, name, sample("vocab-en")) for name in ("classification", "regression",
                                                                            "ner-crf", "qa")}  # fmt: skip
    for name, pairs in (("classification", True), ("regression", False)):
        settings = load_settings(made[name])
        write_settings(made[name], dataclasses.replace(settings, task=dataclasses.replace(settings.task, pairs=pairs)))
    return made


QA_NAME = "squad-tiny"  # the QA server's --served-model-name
QA_OPTIONS = {"null_threshold": 1e9}  # always an answer: the random QA model would often say "no answer"


@pytest.fixture(scope="session")
def predictors(folders) -> dict[str, Predictor]:
    """The same models in this process: what each input gets from `Predictor.predict` alone."""
    return {
        name: Predictor.from_pretrained(folder, task_options=QA_OPTIONS if name == "qa" else None)
        for name, folder in folders.items()
    }


@pytest.fixture(scope="session")
def servers(folders, tmp_path_factory):
    """One server per model for the session. The classifier wants an API key and takes batches of 8 at most;
    its requests wait up to 50 ms for others, so concurrent ones meet in a forward pass."""
    logs = tmp_path_factory.mktemp("serve-logs")
    flags = {
        "classification": ("--max-client-batch-size", "8", "--max-wait-ms", "50"),
        "regression": (),
        "ner-crf": (),
        "qa": ("--task.null_threshold", str(QA_OPTIONS["null_threshold"]), "--served-model-name", QA_NAME),
    }
    keys = {"classification": API_KEY}
    launched = {name: launch(folder, *flags[name], log=logs / f"{name}.log", key=keys.get(name))
                for name, folder in folders.items()}  # fmt: skip
    started: dict[str, Server] = {}
    try:
        for name, process in launched.items():  # started together: they load at the same time
            started[name] = ready(process, logs / f"{name}.log", keys.get(name))
        yield started
    finally:
        for name, process in launched.items():
            if name not in started:  # one that never got ready: its failure is reported already
                process.kill()
                process.wait()
        for server in started.values():  # all stop at once
            server.terminate()
        for name, server in started.items():
            assert server.stop() == 0, f"{name}: {server.log.read_text()[-3000:]}"

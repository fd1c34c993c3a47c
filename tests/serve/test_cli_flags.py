"""`bertforge serve` flags reach the server they start: --api-key (the flag itself, not the environment
variable), --host, --max-batch-tokens, --max-batch-size and --max-body-bytes, each seen from outside: the
address it listens on, the status of a request, the limits /info reports."""

import json

from tests.serve.conftest import launch, ready


def test_serve_flags_reach_the_server(folders, tmp_path):
    flags = ["--api-key", "from-the-flag", "--host", "127.0.0.2", "--max-batch-tokens", "999", "--max-batch-size", "3",
             "--max-body-bytes", "5000"]  # fmt: skip
    server = ready(launch(folders["classification"], *flags, log=tmp_path / "serve.log"), tmp_path / "serve.log",
                   key="from-the-flag")  # fmt: skip
    try:
        assert server.url.startswith("http://127.0.0.2:"), server.url
        assert server.call("POST", "/predict", {"inputs": "a film"}, key=None).status == 401
        assert server.call("POST", "/predict", {"inputs": "a film"}, key="another").status == 401
        assert server.call("POST", "/predict", {"inputs": "a film"}).status == 200
        info = server.call("GET", "/info").body
        assert (info["max_batch_tokens"], info["max_batch_size"], info["max_body_bytes"]) == (999, 3, 5000)
        small = json.dumps({"inputs": "good " * 900, "truncate": True}).encode()  # 4,532 bytes
        large = json.dumps({"inputs": "good " * 1100, "truncate": True}).encode()  # 5,532 bytes
        assert len(small) < 5000 < len(large)
        assert server.call("POST", "/predict", raw=small).status == 200
        assert server.call("POST", "/predict", raw=large).status == 413
    finally:
        assert server.stop() == 0, server.log.read_text()[-3000:]

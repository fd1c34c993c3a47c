"""`bertforge serve`: one HTTP server for every task, on FastAPI and uvicorn.

    from bertforge.inference import Predictor
    from bertforge.serve import ServeOptions, create_app, serve

    app = create_app(Predictor.from_pretrained("model"), ServeOptions(max_batch_tokens=8192))
    serve(app, "127.0.0.1", 8080, ready=print)

Modules: `schema` (decoding /predict bodies, /info), `batching` (the dynamic batcher), `app` (TEI's routes,
limits, API key, CORS, timing headers), `errors` (TEI's error types and statuses), `prometheus` (metrics),
`server` (uvicorn, read deadlines, graceful stop), `drain` (the stop's deadline), `static/index.html` (the demo
page). FastAPI and uvicorn are optional (`bertforge[serve]`): `create_app` and `serve` import them when first used,
so the command line starts without them.
"""

from __future__ import annotations

import importlib
from typing import Any

from bertforge.errors import BertforgeError
from bertforge.serve.options import ServeOptions

_LAZY = {"create_app": "bertforge.serve.app", "serve": "bertforge.serve.server"}

__all__ = ["ServeOptions", "create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'bertforge.serve' has no attribute {name!r}")
    try:
        module = importlib.import_module(_LAZY[name])
    except ImportError as exc:
        if exc.name not in ("fastapi", "uvicorn", "starlette", "prometheus_client", "anyio"):
            raise
        raise BertforgeError(f"{exc.name} is not installed; pip install 'bertforge[serve]'") from None
    return getattr(module, name)

"""The server's errors: TEI's body `{"error": message, "error_type": kind}`, TEI's `error_type` names (its Rust enum
`ErrorType`, serialized as spelled: "Validation", "Empty", ...) and status codes, so clients of
text-embeddings-inference read ours unchanged. Every failure a request can cause is one of these; nothing reaches
a client as a bare 500 traceback. This table is the one place the names live: tasks raise `RequestError` with them."""

from __future__ import annotations

from fastapi.responses import JSONResponse

# error_type -> HTTP status. TEI's six first; TEI answers the others with an empty body or none of its own (401,
# 404, 405) or has no such case (408, 499, 500): those names are ours, in TEI's spelling.
STATUS = {
    "Empty": 400,  # no inputs, or a blank text
    "Validation": 422,  # wrong fields or types, an input too long without "truncate" (TEI also 413: too large)
    "Tokenizer": 422,  # the task could not turn an input into model inputs
    "Backend": 424,  # the model failed or returned NaN
    "Overloaded": 429,  # --max-concurrent-requests in flight
    "Unhealthy": 503,  # shutting down
    "Unauthorized": 401,  # --api-key set and the request has no or another Bearer token
    "NotFound": 404,
    "MethodNotAllowed": 405,
    "Timeout": 408,  # the body did not arrive within --read-timeout
    "ClientClosed": 499,  # the client went away before its body arrived: nobody reads it, /metrics counts it
    "Internal": 500,  # a bug in the server itself
}
TEI_TYPES = ("Empty", "Validation", "Tokenizer", "Backend", "Overloaded", "Unhealthy")


class ApiError(Exception):
    """A request that cannot be answered, as the status code and body the client gets."""

    def __init__(self, error_type: str, message: str, status: int | None = None, headers: dict | None = None):
        super().__init__(message)
        self.error_type = error_type
        self.status = status or STATUS[error_type]
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        headers = dict(self.headers)
        if self.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if self.status == 408:  # the rest of the body may never come: close rather than wait for it
            headers["Connection"] = "close"
        return JSONResponse({"error": str(self), "error_type": self.error_type}, self.status, headers=headers or None)

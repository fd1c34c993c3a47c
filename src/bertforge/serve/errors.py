"""The server's errors: TEI's body `{"error": message, "error_type": kind}` and its status codes, so clients of
text-embeddings-inference read ours unchanged. Every failure a request can cause is one of these; nothing
reaches a client as a bare 500 traceback."""

from __future__ import annotations

from fastapi.responses import JSONResponse

# error_type -> HTTP status, as TEI has them (TEI also answers "validation" with 413 for a request too large:
# `ApiError("validation", ..., status=413)`); `unauthorized`, `not_found` and `method_not_allowed` are ours (TEI
# answers those with an empty body), `timeout` and `client_closed` (nginx's 499) are ours too, `internal` is the
# catch-all for a bug in the server itself.
STATUS = {
    "empty": 400,  # no inputs, or a blank text
    "unauthorized": 401,  # --api-key set and the request has no or another Bearer token
    "not_found": 404,
    "method_not_allowed": 405,
    "timeout": 408,  # the body did not arrive within --read-timeout
    "validation": 422,  # not UTF-8, not JSON, wrong fields or types, an input too long without "truncate"
    "tokenizer": 422,  # the task could not turn an input into model inputs
    "backend": 424,  # the model failed or returned NaN
    "overloaded": 429,  # --max-concurrent-requests in flight
    "client_closed": 499,  # the client went away before its body arrived: nobody reads it, /metrics counts it
    "internal": 500,
    "unhealthy": 503,  # shutting down
}


class ApiError(Exception):
    """A request that cannot be answered, as the status code and body the client gets."""

    def __init__(self, error_type: str, message: str, status: int | None = None):
        super().__init__(message)
        self.error_type = error_type
        self.status = status or STATUS[error_type]

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        if self.status == 408:  # the rest of the body may never come: close rather than wait for it
            headers = {"Connection": "close"}
        return JSONResponse({"error": str(self), "error_type": self.error_type}, self.status, headers=headers)

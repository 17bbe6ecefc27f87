"""Errors at the HTTP boundary, mapped once.

Every request has an id (gate.py: the client's ``X-Request-Id`` when it sends a sane one), echoed
in the ``X-Request-Id`` response header. What an error becomes depends only on its kind:

- the server's own refusals (``ApiError``: a malformed body, a cap exceeded) and the engine's
  ``InvalidArgument``/``WrongType``: 4xx with the message;
- ``NotFound`` (an unknown session, a missing file): 404;
- ``IndexDamaged``: 503, the details in the log under the request id (they name server paths);
- ``EngineFault`` and anything unexpected: 500, logged with its traceback under the request id;
  the body says the id and never carries a traceback.
On the OpenAI-shaped routes the body is OpenAI's error object (openai_compat.error_body).
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import HTTP_STATUS, IvcrError
from .openai_compat import OpenAIError, error_body, is_openai_route

log = logging.getLogger("ivcr.serve")


class ApiError(Exception):
    """A request the server refuses before the engine sees it."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request"):
        super().__init__(message)
        self.status, self.message, self.type = status, message, type_


def request_id(request: Request) -> str:
    return getattr(request.state, "request_id", None) or "-"


def error_response(status: int, message: str, type_: str, request: Request | None = None,
                   headers: dict | None = None) -> JSONResponse:
    """The API's error object; on the OpenAI-shaped routes, OpenAI's."""
    rid = request_id(request) if request is not None else "-"
    headers = {"X-Request-Id": rid, **(headers or {})}
    if request is not None and is_openai_route(request.url.path):
        return JSONResponse(error_body(status, message), status_code=status, headers=headers)
    body = {"type": type_, "message": message}
    if status >= 500:
        body["request_id"] = rid
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(request, exc: ApiError):
        return error_response(exc.status, exc.message, exc.type, request)

    @app.exception_handler(OpenAIError)
    async def _openai(request, exc: OpenAIError):
        return JSONResponse(error_body(exc.status, exc.message, exc.param, exc.code), status_code=exc.status,
                            headers={"X-Request-Id": request_id(request)})

    @app.exception_handler(IvcrError)
    async def _engine(request, exc: IvcrError):
        status = HTTP_STATUS.get(exc.kind, 500)
        if status < 500:
            return error_response(status, str(exc), exc.kind, request)
        rid = request_id(request)
        if exc.kind == "index_damaged":
            log.error("request %s on %s: %s", rid, request.url.path, exc)
            return error_response(503, f"the index is damaged; the server's log says how to repair it "
                                       f"(request {rid})", exc.kind, request)
        log.error("request %s on %s: engine fault", rid, request.url.path, exc_info=exc)
        return error_response(500, f"{exc} (request {rid})", "internal", request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request, exc):
        """A body or parameter the route's schema refuses (schema.py): 400, naming where."""
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(x) for x in first.get("loc", ())]
        field = loc[1:] if loc[:1] == ["body"] else loc  # a body's field by its own name
        message = f"{'.'.join(field)}: {first.get('msg', 'invalid')}" if field else first.get("msg", "invalid request")
        if first.get("type") == "json_invalid":
            message = f"malformed JSON: {(first.get('ctx') or {}).get('error', 'not JSON')}"
        if is_openai_route(request.url.path):
            param = field[0] if loc[:1] == ["body"] and field else None
            return JSONResponse(error_body(400, message, param), status_code=400,
                                headers={"X-Request-Id": request_id(request)})
        return error_response(400, message, "invalid_request", request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc):
        return error_response(exc.status_code, str(exc.detail), "not_found" if exc.status_code == 404 else "http_error",
                              request)

    @app.exception_handler(Exception)
    async def _internal(request, exc):
        rid = request_id(request)
        log.error("request %s on %s: internal error", rid, request.url.path, exc_info=exc)
        return error_response(500, f"internal error (request {rid}, logged on the server)", "internal", request)

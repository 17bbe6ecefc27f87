"""``/v1/chat/completions`` and ``/v1/models`` in the OpenAI shape, so existing chat clients (the
official ``openai`` library among them) can drive a dialogue: the last user message is the turn;
the session is keyed by the ``user`` field or an ``X-Session-Id`` header (neither: a fresh session
per call); ``stream: true`` answers with SSE chunks. As OpenAI's API does: the model is required
and must be one this server lists, unknown request arguments are refused, system and developer
messages are accepted (the engine reads only the user's turn), every completion reports ``usage``
(counted with the index's text model's own tokenizer), and errors come as ``{"error": {"message",
"type", "param", "code"}}``."""
from __future__ import annotations

import hashlib
import json
import time
import uuid

from ..errors import InvalidArgument

MODEL_ID = "ivcr"  # the served index, as the one model this server lists
# Every request argument of OpenAI's chat completions: accepted (the engine words one answer a
# turn, so sampling settings do not apply to it); anything else is refused as OpenAI refuses it.
KNOWN_ARGUMENTS = frozenset((
    "model", "messages", "stream", "stream_options", "user", "n", "temperature", "top_p", "max_tokens",
    "max_completion_tokens", "stop", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs",
    "top_logprobs", "seed", "response_format", "tools", "tool_choice", "parallel_tool_calls", "functions",
    "function_call", "metadata", "store", "service_tier", "modalities", "audio", "prediction", "reasoning_effort",
    "web_search_options", "verbosity", "prompt_cache_key", "safety_identifier"))
ROLES = frozenset(("system", "developer", "user", "assistant", "tool", "function"))
ROUTES = ("/v1/chat/completions", "/v1/models")


class OpenAIError(Exception):
    """A request error on an OpenAI-shaped route: ``status`` and OpenAI's error fields."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def is_openai_route(path: str) -> bool:
    return path in ROUTES or path.startswith("/v1/models/")


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    """OpenAI's error object for ``status``: server errors are "server_error", the rest
    "invalid_request_error" (with "invalid_api_key" on a 401, as OpenAI answers)."""
    type_ = "server_error" if status >= 500 else "invalid_request_error"
    if status == 401 and code is None:
        code = "invalid_api_key"
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def check_request(data: dict) -> None:
    """Refuse what OpenAI refuses: unknown arguments, a missing or unknown model, ``n`` other than
    1, a ``stream`` that is not a boolean."""
    unknown = sorted(k for k in data if k not in KNOWN_ARGUMENTS)
    if unknown:
        raise OpenAIError(400, f"Unrecognized request argument supplied: {', '.join(unknown)}", param=unknown[0])
    model = data.get("model")
    if model is None:
        raise OpenAIError(400, "you must provide a model parameter", param="model")
    if model != MODEL_ID:
        raise OpenAIError(404, f"The model `{model}` does not exist: this server has `{MODEL_ID}` (GET /v1/models)",
                          param="model", code="model_not_found")
    if data.get("n") not in (None, 1):
        raise OpenAIError(400, "n must be 1: the engine gives one answer a turn", param="n")
    if data.get("stream") is not None and not isinstance(data["stream"], bool):
        raise OpenAIError(400, "stream must be a boolean", param="stream")
    opts = data.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise OpenAIError(400, "stream_options must be an object", param="stream_options")


def model_card(created: int, text_model: str, videos: int) -> dict:
    return {"id": MODEL_ID, "object": "model", "created": created, "owned_by": "ivcr_engine",
            "text_model": text_model, "videos": videos}


def message_texts(data: dict) -> list[str]:
    """The text of every message (what ``usage.prompt_tokens`` counts)."""
    out = []
    for m in data.get("messages") or []:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        if isinstance(content, str):
            out.append(content)
    return out


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def last_user_picture(data: dict) -> str | None:
    """The picture of the last user message (its last ``image_url`` part's URL), or None."""
    for m in reversed(data.get("messages") or []):
        if isinstance(m, dict) and m.get("role") == "user":
            parts = m.get("content") if isinstance(m.get("content"), list) else []
            urls = [p.get("image_url") for p in parts if isinstance(p, dict) and p.get("type") == "image_url"]
            urls = [u.get("url") if isinstance(u, dict) else u for u in urls]
            if urls and not isinstance(urls[-1], str):
                raise InvalidArgument("an image_url part carries {'url': 'data:image/...;base64,...'}")
            return urls[-1] if urls else None
    return None


def last_user_turn(data: dict, picture: bool = False) -> str:
    """The text of the last user message (empty allowed when it comes with a ``picture``)."""
    msgs = data.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise InvalidArgument("'messages' must be a non-empty list of {role, content}")
    for m in msgs:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise InvalidArgument("each message is an object with a 'role' and a 'content'")
        if m["role"] not in ROLES:
            raise InvalidArgument(f"unknown message role {m['role']!r}: one of {', '.join(sorted(ROLES))}")
    for m in reversed(msgs):
        if m["role"] == "user":
            content = m.get("content")
            if isinstance(content, list):  # content parts: keep the text ones
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
            if content is None and picture:
                content = ""
            if not isinstance(content, str) or (not content.strip() and not picture):
                raise InvalidArgument("the last user message has no text")
            return content
    raise InvalidArgument("'messages' has no user message")


def session_key(data: dict, header: str | None) -> str | None:
    if header:
        return header
    user = data.get("user")
    if user is None:
        return None
    if not isinstance(user, str) or not user:
        raise InvalidArgument("'user' must be a non-empty string")
    return "user-" + hashlib.sha256(user.encode()).hexdigest()[:32]  # any string keys a bounded id


def chat_completion(reply, model: str, used: dict) -> dict:
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                                         "finish_reason": "stop"}], "usage": used}


async def chat_stream(reply, model: str, used: dict | None = None):
    """SSE chunks; ``used`` (when the client asked with ``stream_options.include_usage``) comes
    in a last chunk with no choices, as OpenAI sends it."""
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict, finish: str | None = None) -> str:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant"})
    for line in reply.text.splitlines(keepends=True):  # the reply is whole already: one chunk per line
        yield chunk({"content": line})
    yield chunk({}, "stop")
    if used is not None:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [],
                "usage": used}
        yield f"data: {json.dumps(body)}\n\n"
    yield "data: [DONE]\n\n"

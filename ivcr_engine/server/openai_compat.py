"""``POST /v1/chat/completions`` in the OpenAI shape, so existing chat clients can drive a dialogue:
the last user message is the turn; the session is keyed by the ``user`` field or an
``X-Session-Id`` header (neither: a fresh session per call); ``stream: true`` answers with SSE
chunks."""
from __future__ import annotations

import hashlib
import json
import time
import uuid


def last_user_turn(data: dict) -> str:
    msgs = data.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ValueError("'messages' must be a non-empty list of {role, content}")
    for m in reversed(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ValueError("each message is an object with a 'role' and a 'content'")
        if m["role"] == "user":
            content = m.get("content")
            if isinstance(content, list):  # content parts: keep the text ones
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
            if not isinstance(content, str) or not content.strip():
                raise ValueError("the last user message has no text")
            return content
    raise ValueError("'messages' has no user message")


def session_key(data: dict, header: str | None) -> str | None:
    if header:
        return header
    user = data.get("user")
    if user is None:
        return None
    if not isinstance(user, str) or not user:
        raise ValueError("'user' must be a non-empty string")
    return "user-" + hashlib.sha256(user.encode()).hexdigest()[:32]  # any string keys a bounded id


def chat_completion(reply, model: str) -> dict:
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                                         "finish_reason": "stop"}]}


async def chat_stream(reply, model: str):
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict, finish: str | None = None) -> str:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant"})
    for line in reply.text.splitlines(keepends=True):  # the reply is whole already: one chunk per line
        yield chunk({"content": line})
    yield chunk({}, "stop")
    yield "data: [DONE]\n\n"

"""The HTTP face of the engine (FastAPI): a thin caller of ``SessionManager`` and the index.

Every route parses and caps its input, calls the engine (on the manager's thread pool, so
concurrent requests meet in the engine's micro-batcher), and shapes the answer as JSON. Errors
are JSON ``{"error": {"type", "message"}}``, mapped once by kind (errors.py): a client's mistake
is 4xx, an engine fault 5xx with a request id; nothing answers with a traceback. Videos are named
by their ref (the index's video number), never by path.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST

from ..dialogue.sessions import MAX_TURN_CHARS, SessionManager
from ..models.registry import index_text_model
from . import errors, media
from .errors import ApiError, error_response
from .live import LiveIndex
from .metrics import ServerMetrics
from .openai_compat import (
    MODEL_ID,
    OpenAIError,
    chat_completion,
    chat_stream,
    check_request,
    last_user_turn,
    message_texts,
    model_card,
    session_key,
    usage,
)

MAX_BODY = 64 * 1024
MAX_K = 100
MAX_FILTER = 10_000
STATIC = Path(__file__).parent / "static"
log = logging.getLogger("ivcr.serve")


def create_app(manager: SessionManager, live: LiveIndex, token: str | None = None,
               sweep_s: float = 60.0) -> FastAPI:
    # the LLM worker's failures, when that responder is used
    metrics = ServerMetrics(live.queue_depth, lambda: len(manager), getattr(manager.engine.responder, "stats", None))
    manager.on_turn = lambda r: metrics.turns.labels(r.intent).observe(r.timings.get("total", 0.0))
    live.on_refresh = metrics.refreshes.inc
    live.on_batch = metrics.batches.observe

    async def background():
        while True:  # bounded work per tick: one index check, one TTL sweep when due
            await asyncio.sleep(live.poll_s)
            await asyncio.get_running_loop().run_in_executor(None, live.check)
            if time.monotonic() - state["swept"] >= sweep_s:
                state["swept"] = time.monotonic()
                await asyncio.get_running_loop().run_in_executor(None, manager.expire)

    state = {"swept": time.monotonic()}

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(background())
        yield
        task.cancel()

    app = FastAPI(title="ivcr_engine", version="1", lifespan=lifespan, docs_url=None, redoc_url=None)

    # -- guards: token, body size ---------------------------------------------------------
    @app.middleware("http")
    async def guard(request: Request, call_next):
        path = request.url.path
        if token and (path.startswith("/v1/") or path == "/metrics"):
            given = request.headers.get("authorization", "")
            ok = given == f"Bearer {token}" or request.query_params.get("access_token") == token
            if not ok:
                return error_response(401, "missing or wrong bearer token (Authorization: Bearer <token>)",
                                      "unauthorized", request)
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return error_response(413, f"request body over {MAX_BODY} bytes", "too_large", request)
        return await call_next(request)

    # after the guard: its request-id middleware runs first, so even a refused request has an id
    errors.install(app)  # typed errors -> HTTP statuses, request ids (errors.py)

    async def body(request: Request) -> dict:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            raise ApiError(413, f"request body over {MAX_BODY} bytes", "too_large")
        try:
            data = json.loads(raw or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"malformed JSON: {exc}")
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object")
        return data

    def index():
        return manager.engine.index

    def video_ref(raw: str) -> int:
        try:
            ref = int(raw)
        except ValueError:
            raise ApiError(404, f"no video {raw!r} (videos are named by their number)", "not_found")
        idx = index()
        if not 0 <= ref < idx.num_refs() or idx.video(ref).removed:
            raise ApiError(404, f"no video {ref}", "not_found")
        return ref

    def refs(data: dict, key: str) -> list[int] | None:
        v = data.get(key)
        if v is None:
            return None
        if not isinstance(v, list) or len(v) > MAX_FILTER or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            raise ApiError(400, f"'{key}' must be a list of at most {MAX_FILTER} video numbers")
        n = index().num_refs()
        bad = [x for x in v if not 0 <= x < n]
        if bad:
            raise ApiError(400, f"'{key}' names unknown videos: {bad[:5]}")
        return v

    def video_json(ref: int) -> dict:
        info = index().video(ref)
        return {"video_id": ref, "name": Path(info.path).name, "duration": info.duration}

    def reply_json(sid: str, reply) -> dict:
        """The typed reply as JSON: each candidate with its best moment for the turn's query (the
        engine found them in the turn: Engine(candidate_moments=True))."""
        cands = [{"rank": i, **video_json(c.video), "score": c.score} for i, c in enumerate(reply.candidates, 1)]
        for c, cm in zip(cands, reply.candidate_moments):
            if cm is not None:
                c["moment"] = {"start": round(cm.start, 3), "end": round(cm.end, 3)}
        m = reply.moment
        return {"session_id": sid, "intent": reply.intent, "text": reply.text, "candidates": cands,
                "video_id": reply.video, "video": video_json(reply.video) if reply.video is not None else None,
                "moment": None if m is None else {"video_id": m.video, "start": round(m.start, 3),
                                                  "end": round(m.end, 3), "score": round(m.score, 4)},
                "evidence": reply.evidence, "assumed": reply.assumed,
                "timings_ms": {k: round(v * 1000, 3) for k, v in reply.timings.items()}}

    def turn_text(data: dict) -> str:
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "'text' must be a non-empty string")
        if len(text) > MAX_TURN_CHARS:
            raise ApiError(400, f"'text' has at most {MAX_TURN_CHARS} characters (got {len(text)})")
        return text

    # -- sessions -------------------------------------------------------------------------
    @app.post("/v1/sessions", status_code=201)
    async def create_session():
        return {"session_id": await manager.acreate()}

    @app.post("/v1/sessions/{sid}/turns")
    async def turn(sid: str, request: Request):
        text = turn_text(await body(request))
        reply = await manager.aask(sid, text)
        return JSONResponse(reply_json(sid, reply))

    @app.get("/v1/sessions/{sid}")
    async def get_session(sid: str):
        st = await manager.astate(sid)
        m = st.moment
        return {"session_id": sid, "query": st.query, "selected": st.selected,
                "candidates": [c.video for c in st.candidates], "excluded": st.excluded,
                "moment": None if m is None else {"video_id": m.video, "start": m.start, "end": m.end},
                "history": st.turns}

    @app.delete("/v1/sessions/{sid}")
    async def delete_session(sid: str):
        await manager.adelete(sid)
        return {"deleted": sid}

    # -- one-shot search ------------------------------------------------------------------
    @app.post("/v1/search")
    async def search(request: Request):
        data = await body(request)
        q = data.get("query")
        if not isinstance(q, str) or not q.strip():
            raise ApiError(400, "'query' must be a non-empty string")
        if len(q) > MAX_TURN_CHARS:
            raise ApiError(400, f"'query' has at most {MAX_TURN_CHARS} characters")
        k = data.get("k", 10)
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
            raise ApiError(400, f"'k' must be an integer in 1..{MAX_K}")
        hits = await manager.asearch(q, k=k, allow=refs(data, "allow"), deny=refs(data, "deny"))
        return {"query": q, "hits": [{"video_id": h.video_index, "name": Path(h.path).name,
                                      "start": round(h.start, 2), "end": round(h.end, 2), "score": round(h.score, 4),
                                      "rank": h.rank, "evidence": {"lines": [list(l) for l in h.evidence.lines],
                                                                   "concepts": h.evidence.concepts}}
                                     for h in hits]}

    # -- videos ---------------------------------------------------------------------------
    @app.get("/v1/videos/{vid}")
    async def video(vid: str):
        return video_json(video_ref(vid))

    @app.get("/v1/videos/{vid}/media")
    async def video_media(vid: str, request: Request):
        path = Path(index().video(video_ref(vid)).path)
        if not path.is_file():
            raise ApiError(404, f"the file of video {vid} is gone from disk", "not_found")
        size = media.file_size(path)
        try:
            rng = media.parse_range(request.headers.get("range"), size)
        except media.RangeError as exc:
            return JSONResponse({"error": {"type": "bad_range", "message": str(exc)}}, status_code=416,
                                headers={"Content-Range": f"bytes */{size}"})
        first, last = rng if rng else (0, size - 1)
        headers = {"Accept-Ranges": "bytes", "Content-Length": str(last - first + 1)}
        if rng:
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        return StreamingResponse(media.iter_file(path, first, last), status_code=206 if rng else 200,
                                 media_type=media.media_type(path), headers=headers)

    @app.get("/v1/videos/{vid}/thumbnail")
    async def thumbnail(vid: str, t: float = 0.0, size: int = 160):
        ref = video_ref(vid)
        if not 16 <= size <= media.MAX_THUMB:
            raise ApiError(400, f"'size' must be in 16..{media.MAX_THUMB}")
        info = index().video(ref)
        if not 0 <= t <= info.duration + 1:
            raise ApiError(400, f"'t' must lie inside the video (0..{info.duration:.1f}s)")
        path = Path(info.path)
        jpg = await asyncio.get_running_loop().run_in_executor(None, media.thumbnail_jpeg, path, t, size)
        return Response(jpg, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    # -- OpenAI-compatible chat -------------------------------------------------------------
    def model_info() -> dict:
        idx = index()
        return model_card(int(live.root.stat().st_ctime), index_text_model(idx.settings), len(idx))

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [model_info()]}

    @app.get("/v1/models/{model}")
    async def one_model(model: str):
        if model != MODEL_ID:
            raise OpenAIError(404, f"The model `{model}` does not exist: this server has `{MODEL_ID}`", "model",
                              "model_not_found")
        return model_info()

    @app.post("/v1/chat/completions")
    async def completions(request: Request):
        data = await body(request)
        check_request(data)
        text = last_user_turn(data)
        if len(text) > MAX_TURN_CHARS:
            raise ApiError(400, f"the last user message has at most {MAX_TURN_CHARS} characters")
        sid = session_key(data, request.headers.get("x-session-id"))
        if sid is None:
            sid = await manager.acreate()
        else:
            await manager.aensure(sid)
        reply = await manager.aask(sid, text)
        counts = index().text_encoder.count_tokens(message_texts(data) + [reply.text])
        used = usage(sum(counts[:-1]), counts[-1])
        headers = {"X-Session-Id": sid}
        if data.get("stream"):
            include = bool((data.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(chat_stream(reply, MODEL_ID, used if include else None),
                                     media_type="text/event-stream", headers=headers)
        return JSONResponse(chat_completion(reply, MODEL_ID, used), headers=headers)

    # -- operations -----------------------------------------------------------------------
    @app.get("/healthz")
    async def healthz():
        idx = index()
        return {"ok": True, "videos": len(idx), "refs": idx.num_refs(), "sessions": len(manager),
                "batching": live.batching}

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    # -- the page -------------------------------------------------------------------------
    @app.get("/")
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/static/{name}")
    async def static(name: str):
        files = {p.name: p for p in STATIC.iterdir() if p.is_file()}
        if name not in files:  # a fixed set of names: no path ever reaches the file system
            raise ApiError(404, f"no static file {name!r}", "not_found")
        return FileResponse(files[name])

    app.state.manager, app.state.live = manager, live
    return app

"""The HTTP face of the engine (FastAPI): a thin caller of ``SessionManager`` and the index.

Every route parses and caps its input, calls the engine (on the manager's thread pool, so
concurrent requests meet in the engine's micro-batcher), and shapes the answer as JSON. Errors
are JSON ``{"error": {"type", "message"}}``, mapped once by kind (errors.py): a client's mistake
is 4xx, an engine fault 5xx with a request id; nothing answers with a traceback. Videos are named
by their ref (the index's video number), never by path.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST

from ..dialogue.sessions import SessionManager
from ..models.registry import index_text_model
from . import errors, media, schema
from .errors import ApiError
from .gate import Gate
from .live import LiveIndex
from .metrics import ServerMetrics
from .openai_compat import (
    MODEL_ID,
    OpenAIError,
    chat_completion,
    chat_stream,
    check_request,
    last_user_picture,
    last_user_turn,
    message_texts,
    model_card,
    session_key,
    usage,
)
from .pictures import picture_bytes
from .schema import MAX_PICTURE_CHARS, errors as documented

MAX_BODY = 64 * 1024
# the routes that take a picture (base64 in the JSON body) may be this large
MAX_PICTURE_BODY = MAX_BODY + MAX_PICTURE_CHARS
PICTURE_ROUTES = ("/v1/search", "/v1/chat/completions")
STATIC = Path(__file__).parent / "static"
log = logging.getLogger("ivcr.serve")


class Json(JSONResponse):
    """JSON encoded by orjson (several times faster than json.dumps on a reply's nested lists)."""

    def render(self, content) -> bytes:
        return orjson.dumps(content)


def body_cap(path: str) -> int:
    takes_picture = path in PICTURE_ROUTES or (path.startswith("/v1/sessions/") and path.endswith("/turns"))
    return MAX_PICTURE_BODY if takes_picture else MAX_BODY


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

    # /docs (Swagger UI) and /redoc from files in an installed package: no CDN
    app = FastAPIOffline(title="ivcr_engine", version="1", lifespan=lifespan, default_response_class=Json,
                         description="Interactive video corpus retrieval: multi-turn sessions (text and pictures), "
                                     "one-shot search, video media, and OpenAI-compatible chat.")

    errors.install(app)  # typed errors -> HTTP statuses (errors.py)
    app.add_middleware(Gate, token=token, body_cap=body_cap)  # request ids, token, body caps (gate.py)

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

    def refs(given: list[int] | None, key: str) -> list[int] | None:
        if given is None:
            return None
        n = index().num_refs()
        bad = [x for x in given if not 0 <= x < n]
        if bad:
            raise ApiError(400, f"'{key}' names unknown videos: {bad[:5]}")
        return given

    def video_json(ref: int) -> dict:
        info = index().video(ref)
        return {"video_id": ref, "name": os.path.basename(info.path), "duration": info.duration}

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

    def picture(given: str | None) -> bytes | None:
        return None if given is None else picture_bytes(given)

    # -- sessions -------------------------------------------------------------------------
    sid_link = {"parameters": {"sid": "$response.body#/session_id"}}
    links = {"links": {"AskTurn": {"operationId": "ask_turn", **sid_link},
                       "GetSession": {"operationId": "get_session", **sid_link},
                       "DeleteSession": {"operationId": "delete_session", **sid_link}}}

    @app.post("/v1/sessions", summary="Create a session",
              status_code=201, response_model=schema.SessionCreated, tags=["sessions"],
              operation_id="create_session", responses={201: links, **documented(401, 500)})
    async def create_session():
        return {"session_id": await manager.acreate()}

    @app.post("/v1/sessions/{sid}/turns", summary="Ask a turn: text, a picture, or both",
              response_model=schema.TurnReply, tags=["sessions"], operation_id="ask_turn",
              responses=documented(400, 401, 404, 413, 500, 503))
    async def turn(sid: str, req: schema.TurnRequest):
        """One turn: text, a picture, or both ("find moments like this picture", "this, but at night")."""
        reply = await manager.aask(sid, req.text, picture(req.image))
        return Json(reply_json(sid, reply))

    @app.get("/v1/sessions/{sid}", summary="A session's state and history",
             response_model=schema.SessionView, tags=["sessions"], operation_id="get_session",
             responses=documented(401, 404, 500))
    async def get_session(sid: str):
        st = await manager.astate(sid)
        m = st.moment
        return Json({"session_id": sid, "query": st.query, "selected": st.selected,
                     "candidates": [c.video for c in st.candidates], "excluded": st.excluded,
                     "moment": None if m is None else {"video_id": m.video, "start": m.start, "end": m.end},
                     "picture": st.image is not None, "history": st.turns})

    @app.delete("/v1/sessions/{sid}", summary="Delete a session",
                response_model=schema.Deleted, tags=["sessions"], operation_id="delete_session",
                responses=documented(401, 404, 500))
    async def delete_session(sid: str):
        await manager.adelete(sid)
        return {"deleted": sid}

    # -- one-shot search ------------------------------------------------------------------
    @app.post("/v1/search", summary="Search by text, a picture, or both",
              response_model=schema.SearchReply, tags=["search"],
              responses=documented(400, 401, 413, 500, 503))
    async def search(req: schema.SearchRequest):
        """The top k videos for a text query, a picture, or both, each with its best moment and evidence."""
        hits = await manager.asearch(req.query, k=req.k, allow=refs(req.allow, "allow"), deny=refs(req.deny, "deny"),
                                     image=picture(req.image))
        return Json({"query": req.query,
                     "hits": [{"video_id": h.video_index, "name": Path(h.path).name, "start": round(h.start, 2),
                               "end": round(h.end, 2), "score": round(h.score, 4), "rank": h.rank,
                               "evidence": {"lines": [list(l) for l in h.evidence.lines],
                                            "concepts": h.evidence.concepts}}
                              for h in hits]})

    # -- videos ---------------------------------------------------------------------------
    @app.get("/v1/videos/{vid}", summary="A video's name and duration",
             response_model=schema.VideoOut, tags=["videos"], responses=documented(401, 404))
    async def video(vid: str):
        return video_json(video_ref(vid))

    @app.get("/v1/videos/{vid}/media", summary="The video file (HTTP Range: 206)",
             tags=["videos"], response_class=FileResponse,
             responses={200: {"content": {"video/*": {}}, "description": "the video file"},
                        206: {"content": {"video/*": {}}, "description": "the requested byte range (Range: bytes=a-b)"},
                        416: {"content": {"text/plain": {}}, "description": "a range outside the file"},
                        **documented(401, 404)})
    async def video_media(vid: str):
        """The video's bytes, for a player: HTTP Range requests get 206 (Starlette's FileResponse)."""
        path = Path(index().video(video_ref(vid)).path)
        if not path.is_file():
            raise ApiError(404, f"the file of video {vid} is gone from disk", "not_found")
        return FileResponse(path, media_type=media.media_type(path))

    @app.get("/v1/videos/{vid}/thumbnail", summary="A JPEG still of a video", tags=["videos"], response_class=Response,
             responses={200: {"content": {"image/jpeg": {}}, "description": "a JPEG still"},
                        **documented(400, 401, 404, 500)})
    async def thumbnail(vid: str, t: float = 0.0, size: int = 160):
        """The frame at ``t`` seconds, its shorter side ``size`` pixels, as JPEG."""
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

    @app.get("/v1/models", summary="The models (the index, as OpenAI lists models)",
             response_model=schema.ModelList, tags=["openai"], responses=documented(401, openai=True))
    async def models():
        return {"object": "list", "data": [model_info()]}

    @app.get("/v1/models/{model}", summary="One model", response_model=schema.ModelCard, tags=["openai"],
             responses=documented(401, 404, openai=True))
    async def one_model(model: str):
        if model != MODEL_ID:
            raise OpenAIError(404, f"The model `{model}` does not exist: this server has `{MODEL_ID}`", "model",
                              "model_not_found")
        return model_info()

    @app.post("/v1/chat/completions", summary="Chat completion, as OpenAI's API answers it",
              response_model=schema.ChatCompletion, tags=["openai"],
              responses={200: {"content": {"text/event-stream": {}},
                               "description": "with stream: true, chat.completion.chunk events"},
                         **documented(400, 401, 404, 413, 500, 503, openai=True)})
    async def completions(req: schema.ChatRequest, request: Request):
        """OpenAI's chat completions: the last user message is the turn (its image_url part, a data
        URL, a picture to search by); the session is keyed by ``user`` or ``X-Session-Id``."""
        data = req.model_dump(exclude_unset=True)
        check_request(data)
        image = picture(last_user_picture(data))
        text = last_user_turn(data, picture=image is not None)
        sid = session_key(data, request.headers.get("x-session-id"))
        if sid is None:
            sid = await manager.acreate()
        else:
            await manager.aensure(sid)
        reply = await manager.aask(sid, text, image)
        counts = index().text_encoder.count_tokens(message_texts(data) + [reply.text])
        used = usage(sum(counts[:-1]), counts[-1])
        headers = {"X-Session-Id": sid}
        if data.get("stream"):
            include = bool((data.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(chat_stream(reply, MODEL_ID, used if include else None),
                                     media_type="text/event-stream", headers=headers)
        return Json(chat_completion(reply, MODEL_ID, used), headers=headers)

    # -- operations -----------------------------------------------------------------------
    @app.get("/healthz", summary="Liveness and counts", response_model=schema.Health, tags=["operations"])
    async def healthz():
        idx = index()
        return {"ok": True, "videos": len(idx), "refs": idx.num_refs(), "sessions": len(manager),
                "batching": live.batching}

    @app.get("/metrics", summary="Prometheus metrics", tags=["operations"], response_class=Response,
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
                        **documented(401)})
    async def prometheus():
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    # -- the page -------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        files = {p.name: p for p in STATIC.iterdir() if p.is_file()}
        if name not in files:  # a fixed set of names: no path ever reaches the file system
            raise ApiError(404, f"no static file {name!r}", "not_found")
        return FileResponse(files[name])

    app.openapi = lambda: published_schema(app)
    app.state.manager, app.state.live = manager, live
    return app


def published_schema(app: FastAPI) -> dict:
    """FastAPI's OpenAPI document without its 422 responses: a request that fails validation is
    answered 400 with the API's error object (errors.py), which every route documents."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for item in doc.get("paths", {}).values():
            for op in item.values():
                if isinstance(op, dict):
                    op.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            doc.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = doc
    return app.openapi_schema

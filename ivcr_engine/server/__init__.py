"""``ivcr serve``: the engine over HTTP (FastAPI + uvicorn, the ``[serve]`` extra) and the web page.

    from ivcr_engine.server import build_app
    app = build_app("idx", sessions_db="idx/sessions.sqlite")   # an ASGI app (uvicorn, TestClient)
"""
from __future__ import annotations

import ipaddress
import resource
from pathlib import Path

LOOPBACK_NAMES = {"localhost"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serving_stack(index_dir: str | Path, sessions_db: str | Path | None = None, ttl_s: float = 24 * 3600,
                  batching: bool | None = None, poll_s: float = 1.0, responder=None):
    """The engine as ``ivcr serve`` runs it, without HTTP: (SessionManager, LiveIndex). The index
    prefaulted, replies carrying the candidates' moments, sessions persisted in ``sessions_db``
    (default: ``sessions.sqlite`` in the index folder), the micro-batcher when ``batching`` is not
    False. bench_serve.py runs its in-process baseline on exactly this."""
    from ..dialogue import Engine
    from ..dialogue.sessions import SessionManager
    from .live import LiveIndex

    index_dir = Path(index_dir)
    # a server pays page faults once, up front; its replies carry the candidates' moments (the thumbnails)
    engine = Engine.open(index_dir, responder=responder, prefault=True, candidate_moments=True)
    live = LiveIndex(engine, index_dir, batching=batching, poll_s=poll_s)
    manager = SessionManager(engine, sessions_db or index_dir / "sessions.sqlite", ttl_s=ttl_s)
    if len(engine.index):  # warm-up: builds derived caches once, before concurrent traffic
        engine.index.search("warm up", k=1)
    return manager, live


def memory_note(index) -> str | None:
    """What to tell whoever runs the server when the index could not lock its first stages' folded
    rows in memory (after the warm-up search, which loads them); None when all were locked."""
    locked_bytes = getattr(index, "locked_bytes", None)
    if locked_bytes is None:
        return None
    _, unlocked = locked_bytes()
    if not unlocked:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    limit = "unlimited" if soft == resource.RLIM_INFINITY else f"{soft / 2**20:.0f} MB"
    return (f"{unlocked / 2**20:.0f} MB of the first stage's rows could not be locked in memory (RLIMIT_MEMLOCK "
            f"{limit}): they are read into memory instead, and a host that reclaims cold memory may page them "
            "out between queries (slower text turns); raise the limit (`ulimit -l`, systemd's LimitMEMLOCK=) "
            "or grant CAP_IPC_LOCK")


def build_app(index_dir: str | Path, sessions_db: str | Path | None = None, token: str | None = None,
              ttl_s: float = 24 * 3600, batching: bool | None = None, poll_s: float = 1.0, responder=None):
    """Open the index, the sessions' database (default: ``sessions.sqlite`` in the index folder)
    and return the ASGI app. ``batching`` None: micro-batching wherever the index supports it.
    ``responder``: how replies are worded (default the template; see dialogue.gguf_responder)."""
    from .app import create_app

    manager, live = serving_stack(index_dir, sessions_db, ttl_s=ttl_s, batching=batching, poll_s=poll_s,
                                  responder=responder)
    return create_app(manager, live, token=token)


def serve(index_dir: str | Path, host: str = "127.0.0.1", port: int = 8080, token: str | None = None,
          **kw) -> None:
    import uvicorn

    if not is_loopback(host) and not token:
        raise ValueError(f"binding to {host} (not loopback) needs --token: a bearer token every API call must send")
    app = build_app(index_dir, token=token, **kw)
    mode = "on" if app.state.live.batching else "off"
    print(f"ivcr serve: micro-batching {mode}", flush=True)
    note = memory_note(app.state.live.engine.index)
    if note:
        print(f"ivcr serve: {note}", flush=True)
    print(f"ivcr serve: http://{'[' + host + ']' if ':' in host else host}:{port}/ (index {index_dir})", flush=True)
    # keep-alive well above any client's idle gap: a server closing an idle connection just as the
    # client reuses it fails that request (seen under load with uvicorn's 5 s default)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=5,
                timeout_keep_alive=75)

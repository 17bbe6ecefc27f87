"""Many dialogues at once, for servers and for Python importers: ``SessionManager``.

State lives in SQLite (WAL) and is written after every turn, so a restarted process resumes
every session; sessions idle longer than ``ttl_s`` expire. Turns on one session are serialised
(a per-session lock); different sessions run in parallel on a thread pool, which is what lets a
``BatchingIndex`` under the engine gather their searches into one batch. Every blocking method
has an ``a``-prefixed coroutine twin for asyncio callers.

    manager = SessionManager(Engine.open("idx"), "sessions.sqlite")
    sid = manager.create()
    reply = manager.ask(sid, "find videos of a dog")          # or: await manager.aask(sid, ...)
"""
from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import InvalidArgument, NotFound, WrongType
from ..index.image_query import search_by
from .engine import Engine, Session
from .state import Reply, SessionState

MAX_TURN_CHARS = 2000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY,
  state TEXT NOT NULL,
  created REAL NOT NULL,
  updated REAL NOT NULL
);
"""


class UnknownSession(NotFound, KeyError):
    def __str__(self) -> str:
        return f"no session {self.args[0]!r} (never created, deleted or expired)"


class SessionStore:
    """The sessions table: one row of JSON state per session. Thread-safe (one connection, a lock)."""

    def __init__(self, path: str | Path = ":memory:"):
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a process kill
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def put(self, sid: str, state: SessionState, now: float) -> None:
        with self._lock:
            self._db.execute("INSERT INTO sessions(id, state, created, updated) VALUES (?, ?, ?, ?) "
                             "ON CONFLICT(id) DO UPDATE SET state = excluded.state, updated = excluded.updated",
                             (sid, json.dumps(state.to_dict(), ensure_ascii=False), now, now))

    def get(self, sid: str) -> tuple[SessionState, float, float] | None:
        with self._lock:
            row = self._db.execute("SELECT state, created, updated FROM sessions WHERE id = ?", (sid,)).fetchone()
        return None if row is None else (SessionState.from_dict(json.loads(row[0])), row[1], row[2])

    def touch(self, sid: str, now: float) -> None:
        with self._lock:
            self._db.execute("UPDATE sessions SET updated = ? WHERE id = ?", (now, sid))

    def delete(self, sid: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM sessions WHERE id = ?", (sid,)).rowcount > 0

    def expire(self, before: float) -> list[str]:
        with self._lock:
            gone = [r[0] for r in self._db.execute("SELECT id FROM sessions WHERE updated < ?", (before,))]
            self._db.execute("DELETE FROM sessions WHERE updated < ?", (before,))
        return gone

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class SessionManager:
    """Sessions over one engine: create, ask, inspect, delete; persisted after every turn."""

    def __init__(self, engine: Engine, db_path: str | Path = ":memory:", ttl_s: float = 24 * 3600,
                 workers: int = 64, clock=time.time):
        if ttl_s <= 0:
            raise InvalidArgument("ttl_s must be > 0")
        self.engine = engine
        self.ttl_s = ttl_s
        self.store = SessionStore(db_path)
        self._clock = clock
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ivcr-turn")
        self.on_turn = None  # optional callback(reply) after each stored turn (metrics)

    # -- blocking API ---------------------------------------------------------------------
    def create(self) -> str:
        sid = uuid.uuid4().hex
        self.store.put(sid, SessionState(), self._clock())
        return sid

    def ensure(self, sid: str) -> None:
        """Create the session under this id unless it exists (clients that key sessions themselves)."""
        if not isinstance(sid, str) or not 1 <= len(sid) <= 128:
            raise InvalidArgument("a session id is a string of 1-128 characters")
        with self._lock_for(sid):
            try:
                self._load(sid)
            except UnknownSession:
                self.store.put(sid, SessionState(), self._clock())

    def state(self, sid: str) -> SessionState:
        return self._load(sid)[0]

    def ask(self, sid: str, text: str, image=None) -> Reply:
        """One turn of session ``sid``; ``image``: a picture that comes with it (Session.ask)."""
        if not isinstance(text, str):
            raise WrongType("a turn is a string")
        if not text.strip() and image is None:
            raise InvalidArgument("a turn needs text, a picture, or both")
        if len(text) > MAX_TURN_CHARS:
            raise InvalidArgument(f"a turn has at most {MAX_TURN_CHARS} characters (got {len(text)})")
        with self._lock_for(sid):
            state, _, _ = self._load(sid)
            # The turn runs on a copy: a turn that fails leaves the stored state as it was.
            session = Session(self.engine, SessionState.from_dict(state.to_dict()))
            reply = session.ask(text, image=image)
            self.store.put(sid, session.state, self._clock())
        if self.on_turn is not None:
            self.on_turn(reply)
        return reply

    def delete(self, sid: str) -> None:
        with self._lock_for(sid):
            if not self.store.delete(sid):
                raise UnknownSession(sid)
        with self._locks_guard:
            self._locks.pop(sid, None)

    def expire(self) -> int:
        """Drop sessions idle longer than the TTL; returns how many went."""
        gone = self.store.expire(self._clock() - self.ttl_s)
        with self._locks_guard:
            for sid in gone:
                self._locks.pop(sid, None)
        return len(gone)

    def __len__(self) -> int:
        return self.store.count()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.store.close()

    # -- asyncio twins --------------------------------------------------------------------
    async def arun(self, fn, *args):
        """Run any blocking call on the manager's pool (where the engine's batcher can gather it)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def acreate(self) -> str:
        return await self.arun(self.create)

    async def aask(self, sid: str, text: str, image=None) -> Reply:
        return await self.arun(self.ask, sid, text, image)

    async def aensure(self, sid: str) -> None:
        return await self.arun(self.ensure, sid)

    async def astate(self, sid: str) -> SessionState:
        return await self.arun(self.state, sid)

    async def adelete(self, sid: str) -> None:
        return await self.arun(self.delete, sid)

    async def asearch(self, query: str, k: int = 10, allow=None, deny=None, image=None):
        return await self.arun(self.search, query, k, allow, deny, image)

    def search(self, query: str, k: int = 10, allow=None, deny=None, image=None):
        """One-shot search of the engine's index (no session): by text, a picture, or both."""
        return search_by(self.engine.index, query, image, k=k, allow=allow, deny=deny)

    # -- internals ------------------------------------------------------------------------
    def _load(self, sid: str) -> tuple[SessionState, float, float]:
        if not isinstance(sid, str):
            raise UnknownSession(sid)
        got = self.store.get(sid)
        if got is None:
            raise UnknownSession(sid)
        if got[2] < self._clock() - self.ttl_s:  # idle past the TTL: gone, even before a sweep
            self.store.delete(sid)
            raise UnknownSession(sid)
        return got

    def _lock_for(self, sid: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(sid, threading.Lock())

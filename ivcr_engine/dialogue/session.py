"""Engine and sessions: `Engine.open(index_dir).session().ask("...")` -> Reply.

Each turn is routed to an intent, composes its search from the session state (a refinement adds
to the last query; "not this one" excludes; "earlier" looks before the last moment), runs it on
the index (fused top-k over videos, span scoring inside a video), updates the state and lets the
responder word the reply with the evidence behind it. The index is used only through the index
protocol (`index.protocol.VideoIndex`), so a single index, a sharded one or a batching wrapper
all serve the same dialogue; the state keeps video refs.
"""
from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..index.protocol import Moment, VideoIndex
from ..index.searcher import DEFAULT_WEIGHTS
from .evidence import confident_concepts, supporting_lines
from .messages import language_of, say, source_name
from .responders import Responder, TemplateResponder
from .router import Intent, Routed, Router, clean_text
from .state import Candidate, Reply, SessionState

N_CANDIDATES = 10  # the IVCR protocol's candidate list
QUERY_CACHE = 1024  # recent query texts whose vectors an engine keeps


class QueryTextEncoder:
    """The router's sentence vectors from the index's own query encoder (the text channels share
    the text encoder's space), so routing needs nothing beyond the index protocol. The vectors
    come as the index scores with them: unit direction, norm 1 / (1 - chance) (see
    searcher.encode_text_queries), which the router uses to calibrate its similarities."""

    def __init__(self, engine: "Engine"):
        self.engine = engine  # not the index: a live server swaps the engine's index

    def encode(self, texts):
        texts = [t if t.strip() else "?" for t in texts]  # an empty turn still gets a vector to route by
        q = self.engine.index.encode_queries(texts)
        if "concept" in q:
            return np.asarray(q["concept"], np.float32)
        for c in ("speech", "subtitle"):  # these carry a trailing presence dimension
            if c in q:
                return np.asarray(q[c][:, :-1], np.float32)
        raise ValueError("this index has no text channel to route turns by")


class Engine:
    def __init__(self, index: VideoIndex, responder: Responder | None = None, use_prototypes: bool = True,
                 candidate_moments: bool = False):
        """``candidate_moments``: every reply also carries each candidate's best moment for the
        turn's search text (one batched call: what a page shows on the candidates' thumbnails)."""
        self.responder = responder or TemplateResponder()
        self.candidate_moments = candidate_moments
        self.router = Router(QueryTextEncoder(self) if use_prototypes else None)
        # Query vectors of recent texts, shared by all sessions: a selection or "earlier" turn
        # asks again about the text of an earlier turn (and users repeat queries).
        self._vectors: OrderedDict[str, dict] = OrderedDict()
        self._vectors_lock = threading.Lock()
        self.index = index

    @property
    def index(self) -> VideoIndex:
        return self._index

    @index.setter
    def index(self, index: VideoIndex) -> None:
        """Swap the index (a live server does on commits); vectors made for the old one go."""
        self._index = index
        self.forget_vectors()

    def forget_vectors(self) -> None:
        """Drop cached query and prototype vectors (the index's text model may have changed)."""
        with self._vectors_lock:
            self._vectors.clear()
        self.router.forget()

    def encode(self, query: str) -> dict:
        """One query's vectors (channel -> (1, d)), from a bounded cache of recent texts."""
        with self._vectors_lock:
            got = self._vectors.get(query)
            if got is not None:
                self._vectors.move_to_end(query)
                return got
        got = self.index.encode_queries([query])
        with self._vectors_lock:
            self._vectors[query] = got
            while len(self._vectors) > QUERY_CACHE:
                self._vectors.popitem(last=False)
        return got

    @classmethod
    def open(cls, index_dir: str | Path, ray_address: str | None = None, prefault: bool = False, **kw) -> "Engine":
        """An engine over an index folder or a sharded index's manifest folder (``ray_address``:
        place the shards on Ray actors of that cluster; ``prefault``: see ``Index``)."""
        from ..index.sharded import open_index

        return cls(open_index(index_dir, ray_address=ray_address, prefault=prefault), **kw)

    def session(self, state: SessionState | None = None) -> "Session":
        return Session(self, state or SessionState())


class Session:
    def __init__(self, engine: Engine, state: SessionState):
        self.engine = engine
        self.state = state
        self._timings: dict = {}  # seconds per stage of the turn in progress
        self._lang = "en"         # the language of the turn in progress (its reply's)

    # -- persistence --------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(self.state.to_dict(), ensure_ascii=False)

    @classmethod
    def from_json(cls, engine: Engine, text: str) -> "Session":
        return cls(engine, SessionState.from_dict(json.loads(text)))

    # -- one turn -----------------------------------------------------------------------
    def ask(self, text: str) -> Reply:
        if not isinstance(text, str):
            raise TypeError("a turn is a string")
        text = clean_text(text)  # no control or escape characters reach routing, state or replies
        st = self.state
        t_start = time.perf_counter()
        self._timings = {}
        # a turn without words ("2", "?") keeps the conversation's language
        self._lang = language_of(text, default=st.turns[-1].get("lang", "en") if st.turns else "en")
        routed = self.engine.router.route(text, has_candidates=bool(st.candidates), has_selection=st.selected is not None,
                                          lang=self._lang)
        handler = {
            Intent.VIDEO_RETRIEVAL: self._find_videos, Intent.MOMENT_RETRIEVAL: self._find_moment,
            Intent.SELECT: self._select, Intent.REFINE: self._refine, Intent.NEGATIVE: self._negative,
            Intent.ANALOGOUS: self._analogous, Intent.WHOLE_VIDEO: self._whole_video,
            Intent.CHAT: lambda r: {"kind": "chat"}, Intent.HELP: lambda r: {"kind": "help"},
        }[routed.intent]
        outcome = handler(routed)
        if routed.assumed:
            outcome["why"] = (outcome.get("why", "") + " " + self._say("assumed", what=routed.assumed)).strip()
        outcome["lang"] = self._lang
        outcome["user"] = text  # the turn as typed: a language-model responder answers chit-chat from it
        reply_text = self.engine.responder.respond(routed.intent.value, st, outcome)
        st.turns.append({"user": text, "reply": reply_text, "intent": routed.intent.value, "lang": self._lang})
        found = self._candidate_moments() if self.engine.candidate_moments else []
        timings = dict(self._timings)
        timings["total"] = time.perf_counter() - t_start
        # routing, state updates, evidence and wording: everything that is not encode/search/span
        timings["respond"] = timings["total"] - sum(timings.get(k, 0.0) for k in ("encode", "search", "span"))
        return Reply(intent=routed.intent.value, text=reply_text, kind=outcome["kind"], candidates=list(st.candidates),
                     moment=outcome.get("moment"), video=st.selected, evidence=outcome.get("evidence", []),
                     assumed=routed.assumed, timings=timings, candidate_moments=found)

    def _candidate_moments(self) -> list[Moment | None]:
        st = self.state
        if not st.candidates or not st.query:
            return []
        t0 = time.perf_counter()
        found = self.engine.index.best_moments_many(self._encode(st.query), [c.video for c in st.candidates],
                                                    DEFAULT_WEIGHTS)
        self._add_time("span", time.perf_counter() - t0)
        return [m[0] if m else None for m in found]

    # -- intents ------------------------------------------------------------------------
    def _search_videos(self, query: str, allow: list[int] | None = None) -> list[Candidate]:
        idx = self.engine.index
        if allow is None and self.state.pool is not None:
            allow = [v for v in self.state.pool if v >= 0 and v not in self.state.excluded]
        deny = self.state.excluded or None
        t0 = time.perf_counter()
        queries = self._encode(query)
        t1 = time.perf_counter()
        refs, scores = idx.rank_videos(queries, N_CANDIDATES, DEFAULT_WEIGHTS, allow=allow,
                                       deny=None if allow is not None else deny)
        self._add_time("encode", t1 - t0)
        self._add_time("search", time.perf_counter() - t1)
        return [Candidate(int(v), idx.video(int(v)).path, round(float(sc), 4)) for v, sc in zip(refs[0], scores[0])
                if v >= 0 and (allow is None or v not in self.state.excluded)]

    def _encode(self, query: str) -> dict:
        """One query's vectors (the engine keeps recent ones across turns and sessions)."""
        return self.engine.encode(query)

    def _show_top(self, candidates: list[Candidate], query: str, why: str = "") -> dict:
        st = self.state
        if not candidates:  # nothing left (e.g. everything rejected): no stale list stays on show
            st.candidates, st.selected, st.moment = [], None, None
            other = self._say("other") if st.excluded else ""
            return {"kind": "nothing", "why": self._say("no_match", other=other, query=query)}
        st.candidates = candidates
        st.selected = candidates[0].video
        st.moment = None
        return {"kind": "video", "video": st.selected, "why": why, "evidence": self._video_evidence(st.selected, query)}

    def _find_videos(self, r: Routed) -> dict:
        q = r.query or ""
        if not q.strip():
            return {"kind": "nothing", "why": self._say("need_query")}
        self.state.queries = [q]
        return self._show_top(self._search_videos(q), q)

    def _find_moment(self, r: Routed, direction: str | None = None) -> dict:
        st = self.state
        q = r.query or st.moment_query or st.query
        if not q.strip():
            return {"kind": "nothing", "why": self._say("need_moment_query")}
        if st.selected is None:  # nothing chosen yet: find the video first, then the moment in it
            st.queries = [q]
            found = self._show_top(self._search_videos(q), q)
            if found["kind"] == "nothing":
                return found
        m = self._best_moment(st.selected, q, direction)
        if m is None:
            where = self._say(direction) if direction else self._say("in_video")
            return {"kind": "nothing", "why": self._say("no_moment_match", where=where, query=q)}
        st.moment, st.moment_query = m, q
        return {"kind": "moment", "moment": m, "evidence": self._moment_evidence(m, query=q)}

    def _best_moment(self, video: int, query: str, direction: str | None) -> Moment | None:
        last = self.state.moment if self.state.moment and self.state.moment.video == video else None
        window = None
        if direction == "after" and last:
            window = (last.end, float("inf"))
        elif direction == "before" and last:
            window = (float("-inf"), last.start)
        t0 = time.perf_counter()
        queries = self._encode(query)
        t1 = time.perf_counter()
        found = self.engine.index.best_moments(queries, video, DEFAULT_WEIGHTS, window=window, top=1)
        self._add_time("encode", t1 - t0)
        self._add_time("span", time.perf_counter() - t1)
        return found[0] if found else None

    def _select(self, r: Routed) -> dict:
        st = self.state
        if not st.candidates:
            return {"kind": "nothing", "why": self._say("no_list")}
        if r.ordinal is not None:  # "video N" as replies number them (the given pool's order, if any)
            numbered = st.numbered()
            n = len(numbered) if r.ordinal == -1 else r.ordinal
            if not 1 <= n <= len(numbered) or numbered[n - 1] < 0:
                return {"kind": "nothing", "why": self._say("pick_range", n=len(numbered))}
            chosen = next((c for c in st.candidates if c.video == numbered[n - 1]), None) \
                or Candidate(numbered[n - 1], self.engine.index.video(numbered[n - 1]).path, 0.0)
        else:  # "the one with the cockatoo": re-rank the candidates by that description
            ranked = self._search_videos(r.query, allow=[c.video for c in st.candidates])
            if not ranked:
                return {"kind": "nothing", "why": self._say("none_shows", query=r.query)}
            chosen = next(c for c in st.candidates if c.video == ranked[0].video)
        st.selected, st.moment = chosen.video, None
        return {"kind": "video", "video": chosen.video, "evidence": self._video_evidence(chosen.video, r.query or st.query)}

    def _refine(self, r: Routed) -> dict:
        st = self.state
        if r.direction:  # "earlier", "the part after that": relative to the last moment
            if st.moment is None:
                return {"kind": "nothing", "why": self._say("no_moment_yet")}
            return self._find_moment(Routed(Intent.MOMENT_RETRIEVAL, query=r.query or st.moment_query), r.direction)
        if not st.queries:
            return self._find_videos(Routed(Intent.VIDEO_RETRIEVAL, query=r.query))
        st.queries.append(r.query)  # a refinement adds to the query
        allow = [c.video for c in st.candidates] if st.candidates else None
        ranked = self._search_videos(st.query, allow=allow)
        return self._show_top(ranked, st.query, why=self._say("reranked", query=st.query))

    def _negative(self, r: Routed) -> dict:
        st = self.state
        if r.scope == "all":
            st.excluded += [c.video for c in st.candidates if c.video not in st.excluded]
        elif st.selected is not None and st.selected not in st.excluded:
            st.excluded.append(st.selected)
        if not st.query:
            return {"kind": "nothing", "why": self._say("noted")}
        return self._show_top(self._search_videos(st.query), st.query, why=self._say("excluded"))

    def _analogous(self, r: Routed) -> dict:
        st = self.state
        idx = self.engine.index
        if st.moment is not None:
            v, a, b = st.moment.video, st.moment.start, st.moment.end
        elif st.selected is not None:
            v, a, b = st.selected, 0.0, float("inf")
        else:
            return {"kind": "nothing", "why": self._say("need_scene")}
        q = {"visual": idx.moment_vector(v, a, b, "visual")}
        t0 = time.perf_counter()
        found, found_scores = idx.rank_videos(q, N_CANDIDATES, {"visual": 1.0}, deny=sorted(set(st.excluded) | {v}))
        self._add_time("search", time.perf_counter() - t0)
        vids = [int(x) for x in found[0] if x >= 0]
        if not vids:
            return {"kind": "nothing", "why": self._say("no_similar")}
        cands = [Candidate(x, idx.video(x).path, round(float(s), 4)) for x, s in zip(vids, found_scores[0])]
        st.candidates, st.selected = cands, vids[0]
        # the most similar moment inside the best match
        t1 = time.perf_counter()
        st.moment = idx.best_moments(q, vids[0], {"visual": 1.0}, top=1)[0]
        self._add_time("span", time.perf_counter() - t1)
        return {"kind": "video", "video": vids[0], "moment": st.moment,
                "why": self._say("looks_like_scene", moment=st.moment), "evidence": self._moment_evidence(st.moment)}

    def _whole_video(self, r: Routed) -> dict:
        st = self.state
        v = st.moment.video if st.moment else st.selected
        if v is None:
            return {"kind": "nothing", "why": self._say("which_video")}
        st.selected = v
        st.moment = Moment(v, 0.0, float(self.engine.index.video(v).duration), 0.0)
        return {"kind": "whole", "moment": st.moment}

    def _say(self, key: str, **params) -> str:
        return say(key, self._lang, **params)

    def _add_time(self, key: str, sec: float) -> None:
        self._timings[key] = self._timings.get(key, 0.0) + sec

    # -- evidence -----------------------------------------------------------------------
    def _video_evidence(self, video: int, query: str) -> list[str]:
        if not query:
            return []
        m = self._best_moment(video, query, None)
        return self._moment_evidence(m, prefix=self._say("best_match", moment=m), query=query) if m else []

    def _moment_evidence(self, m: Moment, prefix: str = "", query: str = "") -> list[str]:
        """What supports the moment (dialogue/evidence.py): the lines that match ``query``, best
        first, then the concepts the classifier was sure of; with no query (a scene), the
        informative lines."""
        queries = self._encode(query) if query else None  # cached: the turn encoded it already
        ev = self.engine.index.evidence(m.video, m.start, m.end, queries, DEFAULT_WEIGHTS if queries else None)
        out = []
        for src, a, b, text in supporting_lines(ev, query):
            out.append(prefix + self._say("line", source=source_name(src, self._lang), start=a, end=b, text=text))
            prefix = ""
        concepts = confident_concepts(ev)
        if concepts:
            out.append(prefix + self._say("looks_like", concepts=concepts))
        elif not out and prefix:  # nothing to cite: the best moment is still worth saying
            out.append(prefix.rstrip().rstrip(":："))
        return out

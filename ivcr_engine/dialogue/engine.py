"""Engine and sessions: `Engine.open(index_dir).session().ask("...")` -> Reply.

Each turn is routed to an intent, composes its search from the session state (a refinement adds
to the last query; "not this one" excludes; "earlier" looks before the last moment), runs it on
the index (fused top-k over videos, moments with their evidence inside videos), updates the state
and lets the responder word the reply. The index is used only through the index protocol
(`index.protocol.VideoIndex`), so a single index, a sharded one or a batching wrapper all serve
the same dialogue; the state keeps video refs.

A turn asks the index for each video's moments once: the moments a turn computes (with their
evidence, from one read of each video's lines) are kept for the rest of the turn, so the answer's
evidence and the candidates' moments (``Engine(candidate_moments=True)``) share them.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..errors import EngineFault, InvalidArgument, WrongType
from ..index.image_query import PICTURE_WEIGHTS
from ..index.layout import DEFAULT_WEIGHTS
from ..index.protocol import Moment, MomentMatch, VideoIndex
from .evidence import confident_concepts, supporting_lines
from .messages import language_of, say, source_name
from .responders import Responder, TemplateResponder
from .router import Intent, Routed, Router, clean_text, picture_words
from .state import Candidate, Outcome, Reply, SessionState, pack_row, unpack_row

N_CANDIDATES = 10  # the IVCR protocol's candidate list


class RouterSentences:
    """The router's sentence vectors from the index's query encoder (index/query_encoder.py: the
    text channels share the text model's space, and its cache keeps the prototypes' vectors)."""

    def __init__(self, engine: "Engine"):
        self.engine = engine  # not the index: the engine's index may be replaced (Engine.index)

    def _queries(self):
        queries = getattr(self.engine.index, "queries", None)
        if queries is None or not any(c in self.engine.index.channels for c in ("concept", "speech", "subtitle")):
            raise EngineFault("this index has no text channel to route turns by")
        return queries

    @property
    def chance(self) -> float:
        return self._queries().chance

    def unit(self, texts):
        texts = [t if t.strip() else "?" for t in texts]  # an empty turn still gets a vector to route by
        return self._queries().unit(texts)


class Engine:
    def __init__(self, index: VideoIndex, responder: Responder | None = None, use_prototypes: bool = True,
                 candidate_moments: bool = False):
        """``candidate_moments``: every reply also carries each candidate's best moment for the
        turn's search text (one batched call: what a page shows on the candidates' thumbnails)."""
        self.responder = responder or TemplateResponder()
        self.candidate_moments = candidate_moments
        self.router = Router(RouterSentences(self) if use_prototypes else None)
        self.index = index  # a live server refreshes it in place on commits; query vectors stay cached by model

    def encode(self, query: str) -> dict:
        """One query's vectors (channel -> (1, d)): from the query encoder's cache when it has them
        (without waiting for a batch), else encoded through the index (which caches them)."""
        queries = getattr(self.index, "queries", None)
        rows = queries.cached_rows([query]) if queries is not None else None
        return rows if rows is not None else self.index.encode_queries([query])

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
        # the turn in progress's moments: (query, window, video) -> its best match or None
        self._found: dict[tuple, MomentMatch | None] = {}

    # -- persistence --------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(self.state.to_dict(), ensure_ascii=False)

    @classmethod
    def from_json(cls, engine: Engine, text: str) -> "Session":
        return cls(engine, SessionState.from_dict(json.loads(text)))

    # -- one turn -----------------------------------------------------------------------
    def ask(self, text: str = "", image=None) -> Reply:
        """One turn. ``image``: a picture that comes with it (JPEG/PNG/WebP bytes or (H, W, 3)
        uint8 RGB): the turn then searches by it, with the turn's own words ("this, but at night")."""
        if not isinstance(text, str):
            raise WrongType("a turn is a string")
        text = clean_text(text)  # no control or escape characters reach routing, state or replies
        st = self.state
        t_start = time.perf_counter()
        self._timings, self._found = {}, {}
        # a turn without words ("2", "?") keeps the conversation's language
        self._lang = language_of(text, default=st.turns[-1].get("lang", "en") if st.turns else "en")
        if image is not None:
            picture = self._encode_picture(image)  # before any state changes: a bad picture changes nothing
            routed = Routed(Intent.VIDEO_RETRIEVAL, query=picture_words(text), matched="picture")
            handler = lambda r: self._find_by_picture(r, picture)  # noqa: E731
        else:
            routed = self.engine.router.route(text, has_candidates=bool(st.candidates),
                                              has_selection=st.selected is not None, lang=self._lang)
            handler = self._handler(routed)
        outcome = handler(routed)
        if routed.assumed:
            outcome.why = (outcome.why + " " + self._say("assumed", what=routed.assumed)).strip()
        outcome.lang, outcome.user = self._lang, text  # a language-model responder answers chit-chat from it
        reply_text = self.engine.responder.respond(routed.intent.value, st, outcome)
        turn = {"user": text, "reply": reply_text, "intent": routed.intent.value, "lang": self._lang}
        if image is not None:
            turn["picture"] = True
        st.turns.append(turn)
        found = self._candidate_moments() if self.engine.candidate_moments else []
        timings = dict(self._timings)
        timings["total"] = time.perf_counter() - t_start
        # routing, state updates, evidence and wording: everything that is not encode/search/span
        timings["respond"] = timings["total"] - sum(timings.get(k, 0.0) for k in ("encode", "search", "span"))
        return Reply(intent=routed.intent.value, text=reply_text, kind=outcome.kind, candidates=list(st.candidates),
                     moment=outcome.moment, video=st.selected, evidence=outcome.evidence,
                     assumed=routed.assumed, timings=timings, candidate_moments=found)

    def _handler(self, routed: Routed):
        return {
            Intent.VIDEO_RETRIEVAL: self._find_videos, Intent.MOMENT_RETRIEVAL: self._find_moment,
            Intent.SELECT: self._select, Intent.REFINE: self._refine, Intent.NEGATIVE: self._negative,
            Intent.ANALOGOUS: self._analogous, Intent.WHOLE_VIDEO: self._whole_video,
            Intent.CHAT: lambda r: Outcome("chat"), Intent.HELP: lambda r: Outcome("help"),
        }[routed.intent]

    def _candidate_moments(self) -> list[Moment | None]:
        st = self.state
        if not st.candidates or not (st.query or st.image):
            return []
        found = self._matches(st.query, [c.video for c in st.candidates])
        return [m.moment if m else None for m in found]

    # -- moments, once per turn ---------------------------------------------------------
    def _matches(self, query: str, videos: list[int], window: tuple | None = None) -> list[MomentMatch | None]:
        """Each video's best moment for ``query`` with its evidence: what this turn already
        found, and the rest from one index call (one read of each video's lines)."""
        todo = [v for v in dict.fromkeys(videos) if (query, window, v) not in self._found]
        if todo:
            t0 = time.perf_counter()
            queries, weights = self._rows(query)
            t1 = time.perf_counter()
            got = self.engine.index.moments(queries, todo, weights, window=window, top=1)
            self._add_time("encode", t1 - t0)
            self._add_time("span", time.perf_counter() - t1)
            for v, ms in zip(todo, got):
                self._found[(query, window, v)] = ms[0] if ms else None
        return [self._found[(query, window, v)] for v in videos]

    # -- intents ------------------------------------------------------------------------
    def _search_videos(self, query: str, allow: list[int] | None = None) -> list[Candidate]:
        idx = self.engine.index
        if allow is None and self.state.pool is not None:
            allow = [v for v in self.state.pool if v >= 0 and v not in self.state.excluded]
        deny = self.state.excluded or None
        t0 = time.perf_counter()
        queries, weights = self._rows(query)
        t1 = time.perf_counter()
        refs, scores = idx.rank_videos(queries, N_CANDIDATES, weights, allow=allow,
                                       deny=None if allow is not None else deny)
        self._add_time("encode", t1 - t0)
        self._add_time("search", time.perf_counter() - t1)
        return [Candidate(int(v), idx.video(int(v)).path, round(float(sc), 4)) for v, sc in zip(refs[0], scores[0])
                if v >= 0 and (allow is None or v not in self.state.excluded)]

    def _encode(self, query: str) -> dict:
        """One query's vectors (the query encoder keeps recent ones across turns and sessions)."""
        return self.engine.encode(query)

    def _rows(self, query: str) -> tuple[dict, dict]:
        """The query rows and weights a search for ``query`` runs with: its text's, plus the
        picture's visual row when ``query`` is the search the picture was given with (the
        composed ``state.query``: "this, but at night", then "not this one" or "earlier")."""
        rows = dict(self._encode(query)) if query.strip() else {}
        if not self._with_picture(query):
            return rows, DEFAULT_WEIGHTS
        rows["visual"] = unpack_row(self.state.image)
        return rows, PICTURE_WEIGHTS

    def _with_picture(self, query: str) -> bool:
        """Whether a search for ``query`` is the one the state's picture was given with."""
        return self.state.image is not None and query == self.state.query

    def _encode_picture(self, image) -> np.ndarray:
        """The picture's visual query row (the index's frame model; a bad picture raises
        InvalidArgument here, before the turn changes anything)."""
        encode = getattr(self.engine.index, "encode_image", None)
        if encode is None:
            raise InvalidArgument("this index cannot search by picture")
        t0 = time.perf_counter()
        row = encode(image)["visual"]
        self._add_time("encode", time.perf_counter() - t0)
        return row

    def _show_top(self, candidates: list[Candidate], query: str, why: str = "") -> Outcome:
        st = self.state
        if not candidates:  # nothing left (e.g. everything rejected): no stale list stays on show
            st.candidates, st.selected, st.moment = [], None, None
            other = self._say("other") if st.excluded else ""
            return Outcome("nothing", why=self._say("no_match", other=other, query=query))
        st.candidates = candidates
        st.selected = candidates[0].video
        st.moment = None
        if self.engine.candidate_moments:  # the candidates' moments come with the top one's, in one call
            self._matches(query, [c.video for c in candidates])
        return Outcome("video", video=st.selected, why=why, evidence=self._video_evidence(st.selected, query))

    def _find_videos(self, r: Routed) -> Outcome:
        q = r.query or ""
        if not q.strip():
            return Outcome("nothing", why=self._say("need_query"))
        self.state.queries, self.state.image = [q], None  # a new search, in words only
        return self._show_top(self._search_videos(q), q)

    def _find_by_picture(self, r: Routed, picture: np.ndarray) -> Outcome:
        """Videos like the picture (and the turn's words, if any), and the moment in the best one
        that looks most like it."""
        st = self.state
        st.queries, st.image = ([r.query] if r.query else []), pack_row(picture)
        q = st.query
        found = self._show_top(self._search_videos(q), q)
        if found.kind == "nothing":
            return found
        match = self._matches(q, [st.selected])[0]
        if match is None:
            return found
        st.moment, st.moment_query = match.moment, q
        return Outcome("video", video=st.selected, moment=match.moment,
                       why=self._say("looks_like_picture", moment=match.moment), evidence=self._cite(match, query=q))

    def _find_moment(self, r: Routed, direction: str | None = None) -> Outcome:
        st = self.state
        q = r.query or st.moment_query or st.query
        if not q.strip() and not self._with_picture(q):
            return Outcome("nothing", why=self._say("need_moment_query"))
        if st.selected is None:  # nothing chosen yet: find the video first, then the moment in it
            st.queries = [q]
            found = self._show_top(self._search_videos(q), q)
            if found.kind == "nothing":
                return found
        match = self._best_moment(st.selected, q, direction)
        if match is None:
            where = self._say(direction) if direction else self._say("in_video")
            return Outcome("nothing", why=self._say("no_moment_match", where=where, query=q))
        st.moment, st.moment_query = match.moment, q
        return Outcome("moment", moment=match.moment, evidence=self._cite(match, query=q))

    def _best_moment(self, video: int, query: str, direction: str | None) -> MomentMatch | None:
        last = self.state.moment if self.state.moment and self.state.moment.video == video else None
        window = None
        if direction == "after" and last:
            window = (last.end, float("inf"))
        elif direction == "before" and last:
            window = (float("-inf"), last.start)
        return self._matches(query, [video], window)[0]

    def _select(self, r: Routed) -> Outcome:
        st = self.state
        if not st.candidates:
            return Outcome("nothing", why=self._say("no_list"))
        if r.ordinal is not None:  # "video N" as replies number them (the given pool's order, if any)
            numbered = st.numbered()
            n = len(numbered) if r.ordinal == -1 else r.ordinal
            if not 1 <= n <= len(numbered) or numbered[n - 1] < 0:
                return Outcome("nothing", why=self._say("pick_range", n=len(numbered)))
            chosen = next((c for c in st.candidates if c.video == numbered[n - 1]), None) \
                or Candidate(numbered[n - 1], self.engine.index.video(numbered[n - 1]).path, 0.0)
        else:  # "the one with the cockatoo": re-rank the candidates by that description
            ranked = self._search_videos(r.query, allow=[c.video for c in st.candidates])
            if not ranked:
                return Outcome("nothing", why=self._say("none_shows", query=r.query))
            chosen = next(c for c in st.candidates if c.video == ranked[0].video)
        st.selected, st.moment = chosen.video, None
        return Outcome("video", video=chosen.video, evidence=self._video_evidence(chosen.video, r.query or st.query))

    def _refine(self, r: Routed) -> Outcome:
        st = self.state
        if r.direction:  # "earlier", "the part after that": relative to the last moment
            if st.moment is None:
                return Outcome("nothing", why=self._say("no_moment_yet"))
            return self._find_moment(Routed(Intent.MOMENT_RETRIEVAL, query=r.query or st.moment_query), r.direction)
        if not st.queries and not st.image:
            return self._find_videos(Routed(Intent.VIDEO_RETRIEVAL, query=r.query))
        st.queries.append(r.query)  # a refinement adds to the query
        allow = [c.video for c in st.candidates] if st.candidates else None
        ranked = self._search_videos(st.query, allow=allow)
        return self._show_top(ranked, st.query, why=self._say("reranked", query=st.query))

    def _negative(self, r: Routed) -> Outcome:
        st = self.state
        if r.scope == "all":
            st.excluded += [c.video for c in st.candidates if c.video not in st.excluded]
        elif st.selected is not None and st.selected not in st.excluded:
            st.excluded.append(st.selected)
        if not st.query and not st.image:
            return Outcome("nothing", why=self._say("noted"))
        return self._show_top(self._search_videos(st.query), st.query, why=self._say("excluded"))

    def _analogous(self, r: Routed) -> Outcome:
        st = self.state
        idx = self.engine.index
        if st.moment is not None:
            v, a, b = st.moment.video, st.moment.start, st.moment.end
        elif st.selected is not None:
            v, a, b = st.selected, 0.0, float("inf")
        else:
            return Outcome("nothing", why=self._say("need_scene"))
        q = {"visual": idx.moment_vector(v, a, b, "visual")}
        t0 = time.perf_counter()
        found, found_scores = idx.rank_videos(q, N_CANDIDATES, {"visual": 1.0}, deny=sorted(set(st.excluded) | {v}))
        self._add_time("search", time.perf_counter() - t0)
        vids = [int(x) for x in found[0] if x >= 0]
        if not vids:
            return Outcome("nothing", why=self._say("no_similar"))
        cands = [Candidate(x, idx.video(x).path, round(float(s), 4)) for x, s in zip(vids, found_scores[0])]
        st.candidates, st.selected = cands, vids[0]
        # the most similar moment inside the best match, with the informative lines under it (a
        # scene's vector scores no line: Evidence.line_match stays empty)
        t1 = time.perf_counter()
        match = idx.moments(q, [vids[0]], {"visual": 1.0}, top=1)[0][0]
        self._add_time("span", time.perf_counter() - t1)
        st.moment = match.moment
        return Outcome("video", video=vids[0], moment=st.moment, why=self._say("looks_like_scene", moment=st.moment),
                       evidence=self._cite(match))

    def _whole_video(self, r: Routed) -> Outcome:
        st = self.state
        v = st.moment.video if st.moment else st.selected
        if v is None:
            return Outcome("nothing", why=self._say("which_video"))
        st.selected = v
        st.moment = Moment(v, 0.0, float(self.engine.index.video(v).duration), 0.0)
        return Outcome("whole", moment=st.moment)

    def _say(self, key: str, **params) -> str:
        return say(key, self._lang, **params)

    def _add_time(self, key: str, sec: float) -> None:
        self._timings[key] = self._timings.get(key, 0.0) + sec

    # -- evidence -----------------------------------------------------------------------
    def _video_evidence(self, video: int, query: str) -> list[str]:
        if not query and not self._with_picture(query):
            return []
        match = self._matches(query, [video])[0]
        return self._cite(match, prefix=self._say("best_match", moment=match.moment), query=query) if match else []

    def _cite(self, match: MomentMatch, prefix: str = "", query: str = "") -> list[str]:
        """What supports the moment (dialogue/evidence.py): the lines that match ``query``, best
        first, then the concepts the classifier was sure of; with no query (a scene), the
        informative lines."""
        ev = match.evidence
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

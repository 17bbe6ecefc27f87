"""The Python path the engine replaced, assembled from its kept parts (reference_ranking.py,
reference_moments.py) over an ``Index``'s own view: what the engine's answers are held to."""
from __future__ import annotations

import numpy as np

from ivcr_engine.index import Hit, Index
from ivcr_engine.index.protocol import query_rows
from ivcr_engine.models.registry import index_text_model

from .reference_lexical import LexicalSearch
from .reference_moments import LineScale, MomentService
from .reference_ranking import reference_rank


class Reference:
    def __init__(self, index: Index):
        self.index = index
        self.lexical = LexicalSearch(index.store)
        self.ref_of = {int(v["id"]): r for r, v in enumerate(index.mapped.videos)}  # video id -> ref
        settings = index.settings
        scale = LineScale(usable=settings.get("line_text_model") == index_text_model(settings), chance=index._chance)
        self.service = MomentService(index.mapped, index.store, index.clip_seconds, index.moment_edges, scale,
                                     self.lexical)

    def rank(self, queries, k: int, weights=None, allow=None, deny=None):
        ix = self.index
        q = query_rows(queries)
        return reference_rank(ix.mapped, self.lexical, q, ix._weights(q, weights), int(k), ix._eligible(ix._view, allow, deny),
                              None, self.ref_of)

    rank_videos = rank  # the index protocol's names, so a caller asks either the same way

    def num_refs(self) -> int:
        return self.index.num_refs()

    def moments(self, queries, videos, weights=None, window=None, top: int = 1, evidence: bool = True):
        q = query_rows(queries)
        return self.service.find(q, self.index._weights(q, weights), list(videos), window, top, evidence)

    def evidence(self, video: int, start: float, end: float, queries=None, weights=None):
        q = None if queries is None else query_rows(queries)
        return self.service.evidence(video, start, end, q, None if q is None else self.index._weights(q, weights))

    def search(self, queries, k: int = 10, weights=None, allow=None, deny=None, moments_per_video: int = 1) -> list[Hit]:
        ix = self.index
        k = min(k, ix.num_refs())
        refs, scores = self.rank(queries, k, weights, allow, deny)
        keep = [(int(r), float(s)) for r, s in zip(refs[0], scores[0]) if r >= 0]
        found = self.moments(queries, [r for r, _ in keep], weights, top=moments_per_video)
        hits = []
        for (ref, score), matches in zip(keep, found):
            v = ix.mapped.videos[ref]
            for m in matches:
                hits.append(Hit(rank=len(hits) + 1, video_id=int(v["id"]), video_index=ref, path=v["path"],
                                start=m.moment.start, end=m.moment.end, score=score, moment_score=m.moment.score,
                                evidence=m.evidence))
        return hits


def batch_rows(queries: dict, r: int) -> dict:
    return {c: np.asarray(q)[r:r + 1] for c, q in queries.items()}

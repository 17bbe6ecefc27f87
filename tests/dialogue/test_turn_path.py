"""One path for a turn: a text is encoded once however the index is served (the query encoder's
one cache), and a video's timed lines are read once for all the moments and evidence of a turn
(the moment service)."""
from __future__ import annotations

from collections import Counter

from ivcr_engine.dialogue import Engine
from ivcr_engine.index import Index, IndexStore
from ivcr_engine.index.batching import BatchingIndex
from ivcr_engine.index.manifest import split_index
from ivcr_engine.index.query_encoder import QueryEncoder
from ivcr_engine.index.sharded import ShardedIndex, open_index

TURN = "find videos of a parrot on a perch"


def test_a_text_a_turn_encoded_is_not_encoded_again_by_serving_a_reopened_or_a_sharded_index(shared_index, tmp_path):
    root = shared_index[0]
    shared = QueryEncoder()
    engine = Engine(Index(root, query_encoder=shared), candidate_moments=True)
    first = engine.session().ask(TURN)
    assert first.candidates and shared.encoded >= 1
    encoded = shared.encoded
    # serving: the micro-batcher over the same index (what `ivcr serve` runs)
    engine.index = BatchingIndex(engine.index)
    assert engine.session().ask(TURN).candidates == first.candidates
    engine.index.close()
    # the folder opened again on the process's query encoder
    engine.index = open_index(root, query_encoder=shared)
    assert engine.session().ask(TURN).candidates == first.candidates
    # a sharded index of the same text model
    split_index(root, tmp_path / "sharded", 2)
    engine.index = ShardedIndex(tmp_path / "sharded", query_encoder=shared)
    reply = engine.session().ask(TURN)
    assert [engine.index.video(c.video).path for c in reply.candidates] == [c.path for c in first.candidates]
    assert shared.encoded == encoded
    # a new text is encoded (once), so the count above would have seen a second encoding
    engine.session().ask("find videos of a rocket launch")
    assert shared.encoded == encoded + 1


def test_a_turn_reads_each_videos_lines_once(shared_index, monkeypatch):
    """The answer's moment and evidence and the candidates' moments share one read per video (by
    the engine, which keeps them; Python reads none)."""
    reads: Counter = Counter()
    for name in ("text_lines", "texts"):
        original = getattr(IndexStore, name)

        def spy(self, video_id, *a, _original=original, **kw):
            reads[video_id] += 1
            return _original(self, video_id, *a, **kw)

        monkeypatch.setattr(IndexStore, name, spy)
    index = Index(shared_index[0])
    engine = Engine(index, candidate_moments=True)
    session = engine.session()
    reply = session.ask(TURN)
    assert len(reply.candidates) >= 2 and reply.evidence
    assert index.native.line_reads() == len({c.video for c in reply.candidates}) and not reads
    # a moment in the chosen video (another query over the same lines), and the candidates' moments
    # again: the lines read in the last turn are still at hand
    before = index.native.line_reads()
    reply = session.ask("when does the parrot climb")
    assert reply.kind == "moment" and reply.candidate_moments and index.native.line_reads() == before and not reads

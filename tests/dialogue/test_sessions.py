"""SessionManager: persistence after every turn, resume from the database, TTL expiry, one turn at
a time per session, sessions in parallel, async twins; on the real engine over the shared videos."""
from __future__ import annotations

import asyncio
import threading

import pytest

from ivcr_engine.dialogue import Engine
from ivcr_engine.dialogue.sessions import SessionManager, UnknownSession


@pytest.fixture(scope="module")
def engine(shared_index):
    return Engine.open(shared_index[0])


def test_state_persists_and_resumes(engine, tmp_path):
    db = tmp_path / "s.sqlite"
    m1 = SessionManager(engine, db)
    sid = m1.create()
    found = m1.ask(sid, "find videos of a cockatoo")
    m1.close()
    m2 = SessionManager(engine, db)  # a new process would do exactly this
    st = m2.state(sid)
    assert [c.video for c in st.candidates] == [c.video for c in found.candidates]
    picked = m2.ask(sid, "the second one")
    assert picked.intent == "selection" and picked.video == found.candidates[1].video
    assert [t["user"] for t in m2.state(sid).turns] == ["find videos of a cockatoo", "the second one"]
    m2.close()


def test_ttl_expiry(engine, tmp_path):
    now = [1000.0]
    m = SessionManager(engine, tmp_path / "s.sqlite", ttl_s=60, clock=lambda: now[0])
    old, fresh = m.create(), m.create()
    now[0] += 50
    m.ask(fresh, "find videos of a dog")
    now[0] += 20  # old: idle 70 s; fresh: idle 20 s
    with pytest.raises(UnknownSession, match="expired"):
        m.state(old)
    assert m.state(fresh).turns
    now[0] += 100
    assert m.expire() == 1 and len(m) == 0
    with pytest.raises(ValueError):
        SessionManager(engine, ttl_s=0)


def test_bad_turns_change_nothing(engine):
    m = SessionManager(engine)
    sid = m.create()
    for bad, err in (("", ValueError), ("   ", ValueError), ("x" * 5000, ValueError), (None, TypeError)):
        with pytest.raises(err):
            m.ask(sid, bad)
    assert m.state(sid).turns == []
    with pytest.raises(UnknownSession):
        m.ask("no-such-session", "find a dog")
    with pytest.raises(UnknownSession):
        m.delete("no-such-session")


def test_one_session_serialises_many_run_in_parallel(engine):
    m = SessionManager(engine)
    shared = m.create()
    own = [m.create() for _ in range(6)]
    errors = []
    barrier = threading.Barrier(12)

    def one_turn(sid, text):
        barrier.wait()
        try:
            m.ask(sid, text)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=one_turn, args=(shared, f"find videos of a dog number {i}")) for i in range(6)]
    threads += [threading.Thread(target=one_turn, args=(sid, "find videos of a bird")) for sid in own]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    # every concurrent turn on the shared session is in its history, none overwrote another
    users = sorted(t["user"] for t in m.state(shared).turns)
    assert users == sorted(f"find videos of a dog number {i}" for i in range(6))
    assert all(len(m.state(sid).turns) == 1 for sid in own)


def test_async_twins(engine):
    m = SessionManager(engine)

    async def talk():
        sid = await m.acreate()
        replies = await asyncio.gather(*(m.aask(s, "find videos of a cockatoo") for s in [sid] + [await m.acreate() for _ in range(3)]))
        await m.aensure("client-chosen-id")
        hits = await m.asearch("a cockatoo", k=2)
        state = await m.astate(sid)
        await m.adelete(sid)
        return replies, hits, state

    replies, hits, state = asyncio.run(talk())
    assert {r.candidates[0].video for r in replies} == {hits[0].video_index}
    assert len(state.turns) == 1 and m.state("client-chosen-id").turns == []


def test_a_reply_carries_each_candidates_best_moment_from_the_turns_query_vectors(shared_index, monkeypatch):
    """The served reply's per-candidate moments (the page's thumbnails) come from the engine in
    the same turn, in one batched call over the candidates, from the query vectors the turn just
    made (no second encoding), and equal what best_moments finds video by video."""
    engine = Engine.open(shared_index[0], candidate_moments=True)
    encoded = []
    original = engine.index.encode_queries
    monkeypatch.setattr(engine.index, "encode_queries", lambda texts: encoded.append(list(texts)) or original(texts))
    m = SessionManager(engine)
    sid = m.create()
    reply = m.ask(sid, "find videos of a parrot on a perch")
    assert len(encoded) == 1 and len(reply.candidate_moments) == len(reply.candidates) >= 2
    q = engine.encode(m.state(sid).query)
    for c, cm in zip(reply.candidates, reply.candidate_moments):
        best = engine.index.best_moments(q, c.video, top=1)
        if cm is None:
            assert not best
            continue
        assert (cm.video, cm.start, cm.end) == (best[0].video, best[0].start, best[0].end) == (c.video, cm.start, cm.end)
        assert cm.score == pytest.approx(best[0].score, abs=1e-5)  # one batched product vs one per video
    assert len(encoded) == 1
    # off by default: a Python caller's turns pay for none
    assert Engine(engine.index).session().ask("find videos of a parrot on a perch").candidate_moments == []
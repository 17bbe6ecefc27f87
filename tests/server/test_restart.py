"""Sessions survive the server: a real `ivcr serve` subprocess is killed (SIGKILL) mid-conversation
and started again on the same sessions database; the conversation goes on where it was."""
from __future__ import annotations

import httpx


def test_session_survives_kill_and_restart(shared_index, serve_process, tmp_path):
    root, _ = shared_index
    db = tmp_path / "sessions.sqlite"
    first = serve_process(root, db)
    sid = httpx.post(first.url + "/v1/sessions").json()["session_id"]
    found = httpx.post(f"{first.url}/v1/sessions/{sid}/turns", json={"text": "find videos of a cockatoo"}, timeout=60).json()
    assert found["intent"] == "video retrieval" and len(found["candidates"]) >= 3
    first.kill()

    second = serve_process(root, db)
    state = httpx.get(f"{second.url}/v1/sessions/{sid}").json()
    assert [t["user"] for t in state["history"]] == ["find videos of a cockatoo"]
    assert state["candidates"] == [c["video_id"] for c in found["candidates"]]
    picked = httpx.post(f"{second.url}/v1/sessions/{sid}/turns", json={"text": "the third one"}, timeout=60).json()
    assert picked["intent"] == "selection" and picked["video_id"] == found["candidates"][2]["video_id"]
    assert len(httpx.get(f"{second.url}/v1/sessions/{sid}").json()["history"]) == 2

"""Every endpoint of the HTTP API and its error paths, through FastAPI's in-process client over
the real engine on an index of the shared videos."""
from __future__ import annotations

import json

import pytest

from ivcr_engine.server import build_app, is_loopback, serve

pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from .served import metric_samples  # noqa: E402


@pytest.fixture(scope="module")
def client(shared_index, tmp_path_factory):
    root, _ = shared_index
    app = build_app(root, sessions_db=tmp_path_factory.mktemp("api") / "sessions.sqlite")
    with TestClient(app) as c:
        yield c


def video_ids(client) -> dict[str, int]:
    hits = client.post("/v1/search", json={"query": "a video", "k": 20}).json()["hits"]
    return {h["name"]: h["video_id"] for h in hits}


def assert_error(resp, status: int):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["message"] and "Traceback" not in resp.text


def test_health_and_page(client):
    h = client.get("/healthz").json()
    assert h["ok"] and h["videos"] >= 8 and h["refs"] >= h["videos"]
    page = client.get("/")
    assert page.status_code == 200 and "<video" in page.text and "/static/app.js" in page.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    assert_error(client.get("/static/..%2Fapp.py"), 404)
    assert_error(client.get("/static/nothing.js"), 404)


def test_session_lifecycle(client):
    sid = client.post("/v1/sessions").json()["session_id"]
    r = client.post(f"/v1/sessions/{sid}/turns", json={"text": "find videos of a cockatoo"})
    assert r.status_code == 200, r.text
    reply = r.json()
    assert reply["intent"] == "video retrieval" and reply["candidates"]
    first = reply["candidates"][0]
    assert first["rank"] == 1 and first["name"].endswith((".mp4", ".mpg")) and "path" not in first
    assert first["moment"]["end"] > first["moment"]["start"]  # the thumbnail's moment
    assert reply["timings_ms"]["total"] > 0 and reply["video_id"] == first["video_id"]

    r2 = client.post(f"/v1/sessions/{sid}/turns", json={"text": "the second one"}).json()
    assert r2["intent"] == "selection" and r2["video_id"] == reply["candidates"][1]["video_id"]
    r3 = client.post(f"/v1/sessions/{sid}/turns", json={"text": "when does the bird appear?"}).json()
    assert r3["intent"] == "moment retrieval" and r3["moment"]["video_id"] == r2["video_id"]
    assert 0 <= r3["moment"]["start"] < r3["moment"]["end"]

    state = client.get(f"/v1/sessions/{sid}").json()
    assert [t["user"] for t in state["history"]] == ["find videos of a cockatoo", "the second one",
                                                     "when does the bird appear?"]
    assert state["selected"] == r2["video_id"] and state["moment"]["start"] == pytest.approx(r3["moment"]["start"])

    assert client.delete(f"/v1/sessions/{sid}").json() == {"deleted": sid}
    assert_error(client.get(f"/v1/sessions/{sid}"), 404)
    assert_error(client.delete(f"/v1/sessions/{sid}"), 404)
    assert_error(client.post(f"/v1/sessions/{sid}/turns", json={"text": "hello"}), 404)


def test_turn_errors(client):
    sid = client.post("/v1/sessions").json()["session_id"]
    url = f"/v1/sessions/{sid}/turns"
    assert_error(client.post(url, content=b"{not json", headers={"Content-Type": "application/json"}), 400)
    assert_error(client.post(url, json=["a list"]), 400)
    assert_error(client.post(url, json={}), 400)
    assert_error(client.post(url, json={"text": 42}), 400)
    assert_error(client.post(url, json={"text": "   "}), 400)
    assert_error(client.post(url, json={"text": "x" * 2001}), 400)
    big = b"{" + b" " * (12 * 1024 * 1024) + b"}"  # a turn may carry a picture: its cap is ~11 MiB
    assert_error(client.post(url, content=big, headers={"Content-Type": "application/json"}), 413)
    assert_error(client.post(url, json={"text": "hi", "colour": "red"}), 400)  # unknown fields are refused
    # nothing of that reached the session
    assert client.get(f"/v1/sessions/{sid}").json()["history"] == []
    assert_error(client.post("/v1/sessions/nope/turns", json={"text": "find a dog"}), 404)


def test_chinese_turns(client):
    sid = client.post("/v1/sessions").json()["session_id"]
    client.post(f"/v1/sessions/{sid}/turns", json={"text": "find videos of a dog"})
    r = client.post(f"/v1/sessions/{sid}/turns", json={"text": "第二个"}).json()
    assert r["intent"] == "selection"
    hist = client.get(f"/v1/sessions/{sid}").json()["history"]
    assert hist[-1]["user"] == "第二个"


def test_search(client):
    r = client.post("/v1/search", json={"query": "a cockatoo", "k": 3}).json()
    hits = r["hits"]
    assert len(hits) == 3 and [h["rank"] for h in hits] == [1, 2, 3]
    assert set(hits[0]) >= {"video_id", "start", "end", "score", "rank", "evidence"}
    top = hits[0]["video_id"]
    denied = client.post("/v1/search", json={"query": "a cockatoo", "k": 3, "deny": [top]}).json()["hits"]
    assert top not in [h["video_id"] for h in denied]
    allowed = client.post("/v1/search", json={"query": "a cockatoo", "k": 5, "allow": [hits[2]["video_id"]]}).json()["hits"]
    assert [h["video_id"] for h in allowed] == [hits[2]["video_id"]]
    assert_error(client.post("/v1/search", json={"query": "a dog", "k": 0}), 400)
    assert_error(client.post("/v1/search", json={"query": "a dog", "k": 101}), 400)
    assert_error(client.post("/v1/search", json={"query": "a dog", "k": "3"}), 400)
    assert_error(client.post("/v1/search", json={"query": ""}), 400)
    assert_error(client.post("/v1/search", json={"query": "a dog", "deny": [99999]}), 400)
    assert_error(client.post("/v1/search", json={"query": "a dog", "allow": "1"}), 400)


def test_videos_media_and_thumbnails(client, shared_data):
    ids = video_ids(client)
    vid = ids["nasa_13013.mp4"]
    meta = client.get(f"/v1/videos/{vid}").json()
    assert meta["video_id"] == vid and meta["name"] == "nasa_13013.mp4" and 10 < meta["duration"] < 20
    data = (shared_data / "videos" / "nasa_13013.mp4").read_bytes()
    whole = client.get(f"/v1/videos/{vid}/media")
    assert whole.status_code == 200 and whole.content == data and whole.headers["accept-ranges"] == "bytes"
    part = client.get(f"/v1/videos/{vid}/media", headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206 and part.content == data[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(data)}"
    tail = client.get(f"/v1/videos/{vid}/media", headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    open_end = client.get(f"/v1/videos/{vid}/media", headers={"Range": f"bytes={len(data) - 5}-"})
    assert open_end.content == data[-5:]
    bad = client.get(f"/v1/videos/{vid}/media", headers={"Range": f"bytes={len(data)}-"})
    assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{len(data)}"
    assert client.get(f"/v1/videos/{vid}/media", headers={"Range": "lines=1-2"}).status_code == 400  # Starlette: bytes only

    jpg = client.get(f"/v1/videos/{vid}/thumbnail", params={"t": 5.0, "size": 120})
    assert jpg.status_code == 200 and jpg.headers["content-type"] == "image/jpeg"
    assert jpg.content[:2] == b"\xff\xd8" and jpg.content[-2:] == b"\xff\xd9" and len(jpg.content) > 500
    assert_error(client.get(f"/v1/videos/{vid}/thumbnail", params={"t": 500}), 400)
    assert_error(client.get(f"/v1/videos/{vid}/thumbnail", params={"size": 5000}), 400)
    assert_error(client.get(f"/v1/videos/{vid}/thumbnail", params={"t": "soon"}), 400)
    for bad_id in ("99999", "-1", "abc", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd"):
        assert_error(client.get(f"/v1/videos/{bad_id}"), 404)
        assert_error(client.get(f"/v1/videos/{bad_id}/media"), 404)


def test_openai_chat_completions(client):
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "find videos of a cockatoo"}]
    r = client.post("/v1/chat/completions", json={"model": "ivcr", "messages": msgs, "user": "alice"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
    assert "video retrieval" in body["choices"][0]["message"]["content"]
    sid = r.headers["x-session-id"]
    # the same user continues the same session
    msgs += [body["choices"][0]["message"], {"role": "user", "content": "the second one"}]
    assert body["usage"]["prompt_tokens"] > 0 and body["usage"]["completion_tokens"] > 0
    r2 = client.post("/v1/chat/completions", json={"model": "ivcr", "messages": msgs, "user": "alice"})
    assert r2.headers["x-session-id"] == sid
    assert [t["intent"] for t in client.get(f"/v1/sessions/{sid}").json()["history"]] == ["video retrieval", "selection"]

    with client.stream("POST", "/v1/chat/completions", json={"model": "ivcr", "stream": True,
                                                             "messages": [{"role": "user", "content": "the first one"}]},
                       headers={"X-Session-Id": sid}) as s:
        assert s.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in s.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    last = client.get(f"/v1/sessions/{sid}").json()["history"][-1]
    assert last["intent"] == "selection" and streamed == last["reply"]

    assert_error(client.post("/v1/chat/completions", json={"model": "ivcr", "messages": []}), 400)
    assert_error(client.post("/v1/chat/completions", json={"model": "ivcr", "messages": [{"role": "system", "content": "x"}]}), 400)
    assert_error(client.post("/v1/chat/completions", json={"model": "ivcr", "messages": [{"role": "user", "content": ""}]}), 400)
    assert_error(client.post("/v1/chat/completions", json={"model": "ivcr", "messages": "hi"}), 400)


def test_openai_routes_refuse_and_answer_as_openai_does(client):
    """Issue 22, part 2: a model list; usage; system messages accepted; unknown arguments, a
    missing or unknown model, n > 1 and unknown roles refused; errors in OpenAI's shape."""
    listed = client.get("/v1/models").json()
    assert listed["object"] == "list" and [m["id"] for m in listed["data"]] == ["ivcr"]
    card = listed["data"][0]
    assert card["object"] == "model" and card["text_model"] == "text_me5_small" and card["videos"] >= 8
    assert client.get("/v1/models/ivcr").json() == card
    user = [{"role": "developer", "content": "answer briefly"}, {"role": "user", "content": "find videos of a parrot"}]

    def refused(status, body, param, code=None):
        r = client.post("/v1/chat/completions", json=body)
        assert r.status_code == status, r.text
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
        assert err["param"] == param and err["code"] == code and "Traceback" not in r.text
        return err["message"]

    assert "Unrecognized request argument supplied: best_of" in refused(400, {"model": "ivcr", "messages": user,
                                                                            "best_of": 2}, "best_of")
    refused(400, {"messages": user}, "model")
    assert "`gpt-4o` does not exist" in refused(404, {"model": "gpt-4o", "messages": user}, "model", "model_not_found")
    refused(400, {"model": "ivcr", "messages": user, "n": 2}, "n")
    refused(400, {"model": "ivcr", "messages": user, "stream": "yes"}, "stream")
    refused(400, {"model": "ivcr", "messages": [{"role": "robot", "content": "hi"}]}, None)
    r = client.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert client.get("/v1/models/gpt-4o").json()["error"]["code"] == "model_not_found"
    # OpenAI's sampling arguments are accepted (one answer a turn: they change nothing)
    ok = client.post("/v1/chat/completions", json={"model": "ivcr", "messages": user, "temperature": 0.2, "n": 1,
                                                   "max_tokens": 50, "top_p": 1})
    assert ok.status_code == 200 and ok.json()["usage"]["total_tokens"] == sum(
        ok.json()["usage"][k] for k in ("prompt_tokens", "completion_tokens"))
    # other routes keep the API's own error shape
    assert set(client.get("/v1/videos/99999").json()["error"]) == {"type", "message"}


def test_metrics(client):
    sid = client.post("/v1/sessions").json()["session_id"]
    client.post(f"/v1/sessions/{sid}/turns", json={"text": "find videos of a dog"})
    resp = client.get("/metrics")
    assert resp.headers["content-type"].startswith("text/plain")
    got = metric_samples(resp.text)  # Prometheus's own parser
    assert got[("ivcr_turn_seconds_bucket", (("intent", "video retrieval"), ("le", "+Inf")))] >= 1
    assert ("ivcr_queue_depth", ()) in got and got[("ivcr_index_refreshes_total", ())] == 0
    assert client.get("/healthz").json()["batching"] is True
    assert got[("ivcr_batch_size_count", ())] >= 1
    assert got[("ivcr_sessions_open", ())] >= 1
    assert not any(name.startswith("ivcr_llm") for name, _ in got)  # no LLM responder here


def test_token_and_binding(shared_index, tmp_path):
    root, _ = shared_index
    app = build_app(root, sessions_db=tmp_path / "s.sqlite", token="s3cret")
    with TestClient(app) as c:
        assert_error(c.post("/v1/sessions"), 401)
        assert_error(c.post("/v1/sessions", headers={"Authorization": "Bearer wrong"}), 401)
        assert_error(c.get("/metrics"), 401)
        assert c.post("/v1/sessions", headers={"Authorization": "Bearer s3cret"}).status_code == 201
        assert c.get("/healthz").status_code == 200 and c.get("/").status_code == 200
        vid = c.post("/v1/search", json={"query": "a dog"}, headers={"Authorization": "Bearer s3cret"}).json()["hits"][0]["video_id"]
        # <video src> cannot send headers: the page passes the token as a query parameter
        assert c.get(f"/v1/videos/{vid}/media?access_token=s3cret", headers={"Range": "bytes=0-9"}).status_code == 206
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    with pytest.raises(ValueError, match="needs --token"):
        serve(root, host="0.0.0.0", port=1)


def test_live_index_sees_new_videos(shared_data, tmp_path, monkeypatch):
    from ivcr_engine.index import Ingestor
    from ivcr_engine.server import live as live_module

    root = tmp_path / "idx"
    videos = sorted((shared_data / "videos").glob("*"))
    ing = Ingestor(root, speech=False)
    ing.run([p for p in videos if p.name != "cockatoo.mp4"], progress=False)
    app = build_app(root, sessions_db=tmp_path / "s.sqlite")
    with TestClient(app) as c:
        before = c.get("/healthz").json()["videos"]
        assert "cockatoo.mp4" not in [h["name"] for h in c.post("/v1/search", json={"query": "a bird", "k": 20}).json()["hits"]]
        # files modified within SETTLE_S: every check reads the counts; once still, an idle check
        # reads nothing from SQLite (the files' stamps are unchanged), and a commit is still seen
        counted = []
        original = live_module.commit_signature
        monkeypatch.setattr(live_module, "commit_signature", lambda r: counted.append(r) or original(r))
        monkeypatch.setattr(live_module, "SETTLE_S", 1e6)
        assert app.state.live.check() is False and app.state.live.check() is False  # nothing new yet
        assert len(counted) == 2
        monkeypatch.setattr(live_module, "SETTLE_S", 0.0)
        assert app.state.live.check() is False and len(counted) == 3  # the stamp settles here
        assert app.state.live.check() is False and app.state.live.check() is False and len(counted) == 3
        ing.run([shared_data / "videos" / "cockatoo.mp4"], progress=False)
        assert app.state.live.check() is True and len(counted) == 4
        assert c.get("/healthz").json()["videos"] == before + 1
        names = [h["name"] for h in c.post("/v1/search", json={"query": "a cockatoo", "k": 20}).json()["hits"]]
        assert "cockatoo.mp4" in names
        assert metric_samples(c.get("/metrics").text)[("ivcr_index_refreshes_total", ())] == 1
    ing.store.close()


def test_serve_over_a_sharded_index_sees_new_videos(shared_data, tmp_path):
    """`ivcr serve` over a manifest answers like over one folder, and maps what ingest commits to
    any shard."""
    from ivcr_engine.index import Ingestor

    root = tmp_path / "sharded"
    videos = sorted((shared_data / "videos").glob("*"))
    ing = Ingestor(root, speech=False, shards=2)
    ing.run([p for p in videos if p.name != "cockatoo.mp4"], progress=False)
    app = build_app(root, sessions_db=tmp_path / "s.sqlite")
    with TestClient(app) as c:
        before = c.get("/healthz").json()["videos"]
        assert before == len(videos) - 1
        sid = c.post("/v1/sessions").json()["session_id"]
        reply = c.post(f"/v1/sessions/{sid}/turns", json={"text": "find videos of people riding bicycles"}).json()
        assert reply["candidates"][0]["name"] == "bikes.mp4"
        media = c.get(f"/v1/videos/{reply['candidates'][0]['video_id']}/media", headers={"Range": "bytes=0-99"})
        assert media.status_code == 206 and len(media.content) == 100
        assert app.state.live.check() is False
        ing.run([shared_data / "videos" / "cockatoo.mp4"], progress=False)
        assert app.state.live.check() is True
        assert c.get("/healthz").json()["videos"] == before + 1
        names = [h["name"] for h in c.post("/v1/search", json={"query": "a cockatoo", "k": 20}).json()["hits"]]
        assert "cockatoo.mp4" in names
        # the session goes on over the refreshed index
        again = c.post(f"/v1/sessions/{sid}/turns", json={"text": "the second one"}).json()
        assert again["intent"] == "selection"
    ing.close()

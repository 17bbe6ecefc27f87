"""Search by picture through the faces (issue 22, part 4): a session turn with a picture (data URL
or base64, with or without words), the one-shot search, an OpenAI image_url part, and
`ivcr search --image`; bad pictures are 4xx with a clear message and change no session."""
from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ivcr_engine.decode import Timestamps, decode_frames
from ivcr_engine.server import build_app

pytest.importorskip("httpx")
Image = pytest.importorskip("PIL.Image")
from fastapi.testclient import TestClient  # noqa: E402

from tests.index.test_picture_search import png_header_only  # noqa: E402


@pytest.fixture(scope="module")
def client(shared_index, tmp_path_factory):
    app = build_app(shared_index[0], sessions_db=tmp_path_factory.mktemp("pictures") / "sessions.sqlite")
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def cockatoo(shared_data) -> bytes:
    rgb = decode_frames(shared_data / "videos" / "cockatoo.mp4", Timestamps([2.0]), size=300).frames[0]
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def data_url(data: bytes, kind: str = "image/jpeg") -> str:
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def new_session(client) -> str:
    return client.post("/v1/sessions").json()["session_id"]


def test_a_turn_with_a_picture_finds_its_video_and_moment(client, cockatoo):
    sid = new_session(client)
    r = client.post(f"/v1/sessions/{sid}/turns", json={"text": "find moments like this picture",
                                                       "image": data_url(cockatoo)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["video"]["name"] == "cockatoo.mp4" and body["candidates"][0]["name"] == "cockatoo.mp4"
    assert body["moment"]["start"] - 2 <= 2.0 <= body["moment"]["end"] + 2
    assert all("moment" in c for c in body["candidates"])  # the candidates' moments, for the picture too
    # words in a later turn keep the picture; "not this one" moves to the next for both
    r = client.post(f"/v1/sessions/{sid}/turns", json={"text": "this, but with a dog"}).json()
    assert r["intent"] == "refinement" and r["video"]["name"] == "cockatoo.mp4"
    r = client.post(f"/v1/sessions/{sid}/turns", json={"text": "not this one"}).json()
    assert r["video"]["name"] == "dog_walk.mp4"
    view = client.get(f"/v1/sessions/{sid}").json()
    assert view["picture"] is True and view["history"][0]["picture"] is True and len(view["history"]) == 3
    # a picture alone, as plain base64
    r = client.post(f"/v1/sessions/{new_session(client)}/turns", json={"image": base64.b64encode(cockatoo).decode()})
    assert r.status_code == 200 and r.json()["video"]["name"] == "cockatoo.mp4"


def test_bad_pictures_are_4xx_and_change_nothing(client, cockatoo):
    sid = new_session(client)
    url = f"/v1/sessions/{sid}/turns"
    cases = [
        ({"text": "like this", "image": data_url(cockatoo[: len(cockatoo) // 2])}, 400, "truncated"),
        ({"image": data_url(b"hello, not a picture", "image/png")}, 400, "not a JPEG, PNG or WebP"),
        ({"image": data_url(png_header_only(60_000, 60_000), "image/png")}, 400, "megapixels"),
        ({"image": data_url(png_header_only(8000, 7000), "image/png")}, 400, "8000x7000"),
        ({"image": "data:image/png;base64,@@@not base64@@@"}, 400, "base64"),
        ({"image": data_url(cockatoo, "image/gif")}, 400, "JPEG, PNG or WebP only"),
        ({"image": "https://example.com/cat.jpg"}, 400, "fetches no URL"),
        ({"text": "   "}, 400, "text, a picture, or both"),
        ({"image": 12}, 400, "image"),
    ]
    for body, status, says in cases:
        r = client.post(url, json=body)
        assert r.status_code == status and says in r.json()["error"]["message"], (says, r.text)
    big = {"image": "A" * (12 * 1024 * 1024)}
    assert client.post(url, json=big).status_code == 413
    assert client.get(f"/v1/sessions/{sid}").json()["history"] == []


def test_one_shot_search_and_openai_chat_take_pictures(client, cockatoo):
    r = client.post("/v1/search", json={"image": data_url(cockatoo), "k": 3})
    assert r.status_code == 200 and r.json()["hits"][0]["name"] == "cockatoo.mp4"
    r = client.post("/v1/search", json={"query": "bicycles", "image": data_url(cockatoo), "k": 3}).json()
    assert [h["name"] for h in r["hits"][:2]] == ["cockatoo.mp4", "bikes.mp4"]
    msg = {"role": "user", "content": [{"type": "text", "text": "find moments like this picture"},
                                       {"type": "image_url", "image_url": {"url": data_url(cockatoo)}}]}
    r = client.post("/v1/chat/completions", json={"model": "ivcr", "messages": [msg]})
    assert r.status_code == 200, r.text
    assert "picture" in r.json()["choices"][0]["message"]["content"]
    bad = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/x.png"}}]}
    r = client.post("/v1/chat/completions", json={"model": "ivcr", "messages": [bad]})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_cli_searches_by_picture(shared_index, cockatoo, tmp_path):
    ivcr = str(Path(sys.executable).with_name("ivcr"))
    pic = tmp_path / "frame.jpg"
    pic.write_bytes(cockatoo)
    run = subprocess.run([ivcr, "search", "--image", str(pic), "--index", str(shared_index[0]), "-k", "3", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    hits = json.loads(run.stdout)
    assert Path(hits[0]["path"]).name == "cockatoo.mp4" and len(hits) == 3
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    for args, says in [(["--image", str(bad)], "not a JPEG, PNG or WebP"), (["--image", str(tmp_path / "none.png")],
                                                                          "no picture at"), ([], "give a query")]:
        run = subprocess.run([ivcr, "search", *args, "--index", str(shared_index[0])], capture_output=True, text=True,
                             timeout=300)
        assert run.returncode != 0 and says in run.stderr and "Traceback" not in run.stderr, run.stderr

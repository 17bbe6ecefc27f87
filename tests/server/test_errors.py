"""Errors map once, by kind, at the HTTP boundary (server/errors.py): a client's mistake is a 4xx
with the engine's message, an engine fault a 5xx whose body names a request id and carries no
traceback, while the log keeps the traceback under that id."""
from __future__ import annotations

import logging

import pytest

from ivcr_engine.errors import EngineFault, IndexDamaged, InvalidArgument
from ivcr_engine.server import build_app

pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402


@pytest.fixture(scope="module")
def client(shared_index, tmp_path_factory):
    app = build_app(shared_index[0], sessions_db=tmp_path_factory.mktemp("errors") / "sessions.sqlite")
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def turn(client, text="find videos of a parrot on a perch"):
    sid = client.post("/v1/sessions").json()["session_id"]
    return client.post(f"/v1/sessions/{sid}/turns", json={"text": text})


def fail_ranking(client, monkeypatch, exc):
    index = client.app.state.manager.engine.index

    def rank_videos(*a, **kw):
        raise exc

    monkeypatch.setattr(index, "rank_videos", rank_videos)


def test_every_response_names_its_request_and_a_given_id_is_kept(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and len(r.headers["x-request-id"]) == 16
    r = client.get("/healthz", headers={"X-Request-Id": "trace-42"})
    assert r.headers["x-request-id"] == "trace-42"
    r = client.get("/healthz", headers={"X-Request-Id": "bad id\twith spaces"})  # not echoed as given
    assert r.headers["x-request-id"] != "bad id\twith spaces"
    r = client.post("/v1/sessions", content=b"x" * 70_000, headers={"X-Request-Id": "big-1"})  # refused by the guard
    assert r.status_code == 413 and r.headers["x-request-id"] == "big-1"


def test_a_clients_mistake_is_a_4xx_with_the_engines_words(client, monkeypatch):
    r = client.post("/v1/search", json={"query": "a parrot", "k": 0})
    assert r.status_code == 400 and "k" in r.json()["error"]["message"]
    fail_ranking(client, monkeypatch, InvalidArgument("no channel ['nope'] in this index"))
    r = turn(client)
    assert r.status_code == 400 and r.json()["error"] == {"type": "invalid_request",
                                                           "message": "no channel ['nope'] in this index"}


@pytest.mark.parametrize("exc, status, says", [
    (EngineFault("this index has no text channel to route turns by"), 500, "no text channel"),
    (ZeroDivisionError("a bug"), 500, "internal error"),
    (IndexDamaged("index /srv/x is damaged: visual.bin holds 3 bytes"), 503, "damaged"),
])
def test_an_engine_fault_is_a_5xx_with_a_request_id_and_no_traceback(client, monkeypatch, caplog, exc, status, says):
    fail_ranking(client, monkeypatch, exc)
    with caplog.at_level(logging.ERROR, logger="ivcr.serve"):
        r = turn(client)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    rid = r.headers["x-request-id"]
    assert err["request_id"] == rid and rid in err["message"] and says in err["message"]
    assert "Traceback" not in r.text and "/srv/x" not in r.text  # server paths stay in the log
    logged = [rec for rec in caplog.records if rid in rec.getMessage()]
    assert logged, "the fault is logged under its request id"
    if not isinstance(exc, IndexDamaged):
        assert logged[0].exc_info is not None  # with its traceback
    else:
        assert "/srv/x" in logged[0].getMessage()


def test_openai_routes_answer_faults_in_openais_shape(client, monkeypatch):
    fail_ranking(client, monkeypatch, EngineFault("this index has no text channel to route turns by"))
    r = client.post("/v1/chat/completions", json={"model": "ivcr", "messages": [
        {"role": "user", "content": "find videos of a parrot on a perch"}]})
    assert r.status_code == 500
    assert r.json()["error"]["type"] == "server_error" and r.headers["x-request-id"] in r.json()["error"]["message"]

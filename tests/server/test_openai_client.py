"""The official `openai` Python client against a real `ivcr serve` on loopback (issue 22, part 2):
the model list, a dialogue of several turns keyed by `user`, plain and streamed, usage in every
completion, and errors the client raises as its own typed exceptions."""
from __future__ import annotations

import pytest

openai = pytest.importorskip("openai", reason="the openai client is not installed (the dev extra)")


@pytest.fixture
def client(shared_index, serve_process, tmp_path):
    server = serve_process(shared_index[0], tmp_path / "sessions.sqlite")
    return openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed-on-loopback", max_retries=0, timeout=120)


def test_a_dialogue_through_the_official_client(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["ivcr"]
    assert client.models.retrieve("ivcr").owned_by == "ivcr_engine"

    history = [{"role": "system", "content": "You find videos and moments."}]

    def turn(text: str, user: str = "alice", **kw):
        history.append({"role": "user", "content": text})
        done = client.chat.completions.create(model="ivcr", messages=history, user=user, **kw)
        reply = done.choices[0].message
        assert reply.role == "assistant" and done.choices[0].finish_reason == "stop"
        assert done.usage.prompt_tokens > 0 and done.usage.completion_tokens > 0
        assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
        history.append({"role": "assistant", "content": reply.content})
        return reply.content

    found = turn("find videos of a cockatoo")
    assert "video retrieval" in found and "video 1" in found
    picked = turn("the second one")
    assert "video 2" in picked
    when = turn("when does the bird spread its wings?", temperature=0)
    assert "moment retrieval" in when and "s-" in when

    # streamed, with usage in a last chunk when asked, as OpenAI sends it
    history.append({"role": "user", "content": "show me the whole video"})
    chunks = list(client.chat.completions.create(model="ivcr", messages=history, user="alice", stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "whole video" in text.lower() and "video 2" in text  # the same session: still the second video
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"

    # another user is another session: nothing chosen yet there
    fresh = client.chat.completions.create(model="ivcr", user="bob",
                                           messages=[{"role": "user", "content": "the second one"}])
    assert "video 2" not in fresh.choices[0].message.content


def test_the_client_raises_its_own_errors(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="ivcr", messages=[{"role": "user", "content": "hi"}], n=3)
    assert e.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError, match="Unrecognized request argument supplied: colour"):
        client.chat.completions.create(model="ivcr", messages=[{"role": "user", "content": "hi"}],
                                       extra_body={"colour": "blue"})


def test_a_picture_through_the_official_client(client, shared_data):
    """The client's own content parts: text and an image_url data URL search by the picture."""
    import base64
    import io

    from PIL import Image

    from ivcr_engine.decode import Timestamps, decode_frames

    rgb = decode_frames(shared_data / "videos" / "dog_walk.mp4", Timestamps([1.0]), size=256).frames[0]
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    cut = "data:image/png;base64," + base64.b64encode(buf.getvalue()[: len(buf.getvalue()) // 2]).decode()
    done = client.chat.completions.create(model="ivcr", user="carol", messages=[{"role": "user", "content": [
        {"type": "text", "text": "find moments like this picture"}, {"type": "image_url", "image_url": {"url": url}}]}])
    text = done.choices[0].message.content
    assert "picture" in text and "video 1" in text and done.usage.prompt_tokens > 0
    with pytest.raises(openai.BadRequestError, match="truncated"):
        client.chat.completions.create(model="ivcr", user="carol", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": cut}}]}])

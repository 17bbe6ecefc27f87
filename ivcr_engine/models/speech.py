"""Speech recogniser: Whisper tiny.en through faster-whisper (CTranslate2, int8 on CPU), giving
timed transcript segments from 16 kHz mono float32 audio."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .registry import ModelCard, model_dir

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Segment:
    start: float  # seconds from the start of the audio passed in (plus `offset`)
    end: float
    text: str


class SpeechRecognizer:
    def __init__(self, name: str = "speech_whisper_tiny_en", root: Path | None = None, threads: int | None = None,
                 compute_type: str = "int8"):
        from faster_whisper import WhisperModel

        self.card = ModelCard.load((root or model_dir()) / name)
        self._model = WhisperModel(self.card.raw["weights_dir"], device="cpu", compute_type=compute_type,
                                   cpu_threads=threads or 0)

    def transcribe(self, audio: np.ndarray, offset: float = 0.0, beam_size: int = 1) -> list[Segment]:
        """Timed segments of speech in ``audio`` (16 kHz mono float32 in [-1, 1]); ``offset`` is
        added to every time (the audio's start in its video)."""
        a = np.asarray(audio)
        if a.dtype != np.float32 or a.ndim != 1:
            raise ValueError(f"expected 16 kHz mono float32 audio (1-D), got {a.dtype} {a.shape}")
        if a.size == 0:
            return []
        # VAD keeps Whisper from inventing words over silence and music; word timestamps, because
        # Whisper's segment times stretch over the silence before a sentence (seconds off).
        segments, _ = self._model.transcribe(a, language="en", beam_size=beam_size, vad_filter=True,
                                             condition_on_previous_text=False, word_timestamps=True)
        out = []
        for s in segments:
            if not s.words:
                if s.text.strip():
                    out.append(Segment(offset + float(s.start), offset + float(s.end), s.text.strip()))
                continue
            # Whisper often packs several sentences into one segment; split at sentence ends so each
            # line keeps its own time (moments are only as sharp as these lines).
            sentence = []
            for w in s.words:
                sentence.append(w)
                if w.word.strip().endswith((".", "?", "!")) or w is s.words[-1]:
                    text = "".join(x.word for x in sentence).strip()
                    if text:
                        out.append(Segment(offset + float(sentence[0].start), offset + float(sentence[-1].end), text))
                    sentence = []
        return out

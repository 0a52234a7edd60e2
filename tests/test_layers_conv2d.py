"""Conv2d (MLX) and its torch_ref twin: against ``F.conv2d``, weight norm against torch's own,
the fold, the declared layout through the weights core, config errors, and the CPU rewrite
(``conv2d_kernels``): every path's forward and gradients against torch, and the path selection."""

import contextlib

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mlx.utils import tree_flatten

from convert.parity import compare, copy_mlx_to_torch
from mlx_speech.errors import SpecError
from mlx_speech.layers import conv2d_kernels as ck2
from mlx_speech.layers.conv2d import Conv2d
from mlx_speech.layers.conv_kernels import conv_impl
from mlx_speech.weights.core import param_kinds
from mlx_speech.weights.layout import to_mlx
from torch_ref.layers.conv2d import Conv2d as TConv2d

CASES = [  # (in, out, kernel, stride, padding, groups)
    (2, 8, (3, 9), (1, 2), (1, 4), 1),
    (4, 6, (5, 1), (3, 1), (2, 0), 2),
    (3, 3, 3, 1, 1, 3),
]


@pytest.mark.parametrize("case", CASES, ids=["mrd", "mpd-grouped", "depthwise"])
@pytest.mark.parametrize("weight_norm", [False, True])
def test_matches_torch(case, weight_norm):
    c_in, c_out, k, s, p, g = case
    mx.random.seed(0)
    kw = dict(in_channels=c_in, out_channels=c_out, kernel_size=k, stride=s, padding=p, groups=g,
              weight_norm=weight_norm)
    m, t = Conv2d(**kw), TConv2d(**kw)
    copy_mlx_to_torch(m, t)
    assert param_kinds(m) == param_kinds(t)
    x = np.random.default_rng(1).standard_normal((2, c_in, 17, 23)).astype(np.float32)
    with torch.no_grad():
        y = t(torch.from_numpy(x))
        ref = F.conv2d(torch.from_numpy(x), t.effective_weight(), t.bias, stride=t.stride, padding=t.padding,
                       groups=g)
    out = m(mx.array(x.transpose(0, 2, 3, 1)))
    assert tuple(out.shape[1:3]) == m.output_shape(17, 23) == tuple(y.shape[2:])
    compare(y, ref, atol=1e-6)
    compare(out, y, atol=1e-5, transpose_torch=(0, 2, 3, 1))
    if weight_norm:  # torch's own weight norm over every dim but 0 gives the same weight
        v, gain = t.weight_v.detach(), t.weight_g.detach()
        want = torch._weight_norm(v, gain, 0)
        compare(t.effective_weight().detach(), want, atol=1e-7)
        m.remove_weight_norm()
        t.remove_weight_norm()
        assert "weight" in m and "weight_v" not in m and not m.weight_norm
        compare(m(mx.array(x.transpose(0, 2, 3, 1))), y, atol=1e-5, transpose_torch=(0, 2, 3, 1))
        with torch.no_grad():
            compare(t(torch.from_numpy(x)), y, atol=1e-6)


def test_errors():
    for kw in ({"kernel_size": (3, 0)}, {"stride": 0}, {"padding": -1}, {"kernel_size": (1, 2, 3)},
               {"groups": 3}, {"kernel_size": True}):
        args = {"in_channels": 4, "out_channels": 4, "kernel_size": 3, **kw}
        for cls in (Conv2d, TConv2d):
            with pytest.raises(SpecError):
                cls(**args)
    conv = Conv2d(in_channels=2, out_channels=2, kernel_size=(5, 1))
    with pytest.raises(ValueError, match="channels-last"):
        conv(mx.zeros((1, 2, 8, 8)))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        conv(mx.zeros((1, 4, 8, 2)))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        TConv2d(in_channels=2, out_channels=2, kernel_size=(5, 1))(torch.zeros(1, 2, 4, 8))


# --- the CPU rewrite ----------------------------------------------------------------------------

IMPLS = ("native", "fast", "fast-flat", "fast-im2col")
# The rewrite's size switches pinned: fast-flat takes the row offsets everywhere, fast-im2col
# im2col for every multi-tap conv (the input gradient still by the size rules); tiny test inputs
# reach only some paths through the rules alone.
PINNED = {"fast-flat": {"IM2COL_MAX_CHANNELS": 0, "IM2COL_MIN_WASTE": float("inf"),
                        "IM2COL_MAX_ROWS_PER_OUTPUT": 0.0},
          "fast-im2col": {"IM2COL_MIN_WASTE": -1.0}}


@contextlib.contextmanager
def forced(impl):
    pins = PINNED.get(impl, {})
    saved = {name: getattr(ck2, name) for name in pins}
    for name, value in pins.items():
        setattr(ck2, name, value)
    try:
        with conv_impl("native" if impl == "native" else "fast"):
            yield
    finally:
        for name, value in saved.items():
            setattr(ck2, name, value)


GRID = {  # id: (in, out, kernel, stride, padding, H, W)
    "patchgan-first": (1, 8, 4, 2, 1, 20, 18),
    "patchgan-mid": (8, 16, 4, 2, 1, 16, 13),
    "patchgan-s1": (16, 96, 4, 1, 1, 8, 9),
    "patchgan-score": (24, 1, 4, 1, 1, 5, 6),
    "mrd-first": (2, 6, (3, 9), 1, (1, 4), 7, 21),
    "mrd-strided": (6, 6, (3, 9), (1, 2), (1, 4), 9, 23),
    "mrd-k3": (6, 6, 3, 1, 1, 9, 11),
    "mpd": (3, 8, (5, 1), (3, 1), (2, 0), 29, 5),
    "mpd-post": (8, 1, (3, 1), 1, (1, 0), 10, 5),
    "mpd-deep": (32, 48, (5, 1), (3, 1), (2, 0), 12, 2),
    "k1": (5, 7, 1, 1, 0, 6, 5),
    "k1-s2": (3, 4, 1, 2, 0, 9, 8),
    "k2-s3-crop": (3, 4, (2, 3), (3, 1), 0, 10, 7),
    "k5-s2-odd": (3, 5, 5, (2, 3), (2, 1), 12, 11),
    "pad-over-kernel": (2, 3, 2, 1, 3, 4, 5),
}


def _loss(module, x):
    y = module(x)
    return (y * mx.cos(mx.arange(y.size).reshape(y.shape) * 0.37)).sum()


@pytest.mark.parametrize("case", list(GRID.values()), ids=list(GRID))
@pytest.mark.parametrize("weight_norm", [False, True], ids=["plain", "wn"])
def test_paths_match_torch_forward_and_gradients(case, weight_norm):
    c_in, c_out, k, s, p, h, w = case
    kw = dict(in_channels=c_in, out_channels=c_out, kernel_size=k, stride=s, padding=p,
              weight_norm=weight_norm)
    mx.random.seed(0)
    m = Conv2d(**kw)
    if weight_norm:
        m.update({"weight_g": m.weight_g * 1.7})  # g differs from ||v||
    t = copy_mlx_to_torch(m, TConv2d(**kw))
    x = mx.random.normal((2, h, w, c_in))
    xt = torch.from_numpy(np.array(x).transpose(0, 3, 1, 2)).requires_grad_(True)
    yt = F.conv2d(xt, t.effective_weight(), t.bias, stride=t.stride, padding=t.padding)
    ytl = yt.permute(0, 2, 3, 1)
    (ytl * torch.cos(torch.arange(ytl.numel()).reshape(ytl.shape) * 0.37)).sum().backward()
    torch_grads = {k: to_mlx(param_kinds(m)[k], g.grad.numpy(), k) for k, g in t.named_parameters()}
    torch_grads["input"] = xt.grad.numpy().transpose(0, 2, 3, 1)
    for impl in IMPLS:
        with forced(impl):
            y = m(x)
            _, g = nn.value_and_grad(m, _loss)(m, x)
            gx = mx.grad(lambda x: _loss(m, x))(x)
        compare(y, yt.detach(), atol=1e-5, name=f"{impl} forward", transpose_torch=(0, 2, 3, 1))
        grads = {**dict(tree_flatten(g)), "input": gx}
        assert sorted(grads) == sorted(torch_grads)
        for name, ref in torch_grads.items():
            assert np.abs(ref).max() > 0, name
            np.testing.assert_allclose(np.array(grads[name]), ref, rtol=1e-4,
                                       atol=1e-5 * np.abs(ref).max(), err_msg=f"{impl} {name}")


def test_grid_reaches_every_rewrite_variant(monkeypatch):
    seen = set()
    stride1 = ck2._stride1

    def spy(im2col, col2im):
        seen.add((im2col, col2im))
        return stride1(im2col, col2im)

    monkeypatch.setattr(ck2, "_stride1", spy)
    for c_in, c_out, k, s, p, h, w in GRID.values():
        m = Conv2d(in_channels=c_in, out_channels=c_out, kernel_size=k, stride=s, padding=p)
        for impl in IMPLS[1:]:
            with forced(impl):
                m(mx.zeros((2, h, w, c_in)))
    # row offsets, im2col with the row-offset input gradient, im2col with col2im
    assert seen == {(False, False), (True, False), (True, True)}


def test_native_selection_uses_mx_conv2d(monkeypatch):
    calls = []
    native = mx.conv2d

    def spy(*args, **kwargs):
        calls.append(kwargs.get("groups", 1))
        return native(*args, **kwargs)

    monkeypatch.setattr(mx, "conv2d", spy)
    dense = Conv2d(in_channels=2, out_channels=4, kernel_size=3, padding=1)
    grouped = Conv2d(in_channels=4, out_channels=4, kernel_size=3, groups=2)
    x = mx.random.normal((1, 6, 6, 2))
    with conv_impl("native"):
        mx.eval(dense(x))
    assert calls == [1]
    for impl in ("fast", "auto"):  # the tests run on the CPU: "auto" is the rewrite
        with conv_impl(impl):
            mx.eval(dense(x))
    assert calls == [1]
    with conv_impl("fast"):  # grouped convs stay native
        mx.eval(grouped(mx.random.normal((1, 6, 6, 4))))
    assert calls == [1, 2]


@pytest.mark.parametrize("dtype", [mx.bfloat16, mx.float16], ids=["bf16", "fp16"])
def test_half_precision_close_to_fp32(dtype):
    m = Conv2d(in_channels=4, out_channels=6, kernel_size=4, stride=2, padding=1)
    x = mx.random.normal((2, 12, 10, 4))
    ref = np.array(m(x))
    with conv_impl("fast"):
        y = ck2.conv2d(x.astype(dtype), m.weight.astype(dtype), stride=(2, 2), padding=(1, 1))
    assert y.dtype == dtype
    np.testing.assert_allclose(np.array(y.astype(mx.float32)) + np.array(m.bias), ref,
                               atol=0.05 * np.abs(ref).max())


def test_compiled_fast_path_matches_eager():
    m = Conv2d(in_channels=3, out_channels=5, kernel_size=4, stride=2, padding=1, weight_norm=True)
    x = mx.random.normal((2, 10, 12, 3))
    with conv_impl("fast"):
        step = nn.value_and_grad(m, _loss)
        eager = step(m, x)
        compiled = mx.compile(lambda x: step(m, x))(x)
    for a, b in zip(tree_flatten(eager), tree_flatten(compiled)):
        np.testing.assert_allclose(np.array(b[1]), np.array(a[1]), rtol=1e-5, atol=1e-5)

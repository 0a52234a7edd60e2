"""Streaming step() of the causal Conv1d / ConvTranspose1d equals their batch call (MLX and
torch_ref), for chunk schedules that ignore the stride, include empty chunks, and restart."""


import mlx.core as mx
import numpy as np
import pytest
import torch

from convert.parity import copy_mlx_to_torch
from mlx_speech.layers.conv import Conv1d, ConvTranspose1d, conv_impl
from torch_ref.layers import conv as tconv

LENGTH = 61

SCHEDULES = [
    pytest.param([1] * LENGTH, id="ones"),
    pytest.param([3] * 21, id="threes"),
    pytest.param([4] * 16, id="stride4"),
    pytest.param([7, 1, 0, 5, 0, 2, 13, 33], id="mixed-with-empty"),
    pytest.param([LENGTH], id="one-chunk"),
    pytest.param([2, 9, 1, 17, 6, 26], id="irregular"),
]


def split(x, schedule, axis):
    out, pos = [], 0
    for n in schedule:
        idx = [slice(None)] * x.ndim
        idx[axis] = slice(pos, pos + n)
        out.append(x[tuple(idx)])
        pos += n
    assert pos >= x.shape[axis]
    return out


def to_t(x: mx.array) -> torch.Tensor:
    return torch.from_numpy(np.array(x).transpose(0, 2, 1).copy())


def from_t(y: torch.Tensor) -> np.ndarray:
    return y.detach().numpy().transpose(0, 2, 1)


CONV_CONFIGS = [
    pytest.param(dict(kernel_size=7), id="k7"),
    pytest.param(dict(kernel_size=3, dilation=3, pad_mode="replicate"), id="k3-d3-replicate"),
    pytest.param(dict(kernel_size=8, stride=4), id="k8-s4"),
    pytest.param(dict(kernel_size=5, stride=2, pad_mode="reflect"), id="k5-s2-reflect"),
    pytest.param(dict(kernel_size=4, stride=4, groups=2), id="k4-s4-grouped"),
    pytest.param(dict(kernel_size=7, groups=4, pad_mode="reflect"), id="k7-depthwise-reflect"),
    pytest.param(dict(kernel_size=1, bias=False), id="k1"),
]


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("cfg", CONV_CONFIGS)
def test_conv1d_step_equals_batch(cfg, schedule):
    m = Conv1d(in_channels=4, out_channels=4, padding="causal", **cfg)
    t = copy_mlx_to_torch(m, tconv.Conv1d(in_channels=4, out_channels=4, padding="causal", **cfg))
    x = mx.random.normal((2, LENGTH, 4), key=mx.random.key(len(schedule)))
    stride = m.stride
    batch = np.array(m(x))
    # the batch call's last frame uses the extra right padding when LENGTH % stride != 0
    assert batch.shape[1] == -(-LENGTH // stride)
    expect = batch[:, :LENGTH // stride]
    outs = [m.step(c) for c in split(x, schedule, 1)]
    assert all(o.shape[0] == 2 and o.shape[2] == 4 for o in outs)
    np.testing.assert_allclose(np.array(mx.concatenate(outs, axis=1)), expect, atol=1e-5)
    with torch.no_grad():
        touts = [t.step(c) for c in split(to_t(x), schedule, 2)]
        np.testing.assert_allclose(from_t(torch.cat(touts, dim=-1)), expect, atol=1e-5)
    for a, b in zip(outs, touts):  # same frames emitted at the same step
        assert a.shape[1] == b.shape[-1]


def test_conv1d_step_emits_as_soon_as_a_window_is_complete():
    m = Conv1d(in_channels=2, out_channels=3, kernel_size=8, stride=4, padding="causal")
    sizes = [m.step(mx.zeros((1, n, 2))).shape[1] for n in (3, 1, 4, 2, 6)]
    assert sizes == [0, 1, 1, 0, 2]  # frames complete at steps 4, 8, 16 (and 12)


def test_conv1d_reflect_waits_for_enough_context():
    # reflect needs P + 1 = 7 steps before the left padding can be built
    m = Conv1d(in_channels=2, out_channels=3, kernel_size=7, padding="causal", pad_mode="reflect")
    x = mx.random.normal((1, 20, 2))
    got = [m.step(c) for c in split(x, [2, 3, 1, 1, 13], 1)]
    assert [g.shape[1] for g in got] == [0, 0, 0, 7, 13]
    np.testing.assert_allclose(np.array(mx.concatenate(got, axis=1)), np.array(m(x)), atol=1e-5)


@pytest.mark.parametrize("impl", ["native", "fast"])
def test_reset_state_starts_a_new_stream(impl):
    with conv_impl(impl):
        conv = Conv1d(in_channels=3, out_channels=5, kernel_size=6, stride=2, padding="causal",
                      pad_mode="replicate")
        convtr = ConvTranspose1d(in_channels=5, out_channels=3, kernel_size=6, stride=2)
        x = mx.random.normal((2, 30, 3))
        first = [convtr.step(conv.step(c)) for c in split(x, [5, 11, 14], 1)]
        conv.reset_state()
        convtr.reset_state()
        again = [convtr.step(conv.step(c)) for c in split(x, [5, 11, 14], 1)]
        for a, b in zip(first, again):
            assert mx.array_equal(a, b)
        np.testing.assert_allclose(np.array(mx.concatenate(again, axis=1)),
                                   np.array(convtr(conv(x))), atol=1e-5)


TR_CONFIGS = [
    pytest.param(dict(kernel_size=16, stride=8), id="k16-s8"),
    pytest.param(dict(kernel_size=4, stride=2, groups=4, bias=False), id="k4-s2-depthwise"),
    pytest.param(dict(kernel_size=7, stride=3, groups=2), id="k7-s3-grouped"),
    pytest.param(dict(kernel_size=3, stride=3, weight_norm=True), id="k3-s3-wn"),
    pytest.param(dict(kernel_size=5, stride=1), id="k5-s1"),
]

TR_SCHEDULES = [
    pytest.param([1] * 13, id="ones"),
    pytest.param([3, 0, 4, 6], id="mixed-with-empty"),
    pytest.param([13], id="one-chunk"),
    pytest.param([2, 5, 1, 5], id="irregular"),
]


@pytest.mark.parametrize("schedule", TR_SCHEDULES)
@pytest.mark.parametrize("cfg", TR_CONFIGS)
def test_conv_transpose1d_step_equals_batch(cfg, schedule):
    m = ConvTranspose1d(in_channels=4, out_channels=4, padding="causal", **cfg)
    t = copy_mlx_to_torch(m, tconv.ConvTranspose1d(in_channels=4, out_channels=4,
                                                   padding="causal", **cfg))
    x = mx.random.normal((2, 13, 4), key=mx.random.key(len(schedule)))
    batch = np.array(m(x))
    assert batch.shape[1] == 13 * m.stride
    outs = [m.step(c) for c in split(x, schedule, 1)]
    assert [o.shape[1] for o in outs] == [n * m.stride for n in schedule]
    np.testing.assert_allclose(np.array(mx.concatenate(outs, axis=1)), batch, atol=1e-5)
    with torch.no_grad():
        touts = [t.step(c) for c in split(to_t(x), schedule, 2)]
        np.testing.assert_allclose(from_t(torch.cat(touts, dim=-1)), batch, atol=1e-5)


@pytest.mark.parametrize("chunk", [pytest.param(n, id=f"chunk{n}") for n in (4, 8, 20, 37)])
def test_encoder_decoder_chain_streams(chunk):
    # a Mimi-like pair: causal downsample by 4 then causal upsample by 4
    down = Conv1d(in_channels=2, out_channels=6, kernel_size=8, stride=4, padding="causal")
    up = ConvTranspose1d(in_channels=6, out_channels=2, kernel_size=8, stride=4)
    x = mx.random.normal((1, 96, 2))
    batch = np.array(up(down(x)))
    got = mx.concatenate([up.step(down.step(c)) for c in split(x, [chunk] * -(-96 // chunk), 1)],
                         axis=1)
    np.testing.assert_allclose(np.array(got), batch, atol=1e-5)


def test_step_rejects_non_causal():
    with pytest.raises(ValueError, match="needs padding='causal'"):
        ConvTranspose1d(in_channels=2, out_channels=2, kernel_size=4, stride=2,
                        padding="same").step(mx.zeros((1, 3, 2)))
    with pytest.raises(ValueError, match="needs padding='causal'"):
        tconv.Conv1d(in_channels=2, out_channels=2, kernel_size=3,
                     padding="noncausal").step(torch.zeros(1, 2, 3))


@pytest.mark.upstream
@pytest.mark.parametrize("cfg", [
    pytest.param(dict(kernel_size=7), id="k7"),
    pytest.param(dict(kernel_size=3, dilation=3, pad_mode="replicate"), id="k3-d3-replicate"),
    pytest.param(dict(kernel_size=8, stride=4), id="k8-s4"),
    pytest.param(dict(kernel_size=4, stride=2, groups=2), id="k4-s2-grouped"),
])
def test_conv1d_matches_moshi(cfg):
    moshi_conv = pytest.importorskip("moshi.modules.conv", reason="moshi is not installed")
    K, S = cfg["kernel_size"], cfg.get("stride", 1)
    ref = moshi_conv.StreamingConv1d(4, 6, K, stride=S, dilation=cfg.get("dilation", 1),
                                     groups=cfg.get("groups", 1), causal=True,
                                     pad_mode=cfg.get("pad_mode", "constant"))
    m = Conv1d(in_channels=4, out_channels=6, padding="causal", **cfg)
    t = copy_mlx_to_torch(m, tconv.Conv1d(in_channels=4, out_channels=6, padding="causal", **cfg))
    ref.conv.conv.load_state_dict(t.state_dict())
    x = mx.random.normal((2, 16 * S, 4))  # a multiple of the stride: every moshi version agrees
    # moshi's replicate mode asserts every chunk is at least K_eff - S long
    sizes = [8 * S, 8 * S] if "pad_mode" in cfg else [4 * S, S, 3 * S, 8 * S]
    chunks = split(to_t(x), sizes, 2)
    with torch.no_grad():
        y_ref = from_t(ref(to_t(x)))
        with ref.streaming(2):
            y_stream = from_t(torch.cat([ref(c) for c in chunks], dim=-1))
    np.testing.assert_allclose(np.array(m(x)), y_ref, atol=1e-5)
    np.testing.assert_allclose(np.array(mx.concatenate(
        [m.step(mx.array(from_t(c))) for c in chunks], axis=1)), y_stream, atol=1e-5)


@pytest.mark.upstream
@pytest.mark.parametrize("cfg", [
    pytest.param(dict(kernel_size=16, stride=8), id="k16-s8"),
    pytest.param(dict(kernel_size=4, stride=2, groups=4, bias=False), id="k4-s2-depthwise"),
])
def test_conv_transpose1d_matches_moshi(cfg):
    moshi_conv = pytest.importorskip("moshi.modules.conv", reason="moshi is not installed")
    ref = moshi_conv.StreamingConvTranspose1d(4, 4, cfg["kernel_size"], stride=cfg["stride"],
                                              groups=cfg.get("groups", 1),
                                              bias=cfg.get("bias", True), causal=True)
    m = ConvTranspose1d(in_channels=4, out_channels=4, **cfg)
    t = copy_mlx_to_torch(m, tconv.ConvTranspose1d(in_channels=4, out_channels=4, **cfg))
    ref.convtr.convtr.load_state_dict(t.state_dict())
    x = mx.random.normal((2, 13, 4))
    chunks = split(to_t(x), [3, 1, 9], 2)
    with torch.no_grad():
        z_ref = from_t(ref(to_t(x)))
        with ref.streaming(2):
            z_stream = from_t(torch.cat([ref(c) for c in chunks], dim=-1))
    np.testing.assert_allclose(np.array(m(x)), z_ref, atol=1e-5)
    np.testing.assert_allclose(z_stream, z_ref, atol=1e-5)
    np.testing.assert_allclose(np.array(mx.concatenate(
        [m.step(mx.array(from_t(c))) for c in chunks], axis=1)), z_stream, atol=1e-5)


@pytest.mark.upstream
def test_padding_matches_moshi_helpers():
    moshi_conv = pytest.importorskip("moshi.modules.conv", reason="moshi is not installed")
    from mlx_speech.layers.conv import pad1d  # noqa: PLC0415

    for K, S, d in [(7, 1, 1), (8, 4, 1), (3, 2, 3), (16, 8, 1), (5, 3, 2)]:
        m = Conv1d(in_channels=1, out_channels=1, kernel_size=K, stride=S, dilation=d,
                   padding="causal")
        k_eff = (K - 1) * d + 1
        for length in range(1, 50):
            extra = moshi_conv.get_extra_padding_for_conv1d(torch.zeros(1, 1, length), k_eff, S,
                                                            k_eff - S)
            assert m.padding_for(length) == (k_eff - S, extra), (K, S, d, length)
    for length, left, right in [(3, 6, 0), (2, 2, 5), (9, 4, 3), (1, 3, 3)]:
        x = torch.randn(2, 3, length)
        for mode in ("reflect", "replicate", "constant"):
            ref = moshi_conv.pad1d(x, (left, right), mode=mode)
            assert torch.equal(tconv.pad1d(x, left, right, mode), ref)
            got = pad1d(mx.array(from_t(x)), left, right, mode)
            np.testing.assert_array_equal(np.array(got), from_t(ref))

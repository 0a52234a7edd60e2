"""Conv1d / ConvTranspose1d: every path (native, fast) vs an independent torch reference and vs
torch_ref, dtypes, weight-norm fold, gradients, conversion and config errors."""

import contextlib
import math

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mlx.utils import tree_flatten, tree_map

from convert.parity import copy_mlx_to_torch
from mlx_speech.weights.mlx import load_torch_state_into_mlx, mlx_to_torch_state
from mlx_speech.weights.core import param_kinds
from mlx_speech.weights.layout import to_mlx
from mlx_speech.layers import conv_kernels as ck
from mlx_speech.layers.conv import Conv1d, ConvTranspose1d, conv_impl, set_conv_impl
from mlx_speech.precision import PARITY_DTYPE, tolerance
from torch_ref.layers import conv as tconv

IMPLS = ("native", "fast", "fast-large", "fast-small")
# Parity tolerances from the one policy (mlx_speech/precision.py): the torch side runs on the
# CPU here, MLX on the suite's device (TF32 off on a GPU, set by conftest).
TORCH_TOL = tolerance(PARITY_DTYPE, "cpu")


def mlx_tol() -> tuple[float, float]:
    return tolerance(PARITY_DTYPE, mx.default_device())

C_IN = 4


def impls_for(cls) -> tuple[str, ...]:
    """The paths to check for ``cls``: all of them, less MLX's native transposed conv where it
    is known wrong (the GPU, issue 19; ``scripts/repro_conv_transpose_gpu.py`` tracks the op)."""
    if cls is ConvTranspose1d and not ck.native_conv_transpose_trusted():
        return tuple(i for i in IMPLS if i != "native")
    return IMPLS


@contextlib.contextmanager
def forced(impl):
    """The fast path with its size switches pinned: ``fast-large`` takes the large-input
    kernels (accumulated taps, folded strides, weight reordering), ``fast-small`` the
    small-input ones (im2col, reordered product); tiny test inputs reach only some of them."""
    saved = ck.IM2COL_MAX_ELEMENTS, ck.SMALL_ROWS_PER_INPUT_CHANNEL
    if impl == "fast-large":
        ck.IM2COL_MAX_ELEMENTS, ck.SMALL_ROWS_PER_INPUT_CHANNEL = 0, 0.0
    elif impl == "fast-small":
        ck.IM2COL_MAX_ELEMENTS, ck.SMALL_ROWS_PER_INPUT_CHANNEL = 1 << 62, 1e9
    try:
        with conv_impl("fast" if impl.startswith("fast") else impl):
            yield
    finally:
        ck.IM2COL_MAX_ELEMENTS, ck.SMALL_ROWS_PER_INPUT_CHANNEL = saved


def to_t(x: mx.array) -> torch.Tensor:
    return torch.from_numpy(np.array(x.astype(mx.float32)).transpose(0, 2, 1).copy())


def from_t(y: torch.Tensor) -> np.ndarray:
    return y.detach().numpy().transpose(0, 2, 1)


def moshi_pads(length: int, k_eff: int, stride: int, causal: bool) -> tuple[int, int]:
    # moshi's StreamingConv1d padding, written from its definition (float frame count)
    total = k_eff - stride
    n_frames = (length - k_eff + total) / stride + 1
    extra = (math.ceil(n_frames) - 1) * stride + (k_eff - total) - length
    if causal:
        return total, extra
    return total - total // 2, total // 2 + extra


def ref_pad(x: torch.Tensor, left: int, right: int, mode: str) -> torch.Tensor:
    if mode == "reflect" and x.shape[-1] <= max(left, right):
        extra = max(left, right) - x.shape[-1] + 1
        return F.pad(F.pad(x, (0, extra)), (left, right), mode="reflect")[..., :-extra]
    return F.pad(x, (left, right), mode=mode)


def ref_conv1d(x, w, b, *, K, S, d, G, padding, pad_mode):
    """Reference on torch's own op: moshi pads for causal/noncausal, torch padding otherwise."""
    k_eff = (K - 1) * d + 1
    if padding in ("causal", "noncausal"):
        left, right = moshi_pads(x.shape[-1], k_eff, S, padding == "causal")
        x = ref_pad(x, left, right, pad_mode)
        return F.conv1d(x, w, b, stride=S, dilation=d, groups=G)
    p = {"same": (k_eff - 1) // 2, "valid": 0}.get(padding, padding)
    ref = torch.nn.Conv1d(x.shape[1], w.shape[0], K, stride=S, dilation=d, groups=G, padding=p,
                          bias=b is not None, padding_mode="zeros" if pad_mode == "constant"
                          else pad_mode)
    with torch.no_grad():
        ref.weight.copy_(w)
        if b is not None:
            ref.bias.copy_(b)
    return ref(x)


def ref_conv_transpose1d(x, w, b, *, K, S, G, padding):
    if isinstance(padding, int):
        return F.conv_transpose1d(x, w, b, stride=S, groups=G, padding=padding)
    y = F.conv_transpose1d(x, w, b, stride=S, groups=G)
    right = K - S if padding == "causal" else (K - S) // 2
    left = K - S - right
    return y[..., left:y.shape[-1] - right]


def conv_grid():
    cases = []
    for K in (1, 3, 7, 16):
        for S in (1, 2, 4):
            for d in (1, 3, 9):
                if K == 1 and d > 1:
                    continue
                for G in (1, 2, "C"):
                    for padding in ("causal", "noncausal", "same", "valid", 2):
                        k_eff = (K - 1) * d + 1
                        if padding in ("causal", "noncausal") and k_eff < S:
                            continue
                        i = len(cases)
                        pad_mode = ("constant", "reflect", "replicate")[i % 3]
                        wn = i % 5 == 0
                        cases.append(pytest.param(K, S, d, G, padding, pad_mode, wn,
                                                  id=f"k{K}-s{S}-d{d}-g{G}-{padding}-{pad_mode}"
                                                     f"{'-wn' if wn else ''}"))
    return cases


@pytest.mark.parametrize("K,S,d,G,padding,pad_mode,wn", conv_grid())
def test_conv1d_matches_reference(K, S, d, G, padding, pad_mode, wn):
    groups = C_IN if G == "C" else G
    c_out = 8 if G == "C" and K % 2 else (4 if G == "C" else 6)  # depthwise with multiplier 2
    k_eff = (K - 1) * d + 1
    length = max(37, k_eff + 12) | 1  # odd
    m = Conv1d(in_channels=C_IN, out_channels=c_out, kernel_size=K, stride=S, dilation=d,
               groups=groups, padding=padding, pad_mode=pad_mode, weight_norm=wn, bias=K != 3)
    t = copy_mlx_to_torch(m, tconv.Conv1d(in_channels=C_IN, out_channels=c_out, kernel_size=K,
                                          stride=S, dilation=d, groups=groups, padding=padding,
                                          pad_mode=pad_mode, weight_norm=wn, bias=K != 3))
    x = mx.random.normal((2, length, C_IN), key=mx.random.key(K * 100 + S * 10 + d))
    with torch.no_grad():
        ref = from_t(ref_conv1d(to_t(x), t.effective_weight(), t.bias, K=K, S=S, d=d, G=groups,
                                padding=padding, pad_mode=pad_mode))
        np.testing.assert_allclose(from_t(t(to_t(x))), ref, *TORCH_TOL)
    assert ref.shape[1] == m.output_length(length)
    for impl in IMPLS:
        with forced(impl):
            np.testing.assert_allclose(np.array(m(x)), ref, *mlx_tol(), err_msg=impl)


def transpose_grid():
    cases = []
    for K in (1, 3, 4, 7, 16):
        for S in (1, 2, 4, 8):
            for G in (1, 2, "C"):
                for padding in ("causal", "same", 0, 1):
                    if isinstance(padding, str) and K < S:
                        continue
                    if isinstance(padding, int) and (K + 2 * S) <= 2 * padding:
                        continue
                    wn = len(cases) % 4 == 0
                    cases.append(pytest.param(K, S, G, padding, wn,
                                              id=f"k{K}-s{S}-g{G}-{padding}{'-wn' if wn else ''}"))
    return cases


@pytest.mark.parametrize("K,S,G,padding,wn", transpose_grid())
def test_conv_transpose1d_matches_reference(K, S, G, padding, wn):
    groups = C_IN if G == "C" else G
    c_out = 8 if G == "C" and K % 2 else (4 if G == "C" else 6)
    m = ConvTranspose1d(in_channels=C_IN, out_channels=c_out, kernel_size=K, stride=S,
                        groups=groups, padding=padding, weight_norm=wn, bias=K != 3)
    t = copy_mlx_to_torch(m, tconv.ConvTranspose1d(in_channels=C_IN, out_channels=c_out,
                                                   kernel_size=K, stride=S, groups=groups,
                                                   padding=padding, weight_norm=wn, bias=K != 3))
    x = mx.random.normal((2, 11, C_IN), key=mx.random.key(K * 10 + S))
    with torch.no_grad():
        ref = from_t(ref_conv_transpose1d(to_t(x), t.effective_weight(), t.bias, K=K, S=S,
                                          G=groups, padding=padding))
        np.testing.assert_allclose(from_t(t(to_t(x))), ref, *TORCH_TOL)
    assert ref.shape[1] == m.output_length(11)
    for impl in impls_for(ConvTranspose1d):
        with forced(impl):
            np.testing.assert_allclose(np.array(m(x)), ref, *mlx_tol(), err_msg=impl)


def test_native_conv_transpose_trust_follows_the_fixed_version(monkeypatch):
    """The GPU op is trusted only from ``NATIVE_CONV_TRANSPOSE_GPU_FIXED_IN`` on (None: never);
    the CPU op always; ``"auto"`` on the GPU takes the rewrite while untrusted."""
    assert ck.native_conv_transpose_trusted(mx.cpu)
    monkeypatch.setattr(ck, "NATIVE_CONV_TRANSPOSE_GPU_FIXED_IN", None)
    assert not ck.native_conv_transpose_trusted(mx.gpu, "0.32.4")
    assert not ck.native_conv_transpose_trusted(mx.gpu, "99.0.0")
    monkeypatch.setattr(ck, "NATIVE_CONV_TRANSPOSE_GPU_FIXED_IN", (0, 40, 0))
    assert not ck.native_conv_transpose_trusted(mx.gpu, "0.39.9")
    assert ck.native_conv_transpose_trusted(mx.gpu, "0.40.0")
    assert ck.native_conv_transpose_trusted(mx.gpu, "0.41.0.dev20270101+abc")
    assert ck.native_conv_transpose_trusted(mx.gpu, "1.0")
    monkeypatch.setattr(ck, "NATIVE_CONV_TRANSPOSE_GPU_FIXED_IN", None)
    monkeypatch.setattr(mx, "default_device", lambda: mx.Device(mx.gpu))  # decisions only
    assert ck.uses_fast_transpose_path() and not ck.uses_fast_path()
    with conv_impl("native"):
        assert not ck.uses_fast_transpose_path()
    monkeypatch.setattr(ck, "NATIVE_CONV_TRANSPOSE_GPU_FIXED_IN", (0, 0, 1))
    assert not ck.uses_fast_transpose_path()


# The configurations issue 19 names as wrong on the GPU, plus Mimi's decoder upsamplings.
GPU_FAILED = [(16, 2, 1), (4, 2, "C"), (3, 8, 2), (1, 4, 1), (16, 8, 1), (7, 4, "C"),
              (16, 4, 2), (4, 1, 1), (8, 4, 1), (10, 5, 1), (12, 6, 1), (16, 8, "C")]


@pytest.mark.parametrize("rows", ["small", "large"])
@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16])
@pytest.mark.parametrize("K,S,G", GPU_FAILED, ids=[f"k{k}-s{s}-g{g}" for k, s, g in GPU_FAILED])
def test_routed_gpu_path_matches_reference_on_cpu(monkeypatch, K, S, G, dtype, rows):
    """The path ``"auto"`` takes on the GPU (the rewrite with its GPU-side branches: no fp32
    detour for half types, plain matmul for few rows), run on the CPU by making the layers see
    the GPU as the default device while the arrays stay on the CPU; batch and streaming."""
    groups = C_IN if G == "C" else G
    c_out = 8 if G == "C" else 6
    padding = "causal" if K >= S else 0
    m = ConvTranspose1d(in_channels=C_IN, out_channels=c_out, kernel_size=K, stride=S,
                        groups=groups, padding=padding)
    t = copy_mlx_to_torch(m, tconv.ConvTranspose1d(in_channels=C_IN, out_channels=c_out,
                                                   kernel_size=K, stride=S, groups=groups,
                                                   padding=padding))
    x = mx.random.normal((2, 11, C_IN), key=mx.random.key(K * 10 + S))
    with torch.no_grad():
        ref = from_t(ref_conv_transpose1d(to_t(x), t.effective_weight(), t.bias, K=K, S=S,
                                          G=groups, padding=padding))
    m.update(tree_map(lambda a: a.astype(dtype), m.parameters()))
    xd = x.astype(dtype)
    pinned = (0, 0.0) if rows == "large" else (1 << 62, 1e9)
    monkeypatch.setattr(ck, "IM2COL_MAX_ELEMENTS", pinned[0])
    monkeypatch.setattr(ck, "SMALL_ROWS_PER_INPUT_CHANNEL", pinned[1])
    calls = []
    monkeypatch.setattr(mx, "conv_transpose1d", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(mx, "default_device", lambda: mx.Device(mx.gpu))
    assert ck.uses_fast_transpose_path() and not ck._on_cpu()
    upcasts = []
    real = ck.conv_transpose1d
    monkeypatch.setattr(ck, "conv_transpose1d",
                        lambda x, w, **k: upcasts.append(x.dtype) or real(x, w, **k))
    y = np.array(m(xd).astype(mx.float32))
    pieces = []
    if padding == "causal":
        pieces = [m.step(xd[:, a:b]) for a, b in ((0, 1), (1, 4), (4, 4), (4, 11))]
        m.reset_state()
    monkeypatch.undo()
    assert not calls  # never the native op
    assert set(upcasts) == {dtype}  # half types stay half on the GPU route
    atol = 1e-5 if dtype == mx.float32 else 0.1
    np.testing.assert_allclose(y, ref, atol=atol, rtol=0 if dtype == mx.float32 else 0.05)
    if pieces:
        streamed = np.concatenate([np.array(p.astype(mx.float32)) for p in pieces], axis=1)
        np.testing.assert_allclose(streamed, ref, atol=atol, rtol=0 if dtype == mx.float32
                                   else 0.05)


def test_reflect_on_short_input_follows_moshi():
    # 3 steps, causal padding 6: moshi appends zeros before reflecting, then drops them
    m = Conv1d(in_channels=C_IN, out_channels=3, kernel_size=7, padding="causal",
               pad_mode="reflect")
    t = copy_mlx_to_torch(m, tconv.Conv1d(in_channels=C_IN, out_channels=3, kernel_size=7,
                                          padding="causal", pad_mode="reflect"))
    x = mx.random.normal((2, 3, C_IN))
    with torch.no_grad():
        ref = from_t(ref_conv1d(to_t(x), t.weight, t.bias, K=7, S=1, d=1, G=1, padding="causal",
                                pad_mode="reflect"))
        np.testing.assert_allclose(from_t(t(to_t(x))), ref, atol=1e-5)
    for impl in IMPLS:
        with forced(impl):
            np.testing.assert_allclose(np.array(m(x)), ref, atol=1e-5)


def _loss(module, x):
    y = module(x)
    return (y * mx.cos(mx.arange(y.size).reshape(y.shape) * 0.37)).sum()


@pytest.mark.parametrize("cls,kw", [
    pytest.param(Conv1d, dict(kernel_size=7, padding="causal"), id="conv-k7"),
    pytest.param(Conv1d, dict(kernel_size=3, dilation=3), id="conv-dilated"),
    pytest.param(Conv1d, dict(kernel_size=8, stride=4, padding="causal"), id="conv-strided"),
    pytest.param(Conv1d, dict(kernel_size=7, groups=8), id="conv-depthwise"),
    pytest.param(Conv1d, dict(kernel_size=5, groups=2, stride=2), id="conv-grouped"),
    pytest.param(ConvTranspose1d, dict(kernel_size=16, stride=8), id="convtr-k16s8"),
    pytest.param(ConvTranspose1d, dict(kernel_size=4, stride=2, groups=8), id="convtr-depthwise"),
])
@pytest.mark.parametrize("dtype", [mx.bfloat16, mx.float16], ids=["bf16", "fp16"])
def test_half_precision_close_to_fp32(cls, kw, dtype):
    m = cls(in_channels=8, out_channels=8, **kw)
    x = mx.random.normal((2, 41, 8))
    ref = np.array(m(x))
    half = cls(in_channels=8, out_channels=8, **kw)
    half.update(m.parameters())
    half.set_dtype(dtype)
    tol = 0.05 if dtype == mx.bfloat16 else 0.01

    def loss(module, x):
        # positive weights: a bias gradient summed in half precision then has no cancellation
        y = module(x).astype(mx.float32)
        return (y * (1.5 + mx.cos(mx.arange(y.size).reshape(y.shape) * 0.37))).sum()

    _, g32 = nn.value_and_grad(m, loss)(m, x)
    g32 = dict(tree_flatten(g32))
    for impl in impls_for(cls):
        with forced(impl):
            y = half(x.astype(dtype))
            _, g = nn.value_and_grad(half, loss)(half, x.astype(dtype))
        assert y.dtype == dtype
        np.testing.assert_allclose(np.array(y.astype(mx.float32)), ref,
                                   atol=tol * np.abs(ref).max())
        for name, gh in tree_flatten(g):
            assert gh.dtype == dtype, name
            ref_g = np.array(g32[name])
            err = np.linalg.norm(np.array(gh.astype(mx.float32)) - ref_g) / np.linalg.norm(ref_g)
            assert err < tol, f"{impl} {name}: relative error {err:.3g}"


@pytest.mark.parametrize("cls,kw", [
    pytest.param(Conv1d, dict(kernel_size=5, stride=2, dilation=2, padding="causal"), id="conv"),
    pytest.param(Conv1d, dict(kernel_size=3, groups=2), id="conv-grouped"),
    pytest.param(ConvTranspose1d, dict(kernel_size=6, stride=3, padding="same"), id="convtr"),
    pytest.param(ConvTranspose1d, dict(kernel_size=4, stride=2, groups=2), id="convtr-grouped"),
])
def test_weight_norm_fold_is_exact_and_matches_torch(cls, kw):
    m = cls(in_channels=4, out_channels=6, weight_norm=True, **kw)
    m.update({"weight_g": m.weight_g * 1.7})  # make g differ from ||v||
    tcls = getattr(tconv, cls.__name__)
    t = copy_mlx_to_torch(m, tcls(in_channels=4, out_channels=6, weight_norm=True, **kw))
    # torch's own weight norm (dim=0) on the same g / v
    native = (torch.nn.Conv1d if cls is Conv1d else torch.nn.ConvTranspose1d)(
        4, 6, kw["kernel_size"], stride=kw.get("stride", 1), groups=kw.get("groups", 1))
    native = torch.nn.utils.parametrizations.weight_norm(native, dim=0)
    with torch.no_grad():
        native.parametrizations.weight.original0.copy_(t.weight_g)
        native.parametrizations.weight.original1.copy_(t.weight_v)
        torch.testing.assert_close(native.weight, t.effective_weight(), atol=1e-6, rtol=1e-6)
    x = mx.random.normal((2, 13, 4))
    y = m(x)
    with torch.no_grad():
        yt = t(to_t(x))
    np.testing.assert_allclose(np.array(y), from_t(yt), atol=1e-5)
    m.remove_weight_norm()
    t.remove_weight_norm()
    assert sorted(k for k, _ in tree_flatten(m.parameters())) == ["bias", "weight"]
    assert sorted(t.state_dict()) == ["bias", "weight"]
    assert mx.array_equal(m(x), y)  # bit-exact
    with torch.no_grad():
        assert torch.equal(t(to_t(x)), yt)


@pytest.mark.parametrize("cls,kw", [
    pytest.param(Conv1d, dict(kernel_size=7, padding="causal"), id="dense"),
    pytest.param(Conv1d, dict(kernel_size=3, dilation=3, weight_norm=True), id="dilated-wn"),
    pytest.param(Conv1d, dict(kernel_size=8, stride=4, padding="causal"), id="strided"),
    pytest.param(Conv1d, dict(kernel_size=7, groups=4, pad_mode="reflect"), id="depthwise"),
    pytest.param(Conv1d, dict(kernel_size=3, groups=2, stride=2), id="grouped"),
    pytest.param(ConvTranspose1d, dict(kernel_size=16, stride=8), id="convtr"),
    pytest.param(ConvTranspose1d, dict(kernel_size=4, stride=2, groups=2, weight_norm=True),
                 id="convtr-grouped-wn"),
])
def test_gradients_match_across_paths_and_torch(cls, kw):
    c_out = 4 if kw.get("groups") == 4 else 6
    m = cls(in_channels=4, out_channels=c_out, **kw)
    t = copy_mlx_to_torch(m, getattr(tconv, cls.__name__)(in_channels=4, out_channels=c_out, **kw))
    x = mx.random.normal((2, 29, 4))
    grads = {}
    impls = impls_for(cls)
    for impl in impls:
        with forced(impl):
            _, g = nn.value_and_grad(m, _loss)(m, x)
            gx = mx.grad(lambda x: _loss(m, x))(x)
        grads[impl] = {**dict(tree_flatten(g)), "input": gx}
    xt = to_t(x).requires_grad_(True)
    yt = t(xt).transpose(1, 2)
    (yt * torch.cos(torch.arange(yt.numel()).reshape(yt.shape) * 0.37)).sum().backward()
    kinds = param_kinds(m)
    torch_grads = {k: to_mlx(kinds[k], p.grad.numpy(), k) for k, p in t.named_parameters()}
    for name, g in grads[impls[0]].items():
        assert float(mx.abs(g).max()) > 0, name
        for impl in impls[1:]:
            np.testing.assert_allclose(np.array(grads[impl][name]), np.array(g), atol=2e-5,
                                       rtol=1e-4, err_msg=f"{impl} {name}")
        ref = from_t(xt.grad) if name == "input" else torch_grads[name]
        np.testing.assert_allclose(np.array(g), ref, atol=2e-5, rtol=1e-4, err_msg=name)


def test_training_steps_reduce_loss():
    m = Conv1d(in_channels=4, out_channels=4, kernel_size=5, padding="causal", weight_norm=True)
    target = Conv1d(in_channels=4, out_channels=4, kernel_size=5, padding="causal")
    x = mx.random.normal((2, 64, 4))
    y = target(x)

    def loss(mod):
        return mx.mean((mod(x) - y) ** 2)

    losses = []
    for _ in range(20):
        value, g = nn.value_and_grad(m, loss)(m)
        m.update(tree_map(lambda p, d: p - 0.3 * d, m.parameters(), g))
        losses.append(float(value))
    assert losses[-1] < 0.5 * losses[0]


def test_converter_round_trip_is_exact():
    for m in (Conv1d(in_channels=4, out_channels=6, kernel_size=3, groups=2, weight_norm=True),
              ConvTranspose1d(in_channels=4, out_channels=6, kernel_size=4, stride=2, groups=2,
                              weight_norm=True)):
        state = mlx_to_torch_state(m)
        if isinstance(m, ConvTranspose1d):
            assert state["weight_g"].shape == (4, 1, 1) and state["weight_v"].shape == (4, 3, 4)
        else:
            assert state["weight_g"].shape == (6, 1, 1) and state["weight_v"].shape == (6, 2, 3)
        back = type(m)(**{k: getattr(m, k) for k in ("in_channels", "out_channels", "kernel_size",
                                                    "stride", "groups")}, weight_norm=True)
        load_torch_state_into_mlx(back, state)
        for (k, a), (_, b) in zip(tree_flatten(m.parameters()), tree_flatten(back.parameters())):
            assert mx.array_equal(a, b), k


def test_path_selection(monkeypatch):
    assert ck.get_conv_impl() == "auto"
    assert ck.uses_fast_path() == (mx.default_device() == mx.cpu)
    with conv_impl("native"):
        assert not ck.uses_fast_path()
        with conv_impl("fast"):
            assert ck.uses_fast_path()
        assert ck.get_conv_impl() == "native"
    assert ck.get_conv_impl() == "auto"
    calls = []
    real = mx.conv1d
    monkeypatch.setattr(mx, "conv1d", lambda *a, **k: calls.append(1) or real(*a, **k))
    m = Conv1d(in_channels=4, out_channels=4, kernel_size=3)
    x = mx.random.normal((1, 9, 4))
    with conv_impl("fast"):
        m(x)
    assert not calls
    with conv_impl("native"):
        m(x)
    assert calls
    with pytest.raises(ValueError, match="unknown conv impl 'gpu'"):
        set_conv_impl("gpu")


@pytest.mark.parametrize("cls,kw,match", [
    pytest.param(Conv1d, dict(in_channels=6, out_channels=4, kernel_size=3, groups=4),
                 "divisible by groups", id="groups"),
    pytest.param(Conv1d, dict(in_channels=4, out_channels=4, kernel_size=0),
                 "kernel_size must be a positive integer", id="kernel0"),
    pytest.param(Conv1d, dict(in_channels=4, out_channels=4, kernel_size=3, padding="full"),
                 "unknown padding 'full'", id="padding"),
    pytest.param(Conv1d, dict(in_channels=4, out_channels=4, kernel_size=3, padding=-1),
                 "integer padding must be >= 0", id="negative-padding"),
    pytest.param(Conv1d, dict(in_channels=4, out_channels=4, kernel_size=3, pad_mode="circular"),
                 "unknown pad_mode 'circular'", id="pad-mode"),
    pytest.param(Conv1d, dict(in_channels=4, out_channels=4, kernel_size=3, dilation=0),
                 "dilation must be a positive integer", id="dilation"),
    pytest.param(Conv1d, dict(in_channels=4, out_channels=4, kernel_size=1, stride=2,
                              padding="causal"), "needs \\(kernel_size-1\\)", id="causal-k<s"),
    pytest.param(ConvTranspose1d, dict(in_channels=4, out_channels=6, kernel_size=3, groups=4),
                 "divisible by groups", id="tr-groups"),
    pytest.param(ConvTranspose1d, dict(in_channels=4, out_channels=4, kernel_size=2, stride=4),
                 "needs kernel_size >= stride", id="tr-causal-k<s"),
    pytest.param(ConvTranspose1d, dict(in_channels=4, out_channels=4, kernel_size=4,
                                       padding="valid"), "unknown padding 'valid'", id="tr-valid"),
])
@pytest.mark.parametrize("side", ["mlx", "torch"])
def test_bad_config_raises(cls, kw, match, side):
    target = cls if side == "mlx" else getattr(tconv, cls.__name__)
    with pytest.raises(ValueError, match=match):
        target(**kw)


def test_bad_input_raises():
    m = Conv1d(in_channels=4, out_channels=4, kernel_size=7, padding="valid")
    with pytest.raises(ValueError, match=r"expects input \(B, T, 4\)"):
        m(mx.zeros((1, 10, 3)))
    with pytest.raises(ValueError, match="shorter than the effective kernel"):
        m(mx.zeros((1, 5, 4)))
    with pytest.raises(ValueError, match="needs padding='causal'"):
        m.step(mx.zeros((1, 5, 4)))
    t = tconv.Conv1d(in_channels=4, out_channels=4, kernel_size=7, padding="valid")
    with pytest.raises(ValueError, match=r"expects input \(B, 4, T\)"):
        t(torch.zeros(1, 10, 3))
    assert Conv1d(in_channels=4, out_channels=5, kernel_size=7, padding="causal")(
        mx.zeros((2, 0, 4))).shape == (2, 0, 5)

"""1-D convolution kernels for MLX, with fast CPU rewrites and the path selection between them.

Every function takes channels-last input that is already padded and returns the raw
convolution without bias:

- :func:`conv1d`: ``x (B, T, C_in)``, ``w (O, K, C_in/groups)`` -> ``(B, T_out, O)`` with
  ``T_out = (T - (K-1)*dilation - 1) // stride + 1``.
- :func:`conv_transpose1d`: ``x (B, T, I)``, ``w (O/groups, K, I)`` (the layout our modules
  store) -> the untrimmed ``(B, (T-1)*stride + K, O)``.

Why the rewrites: MLX's CPU convolutions are slow except for the plain and strided dense
cases (``bench/layers.py`` times native ops and rewrites against torch; figures in
docs/performance.md, "Convolutions"). The rewrites route the work through BLAS or through one
fused elementwise pass:

- dense (groups == 1): small inputs (streaming steps) concatenate the K shifted taps (im2col)
  and make one GEMM against a view of the weight: per-call overhead dominates there. Large
  inputs make one GEMM per tap accumulated with ``addmm`` (beta=1 in the GEMM, no extra pass;
  measured faster than im2col, whose K-fold copy of the input costs more than it saves);
  strided non-dilated convs first fold ``stride`` steps into one row, so the taps become
  ``ceil(K/stride)`` contiguous, larger GEMMs.
- depthwise (groups == C_in): shift-multiply-add over the K taps, 4 taps per compiled pass.
- grouped: im2col per group + one batched matmul over the groups.
- transposed: one matmul ``(B*T, I) @ (I, K*O)`` + overlap-add of ``ceil(K/stride)`` shifted
  slices (K padded up to a multiple of stride), summed with plain adds (ceil(K/stride) is 2
  for the usual K = 2*stride).

Path selection: ``"native"`` always uses ``mx.conv1d`` / ``mx.conv_transpose1d``; ``"fast"``
always uses the rewrites; ``"auto"`` (default) uses the rewrites when the default device is
the CPU and the native ops on the GPU (Metal's convolutions are fast), with one exception:
the transposed conv takes the rewrite on the GPU too, because MLX's GPU ``conv_transpose1d``
gave wrong results (issue 19; ``scripts/repro_conv_transpose_gpu.py`` reproduces it with mlx
alone). The rewrite is plain array maths (a matmul and adds), right on every backend; see
:func:`native_conv_transpose_trusted` for the version check that lifts the detour.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator

import mlx.core as mx

from mlx_speech.layers.activations import _on_cpu
from mlx_speech.layers.linear import few_rows_applies, few_rows_matmul

_IMPLS = ("auto", "native", "fast")
# MLX's CPU GEMM for half types is a plain loop (much slower than fp32 BLAS; docs/performance.md)
# and fp16 arithmetic is emulated on x86: the fast path computes in fp32 and rounds the result once.
_HALF = (mx.bfloat16, mx.float16)
_state = {"impl": "auto"}


def set_conv_impl(impl: str) -> None:
    """Choose the conv path: ``"auto"`` (CPU -> fast, GPU -> native), ``"native"``, ``"fast"``."""
    if impl not in _IMPLS:
        raise ValueError(f"unknown conv impl {impl!r}; expected one of {', '.join(_IMPLS)}")
    _state["impl"] = impl


def get_conv_impl() -> str:
    """The path chosen with :func:`set_conv_impl` (``"auto"`` unless changed)."""
    return _state["impl"]


@contextlib.contextmanager
def conv_impl(impl: str) -> Iterator[None]:
    """Context manager form of :func:`set_conv_impl`; restores the previous choice on exit."""
    previous = get_conv_impl()
    set_conv_impl(impl)
    try:
        yield
    finally:
        _state["impl"] = previous


def uses_fast_path() -> bool:
    """Whether the next convolution call takes the rewritten path."""
    impl = _state["impl"]
    if impl == "auto":
        return mx.default_device() == mx.cpu
    return impl == "fast"


# First MLX version whose GPU ``conv_transpose1d`` passes scripts/repro_conv_transpose_gpu.py
# on the GPU, as (major, minor, patch); None while no fixed version is known. mlx-cuda 0.32.4
# failed it on an H200 (77 cases of tests/test_layers_conv.py, up to 2.6 absolute, TF32 off).
# Metal was not checked; it stays on the rewrite too until a GPU run of the script says
# otherwise. To lift the detour: run the script with --device gpu on the new version, and
# when it passes, set this to that version.
NATIVE_CONV_TRANSPOSE_GPU_FIXED_IN: tuple[int, int, int] | None = None


def _version(text: str) -> tuple[int, ...]:
    # "0.32.4" -> (0, 32, 4); "0.33.0.dev20260101" -> (0, 33, 0)
    return tuple(int(n) for n in re.findall(r"\d+", text)[:3])


def native_conv_transpose_trusted(device: mx.Device | mx.DeviceType | None = None,
                                  version: str | None = None) -> bool:
    """Whether ``mx.conv_transpose1d`` on ``device`` (default: the default device) is known
    right in MLX ``version`` (default: the running one).

    The CPU op is right (only slow). The GPU op is trusted only from
    :data:`NATIVE_CONV_TRANSPOSE_GPU_FIXED_IN` on, i.e. not at all until a fixed version is
    known; the arguments let the decision be tested without a GPU."""
    device = mx.default_device() if device is None else device
    if getattr(device, "type", device) == mx.DeviceType.cpu:  # a Device or a DeviceType
        return True
    fixed = NATIVE_CONV_TRANSPOSE_GPU_FIXED_IN
    return fixed is not None and _version(version or mx.__version__) >= fixed


def uses_fast_transpose_path() -> bool:
    """Whether the next transposed-conv call takes the rewrite: as :func:`uses_fast_path`,
    except that ``"auto"`` on the GPU also takes it while the native GPU op is not trusted
    (:func:`native_conv_transpose_trusted`). ``"native"`` still forces the MLX op, so tests
    and the repro script can reach it."""
    impl = _state["impl"]
    if impl == "auto":
        return mx.default_device() == mx.cpu or not native_conv_transpose_trusted()
    return impl == "fast"


# --- Conv1d -------------------------------------------------------------------------------------


def conv1d(x: mx.array, w: mx.array, *, stride: int = 1, dilation: int = 1,
           groups: int = 1) -> mx.array:
    """Unpadded, bias-free 1-D convolution. ``x (B, T, C_in)``, ``w (O, K, C_in/groups)``."""
    B, T, C = x.shape
    O, K, Ig = w.shape
    T_out = (T - (K - 1) * dilation - 1) // stride + 1
    if T_out <= 0:
        return mx.zeros((B, 0, O), dtype=mx.result_type(x, w))
    if not uses_fast_path():
        return mx.conv1d(x, w, stride=stride, dilation=dilation, groups=groups)
    dtype = mx.result_type(x, w)
    if dtype in _HALF:
        y = conv1d(x.astype(mx.float32), w.astype(mx.float32), stride=stride,
                   dilation=dilation, groups=groups)
        return y.astype(dtype)
    if groups == 1:
        return _dense(x, w, stride, dilation, T_out)
    if Ig == 1 and groups == C:
        return _depthwise(x, w, stride, dilation, T_out)
    return _grouped(x, w, stride, dilation, groups, T_out)


def _tap(x: mx.array, start: int, stride: int, T_out: int) -> mx.array:
    # x[:, start + t*stride] for t < T_out; a view when stride == 1
    return x[:, start:start + (T_out - 1) * stride + 1:stride]


# Below this many im2col elements (B * T_out * K * C_in) one GEMM on concatenated taps beats
# K accumulated GEMMs: small inputs (streaming steps) are dominated by per-call overhead.
IM2COL_MAX_ELEMENTS = 1 << 22
# Transposed conv with fewer input rows (B * T) than this times C_in reorders the small product
# rather than the whole weight (per-call weight reordering dominates streaming steps).
SMALL_ROWS_PER_INPUT_CHANNEL = 1.0


def _dense(x: mx.array, w: mx.array, S: int, d: int, T_out: int) -> mx.array:
    O, K, I = w.shape
    B = x.shape[0]
    if K > 1 and B * T_out * K * I <= IM2COL_MAX_ELEMENTS:
        cols = mx.concatenate([_tap(x, k * d, S, T_out) for k in range(K)], axis=-1)
        return cols @ w.reshape(O, K * I).T
    J = -(-K // S)
    if S > 1 and d == 1 and K > 1 and 4 * (J * S - K) <= K:
        # Fold S steps into one row: x (B, T, I) -> (B, T/S, S*I); tap j of the folded conv
        # is rows j..j+T_out, weight taps j*S..j*S+S-1 (zero taps past K).
        B, T, _ = x.shape
        rows = T_out + J - 1
        xs = x[:, :min(T, rows * S)]
        if xs.shape[1] < rows * S:
            xs = mx.pad(xs, [(0, 0), (0, rows * S - xs.shape[1]), (0, 0)])
        xs = xs.reshape(B, rows, S * I)
        wj = w if J * S == K else mx.pad(w, [(0, 0), (0, J * S - K), (0, 0)])
        wj = wj.reshape(O, J, S * I)
        return _accumulate([xs[:, j:j + T_out] for j in range(J)], [wj[:, j].T for j in range(J)])
    return _accumulate([_tap(x, k * d, S, T_out) for k in range(K)], [w[:, k].T for k in range(K)])


def _few_rows_or_plain(x: mx.array, weight: mx.array) -> mx.array:
    """``x @ weight.T``; a streaming step's few rows on the CPU take Linear's chunked path
    (Mimi's first decoder upsampling, 4 rows against an 8 MB weight, gains; the encoder's last
    conv, 2 rows x 4096 inputs, measured no gain and stays a plain GEMM; docs/performance.md,
    "Convolutions") unless our few-row sgemm is in use, which takes the plain call (see
    ``linear.few_rows_applies``)."""
    N, K = weight.shape
    if _on_cpu() and few_rows_applies(x.size // K, N, K):
        return few_rows_matmul(x, weight)
    return x @ weight.T


def _accumulate(taps: list[mx.array], weights: list[mx.array]) -> mx.array:
    # weights[k] (I, O) are transposed views of the (O, K, I) weight: BLAS reads them in place
    y = taps[0] @ weights[0]
    for k in range(1, len(taps)):
        y = mx.addmm(y, taps[k], weights[k])
    return y


def _madd4(*args: mx.array) -> mx.array:
    # (a0..a3, w0..w3) -> sum a_k * w_k
    return args[0] * args[4] + args[1] * args[5] + args[2] * args[6] + args[3] * args[7]


def _acc_madd4(y: mx.array, *args: mx.array) -> mx.array:
    # (y, a0..a3, w0..w3) -> y + sum a_k * w_k
    return y + _madd4(*args)


@functools.cache
def _compiled_madd() -> tuple:
    # Fixed arity so every kernel size, dilation and stride shares the same two compiled
    # kernels (each new compiled graph costs ~1 s of C++ compilation on first use).
    return mx.compile(_madd4), mx.compile(_acc_madd4)


def _depthwise(x: mx.array, w: mx.array, S: int, d: int, T_out: int) -> mx.array:
    O, K, _ = w.shape
    C = x.shape[-1]
    if O != C:
        # channel multiplier m = O / C: output channel o reads input channel o // m
        x = mx.repeat(x, O // C, axis=-1)
    wk = w[:, :, 0].T  # (K, O)
    taps = [_tap(x, k * d, S, T_out) for k in range(K)]
    if K == 1:
        return taps[0] * wk[0]
    n = -(-K // 4) * 4
    if n > K:  # zero-weight dummy taps fill the last pass
        wk = mx.concatenate([wk, mx.zeros((n - K, O), dtype=wk.dtype)], axis=0)
        taps += [taps[0]] * (n - K)
    first, acc = _compiled_madd()
    y = first(*taps[:4], *(wk[k] for k in range(4)))
    for j in range(4, n, 4):
        y = acc(y, *taps[j:j + 4], *(wk[k] for k in range(j, j + 4)))
    return y


def _grouped(x: mx.array, w: mx.array, S: int, d: int, G: int, T_out: int) -> mx.array:
    B, _, C = x.shape
    O, K, Ig = w.shape
    Og = O // G
    cols = mx.stack([_tap(x, k * d, S, T_out) for k in range(K)], axis=2)  # (B, T_out, K, C)
    cols = cols.reshape(B, T_out, K, G, Ig).transpose(3, 0, 1, 2, 4).reshape(G, B * T_out, K * Ig)
    y = cols @ w.reshape(G, Og, K * Ig).swapaxes(1, 2)  # (G, B*T_out, Og); weight as a view
    return y.reshape(G, B, T_out, Og).transpose(1, 2, 0, 3).reshape(B, T_out, O)


# --- ConvTranspose1d ----------------------------------------------------------------------------


def native_transpose_weight(w: mx.array, groups: int) -> mx.array:
    """Our ``(O/groups, K, I)`` layout -> ``mx.conv_transpose1d``'s ``(O, K, I/groups)``."""
    if groups == 1:
        return w
    Og, K, I = w.shape
    Ig = I // groups
    return w.reshape(Og, K, groups, Ig).transpose(2, 0, 1, 3).reshape(groups * Og, K, Ig)


def conv_transpose1d(x: mx.array, w: mx.array, *, stride: int = 1, groups: int = 1) -> mx.array:
    """Untrimmed, bias-free transposed conv. ``x (B, T, I)``, ``w (O/groups, K, I)``.

    Takes the rewrite on the CPU and, while MLX's GPU op is not trusted, on the GPU too
    (:func:`uses_fast_transpose_path`). Half types compute in fp32 on the CPU only, where
    MLX's half GEMM is slow; on the GPU they stay in their dtype, like the native op."""
    B, T, I = x.shape
    Og, K, _ = w.shape
    O = Og * groups
    dtype = mx.result_type(x, w)
    if T == 0:
        return mx.zeros((B, 0, O), dtype=dtype)
    if not uses_fast_transpose_path():
        return mx.conv_transpose1d(x, native_transpose_weight(w, groups), stride=stride,
                                   groups=groups)
    if dtype in _HALF and _on_cpu():
        y = conv_transpose1d(x.astype(mx.float32), w.astype(mx.float32), stride=stride,
                             groups=groups)
        return y.astype(dtype)
    S = stride
    J = -(-K // S)
    KJ = J * S
    # Zero rows on both sides of x make every overlap-add slice below full length.
    xp = mx.pad(x, [(0, 0), (J - 1, J - 1), (0, 0)]) if J > 1 else x
    Tp = T + 2 * (J - 1)
    Ig = I // groups
    if groups == 1 and B * Tp < SMALL_ROWS_PER_INPUT_CHANNEL * I:
        # Few rows (streaming steps): multiply by a view of the weight and reorder the small
        # product, instead of reordering the whole weight.
        y = _few_rows_or_plain(xp.reshape(B * Tp, I), w.reshape(O * K, I)).reshape(B, Tp, O, K)
        if KJ > K:
            y = mx.pad(y, [(0, 0), (0, 0), (0, 0), (0, KJ - K)])
        y = y.transpose(0, 1, 3, 2).reshape(B, Tp, J, S, O)
        return _overlap_add(y, T, J, S, K)
    wp = w if KJ == K else mx.pad(w, [(0, 0), (0, KJ - K), (0, 0)])
    # Weights are reordered to (K, O, I) rows, which moves whole contiguous I-vectors, and
    # multiplied as a transposed view: a full (I, K*O) transposition would add a measurable
    # share of the GEMM's time (docs/performance.md, "Convolutions").
    if groups == 1:
        wk = wp.transpose(1, 0, 2).reshape(KJ * O, I)
        y = (xp.reshape(B * Tp, I) @ wk.T).reshape(B, Tp, J, S, O)
    elif Ig == 1:
        # depthwise: y[b, t, k, g*Og + o] = x[b, t, g] * w[o, k, g]
        y = xp[:, :, None, :, None] * wp.transpose(1, 2, 0)  # (B, Tp, KJ, G, Og)
        y = y.reshape(B, Tp, J, S, O)
    else:
        xg = xp.reshape(B * Tp, groups, Ig).transpose(1, 0, 2)  # (G, B*Tp, Ig)
        wg = wp.reshape(Og, KJ, groups, Ig).transpose(2, 1, 0, 3).reshape(groups, KJ * Og, Ig)
        y = (xg @ wg.swapaxes(1, 2)).reshape(groups, B, Tp, KJ, Og).transpose(1, 2, 3, 0, 4)
        y = y.reshape(B, Tp, J, S, O)
    return _overlap_add(y, T, J, S, K)


def _overlap_add(y: mx.array, T: int, J: int, S: int, K: int) -> mx.array:
    # y (B, T + 2(J-1), J, S, O), rows offset by the J-1 zero pad:
    # out[t] = sum_j y[t + J-1 - j, j] for t < T + J - 1, then cut to (T-1)*S + K samples
    B, O = y.shape[0], y.shape[-1]
    n = T + J - 1
    out = y[:, J - 1:J - 1 + n, 0]
    for j in range(1, J):
        out = out + y[:, J - 1 - j:J - 1 - j + n, j]
    return out.reshape(B, n * S, O)[:, :(T - 1) * S + K]

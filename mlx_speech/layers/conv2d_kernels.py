"""2-D convolution kernel for MLX: a fast CPU rewrite of dense convs, on the path selection of
:mod:`mlx_speech.layers.conv_kernels` (``set_conv_impl``: ``"auto"`` rewrites when the default
device is the CPU, ``"native"`` / the GPU use ``mx.conv2d``).

:func:`conv2d`: ``x (B, H, W, C_in)``, ``w (O, k_h, k_w, C_in/groups)``, zero ``padding``
``(p_h, p_w)`` on both sides of each axis -> bias-free ``(B, H_out, W_out, O)`` with
``H_out = (H + 2*p_h - k_h) // s_h + 1`` (the same for ``W``). Unlike the 1-D kernels it takes
the padding itself: the rewrite pads and aligns the input for the stride fold in one copy, and
``mx.conv2d`` pads internally.

Why the rewrite: MLX's CPU ``conv2d`` is slow, its backward most of all (the BSQ-ViT PatchGAN
and DAC's MPD / MRD train through it; figures in docs/performance.md, "Convolutions"). The
rewrite routes every conv through BLAS on views of the input:

1. Stride fold: a stride ``(s_h, s_w)`` conv becomes a stride-1 conv over ``s_h * s_w * C_in``
   channels with ``(ceil(k_h/s_h), ceil(k_w/s_w))`` taps (the kernel zero-padded to whole
   strides), one transposition of the input: PatchGAN's k4 s2 is then 2 x 2 taps of 4x wider
   GEMMs.
2. Stride-1 conv as row offsets: with the padded input flattened to ``(B*R_h*R_w, C)`` rows,
   tap ``(i, j)`` of every output is the contiguous row range starting at ``i*R_w + j``, so the
   conv is one ``addmm`` per tap on a view, no copy. It computes the whole ``R_h x R_w`` grid
   per image, of which the ``H_out x W_out`` valid outputs are returned as a strided view (the
   other rows straddle an edge). The input gradient is the same sum over taps on the
   zero-filled output gradient, the weight gradient one GEMM per tap: a custom VJP, since
   autograd through the slices would build a full-size zero buffer per tap.
3. im2col instead (the taps concatenated, one GEMM forward and one for the weight gradient on
   a contiguous view of the weight) in three cases. Few channels per tap, fewer than the output
   channels (a first layer): per-tap GEMMs that thin are bound by re-reading their wider
   output. Few valid rows against the weight (DAC's full-width MPD): step 2 reads each tap's
   weight as a strided view, at about the cost of copying it. In both the input gradient is one
   GEMM to the im2col gradient, whose columns are then added back at their offsets. Finally a
   grid much larger than the valid outputs with many output channels (PatchGAN's 16 x 16
   stride-1 conv: an 18 x 18 grid for 15 x 15 outputs): the wasted GEMM work costs more than
   copying the taps; the input gradient stays as in 2.

Grouped convs (``groups > 1``) stay on ``mx.conv2d``: none of our 2-D convs is grouped. Half
types compute in fp32 and round once, as in the 1-D kernels.
"""

from __future__ import annotations

import functools

import mlx.core as mx

from mlx_speech.layers.conv_kernels import _HALF, uses_fast_path

__all__ = ["conv2d"]

# im2col when each tap reads at most this many channels (after the stride fold) and fewer than
# the output channels: per-tap GEMMs that thin are bound by re-reading their wider output, not by
# arithmetic (with as many output channels as input ones or fewer, the taps' copy costs more).
IM2COL_MAX_CHANNELS = 8
# im2col when (grid rows / valid outputs - 1) * O exceeds this: that is the multiply-adds the
# grid wastes per value im2col would copy, and one copied value costs tens of multiply-adds.
IM2COL_MIN_WASTE = 64.0
# im2col when the valid outputs are at most this many times the output channels, i.e. the taps'
# copy is at most this many times the weight: the row offsets read each tap's weight as a
# strided view, which MLX's matmul reads at about the cost of copying it (few rows against a
# large weight: DAC's full-width MPD).
IM2COL_MAX_ROWS_PER_OUTPUT = 1.0


def conv2d(x: mx.array, w: mx.array, *, stride: tuple[int, int] = (1, 1),
           padding: tuple[int, int] = (0, 0), groups: int = 1) -> mx.array:
    """Bias-free 2-D convolution with zero ``padding``. ``x (B, H, W, C_in)``, ``w (O, k_h, k_w, C_in/groups)``."""
    if groups != 1 or not uses_fast_path():
        return mx.conv2d(x, w, stride=stride, padding=padding, groups=groups)
    dtype = mx.result_type(x, w)
    if dtype in _HALF:
        y = conv2d(x.astype(mx.float32), w.astype(mx.float32), stride=stride, padding=padding)
        return y.astype(dtype)
    B, H, W, _ = x.shape
    O, kh, kw, _ = w.shape
    (sh, sw), (ph, pw) = stride, padding
    h_out, w_out = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    if B == 0 or h_out <= 0 or w_out <= 0:
        return mx.zeros((B, max(h_out, 0), max(w_out, 0), O), dtype=dtype)
    xf, wf = _fold(x, w, sh, sw, ph, pw, h_out, w_out)
    _, rh, rw, c = xf.shape
    _, jh, jw, _ = wf.shape
    valid = B * h_out * w_out
    thin = c <= IM2COL_MAX_CHANNELS and c < O
    few_rows = valid <= IM2COL_MAX_ROWS_PER_OUTPUT * O
    wasteful = (rh * rw / (h_out * w_out) - 1.0) * O > IM2COL_MIN_WASTE
    im2col = jh * jw > 1 and (thin or few_rows or wasteful)
    return _stride1(im2col, im2col and (thin or few_rows))(xf, wf)


def _axis(x: mx.array, axis: int, size: int, pad: int, need: int) -> tuple[mx.array, tuple[int, int]]:
    """Crop ``x`` along ``axis`` so that ``pad`` leading zeros + ``x`` cover at most ``need``
    values; returns it and the ``(before, after)`` zeros that make exactly ``need``."""
    keep = need - pad
    if keep < size:
        x = x[(slice(None),) * axis + (slice(0, keep),)]
        return x, (pad, 0)
    return x, (pad, keep - size)


def _fold(x: mx.array, w: mx.array, sh: int, sw: int, ph: int, pw: int, h_out: int,
          w_out: int) -> tuple[mx.array, mx.array]:
    """The padded input and weight of the equivalent stride-1 conv (module docstring, step 1):
    ``x (B, R_h, R_w, s_h*s_w*C)`` with ``R = out + taps - 1``, ``w (O, j_h, j_w, s_h*s_w*C)``."""
    B, H, W, C = x.shape
    O, kh, kw, _ = w.shape
    jh, jw = -(-kh // sh), -(-kw // sw)
    rh, rw = h_out + jh - 1, w_out + jw - 1
    x, pad_h = _axis(x, 1, H, ph, rh * sh)
    x, pad_w = _axis(x, 2, W, pw, rw * sw)
    if any(pad_h + pad_w):
        x = mx.pad(x, [(0, 0), pad_h, pad_w, (0, 0)])
    if sh * sw == 1:
        return x, w
    x = x.reshape(B, rh, sh, rw, sw, C).transpose(0, 1, 3, 2, 4, 5).reshape(B, rh, rw, sh * sw * C)
    if jh * sh > kh or jw * sw > kw:
        w = mx.pad(w, [(0, 0), (0, jh * sh - kh), (0, jw * sw - kw), (0, 0)])
    w = w.reshape(O, jh, sh, jw, sw, C).transpose(0, 1, 3, 2, 4, 5).reshape(O, jh, jw, sh * sw * C)
    return x, w


def _offsets(jh: int, jw: int, rw: int) -> list[tuple[int, int, int]]:
    """``(row offset, i, j)`` of every tap in the flattened ``(B*R_h*R_w, C)`` input."""
    return [(i * rw + j, i, j) for i in range(jh) for j in range(jw)]


def _last(jh: int, jw: int, rw: int) -> int:
    """The largest tap offset: the last that many grid rows would read past the input."""
    return (jh - 1) * rw + jw - 1


def _cols(x: mx.array, jh: int, jw: int) -> mx.array:
    """im2col: ``(B*H_out*W_out, j_h*j_w*C)``, taps in the weight's ``(i, j, c)`` order."""
    B, rh, rw, C = x.shape
    h, w = rh - jh + 1, rw - jw + 1
    taps = [x[:, i:i + h, j:j + w] for i in range(jh) for j in range(jw)]
    return mx.concatenate(taps, axis=-1).reshape(B * h * w, jh * jw * C)


def _forward(x: mx.array, w: mx.array, im2col: bool) -> mx.array:
    B, rh, rw, C = x.shape
    O, jh, jw, _ = w.shape
    h, wo = rh - jh + 1, rw - jw + 1
    if im2col:
        return (_cols(x, jh, jw) @ w.reshape(O, jh * jw * C).T).reshape(B, h, wo, O)
    n = B * rh * rw
    # The grid's last `last` rows would read past x; no valid output is among them.
    m = n - _last(jh, jw, rw)
    xf = x.reshape(n, C)
    y = None
    for off, i, j in _offsets(jh, jw, rw):
        # w[:, i, j].T: a strided (C, O) view (a contiguous per-call reorder measured <= 5% gain
        # on PatchGAN / DAC shapes; few rows against a large weight take im2col instead)
        y = xf[off:off + m] @ w[:, i, j].T if y is None else mx.addmm(y, xf[off:off + m], w[:, i, j].T)
    # The valid outputs as a view of the m grid rows (no copy): (b, r, c) is row b*rh*rw + r*rw + c
    return mx.as_strided(y, (B, h, wo, O), (rh * rw * O, rw * O, O, 1))


def _backward(x: mx.array, w: mx.array, dy: mx.array, im2col: bool,
              col2im: bool) -> tuple[mx.array, mx.array]:
    B, rh, rw, C = x.shape
    O, jh, jw, _ = w.shape
    h, wo = dy.shape[1:3]
    n = B * rh * rw
    last = _last(jh, jw, rw)
    lead = 1 if last else 0
    start = lead * rh * rw  # the grid row of image 0, row 0, column 0

    def on_grid(a: mx.array) -> mx.array:
        # (B, h, wo, D) -> ((B + lead) * rh * rw, D): zero past the valid outputs (so grid rows
        # are exact for dx), after one zero image when there are offsets (rows before image 0
        # for dx's shifted reads), all in one copy
        return mx.pad(a, [(lead, 0), (0, rh - h), (0, rw - wo), (0, 0)]).reshape(-1, a.shape[-1])

    offsets = _offsets(jh, jw, rw)
    if im2col:
        dw = (dy.reshape(B * h * wo, O).T @ _cols(x, jh, jw)).reshape(w.shape)
    else:
        xf, gt = x.reshape(n, C), on_grid(dy)[start:start + n - last].T
        dw = mx.stack([gt @ xf[off:off + n - last] for off, _, _ in offsets], axis=1).reshape(w.shape)
    # dx[r] = sum over taps of dy_grid[r - offset] @ w_tap (zero rows before image 0 where r < offset)
    if col2im:
        # one GEMM to the im2col gradient, then the taps' columns summed back at their offsets
        cols = on_grid((dy.reshape(B * h * wo, O) @ w.reshape(O, jh * jw * C)).reshape(B, h, wo, -1))
        parts = [cols[start - off:start - off + n, k * C:(k + 1) * C] for k, (off, _, _) in enumerate(offsets)]
        dx = parts[0]
        for part in parts[1:]:
            dx = dx + part
        return dx.reshape(x.shape), dw
    grid = on_grid(dy)
    dx = None
    for off, i, j in offsets:
        g = grid[start - off:start - off + n]
        dx = g @ w[:, i, j] if dx is None else mx.addmm(dx, g, w[:, i, j])
    return dx.reshape(x.shape), dw


@functools.cache
def _stride1(im2col: bool, col2im: bool):
    """Stride-1, unpadded conv ``x (B, R_h, R_w, C)``, ``w (O, j_h, j_w, C)`` ->
    ``(B, R_h - j_h + 1, R_w - j_w + 1, O)`` with the custom VJP of the module docstring."""

    @mx.custom_function
    def conv(x: mx.array, w: mx.array) -> mx.array:
        return _forward(x, w, im2col)

    @conv.vjp
    def conv_vjp(primals, cotangent, output):
        x, w = primals
        return _backward(x, w, cotangent, im2col, col2im)

    return conv

"""Waveform front end of the wav2vec 2.0 family (WavLM, HuBERT, wav2vec 2.0), MLX, channels-last.

``FeatureEncoder``: a stack of strided, unpadded convolutions over the raw 16 kHz waveform
(``(B, T)`` -> ``(B, F, conv_dim[-1])``; 320x downsampling, 50 frames/s, for the standard
``conv_stride = (5, 2, 2, 2, 2, 2, 2)``). With ``feat_extract_norm="group"`` (base checkpoints)
only the first convolution is normalised, by a GroupNorm with one group per channel, i.e. each
channel is normalised over *time* (per example); with ``"layer"`` (large checkpoints) every
convolution is followed by a LayerNorm over channels.

``FeatureProjection``: optional LayerNorm (HuBERT's ``feat_proj_layer_norm``; always on in
WavLM / wav2vec 2.0) then a Linear to the model width.

``PositionalConvEmbedding``: a grouped convolution (kernel 128, 16 groups for every published
checkpoint) with ``K // 2`` zero padding on both sides; for an even kernel that gives one frame
too many, and, as upstream (``SamePadLayer``), the *last* frame is dropped. Then GELU. Upstream
trains it with weight norm over ``dim=2`` (one gain per kernel tap, the norm taken over the
output and input channels), which is not the per-output-channel weight norm of
:class:`~mlx_speech.layers.conv.Conv1d`; the converter folds it once into a plain ``weight``
(see :mod:`mlx_speech.models.ssl.hf`). HuBERT's ``conv_pos_batch_norm`` variant applies an inference-mode
BatchNorm before the convolution instead of the weight norm.

Speed (CPU backend; bench/ssl_encoders.py): element-wise work dominates this front end, so

* the first layer's GroupNorm is folded into its convolution: for a 1-channel input the
  per-channel mean and variance of ``conv(x)`` follow exactly from the ``K x K`` mean and
  covariance of the input windows (``mean_c = w_c . mu``, ``var_c = w_c Sigma w_c``), so the
  normalised output is one GEMM with per-example scaled weights (the shift rides in it as a
  constant-1 input column) followed by GELU; the big ``(B, T, 512)`` tensor is not re-read for
  statistics or rescaled;
* GELU is :func:`~mlx_speech.layers.activations.gelu_auto` (on the CPU two shape-specialised,
  vectorised kernels over a contiguous input; a broadcast operand would make MLX's compiled
  CPU kernel strided and scalar);
* the grouped positional convolution (kernel 128) is one batched GEMM per tap accumulated in
  place instead of an im2col matrix 128 times the input (:func:`grouped_conv1d`).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.layers import conv_kernels
from mlx_speech.layers.activations import gelu_auto, get_activation
from mlx_speech.layers.conv import Conv1d
from mlx_speech.layers.norms import LayerNorm
from mlx_speech.models.ssl.spec import ACTIVATIONS, Wav2Vec2Spec

GROUP_NORM_EPS = 1e-5  # torch nn.GroupNorm / nn.BatchNorm1d default, as upstream uses them

def activation(name: str):
    """Our activation for a transformers activation name (``"gelu"``, ``"swish"``, ...)."""
    ours = ACTIVATIONS[name]
    return get_activation(ours)  # "gelu": gelu_auto (see the module docstring)


class ChannelNorm(nn.Module):
    """GroupNorm with one group per channel on ``(B, T, C)``: each channel over time."""

    def __init__(self, *, channels: int, eps: float = GROUP_NORM_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = mx.ones((channels,))
        self.bias = mx.zeros((channels,))

    def __call__(self, x: mx.array) -> mx.array:
        mean = mx.mean(x, axis=1, keepdims=True)
        var = mx.var(x, axis=1, keepdims=True)
        scale = self.weight * mx.rsqrt(var + self.eps)  # (B, 1, C): one multiply-add per sample
        return x * scale + (self.bias - mean * scale)


class FrozenBatchNorm(nn.Module):
    """Inference-mode BatchNorm over channels of ``(B, T, C)`` with stored running statistics."""

    def __init__(self, *, channels: int, eps: float = GROUP_NORM_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = mx.ones((channels,))
        self.bias = mx.zeros((channels,))
        self.running_mean = mx.zeros((channels,))
        self.running_var = mx.ones((channels,))

    def __call__(self, x: mx.array) -> mx.array:
        scale = self.weight * mx.rsqrt(self.running_var + self.eps)
        return x * scale + (self.bias - self.running_mean * scale)


class ConvLayer(nn.Module):
    """``conv -> [norm] -> activation`` on ``(B, T, C_in)`` -> ``(B, T', C_out)``."""

    def __init__(self, *, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 bias: bool, norm: str | None, act: str) -> None:
        super().__init__()
        self.conv = Conv1d(in_channels=in_channels, out_channels=out_channels,
                           kernel_size=kernel_size, stride=stride, bias=bias, padding="valid")
        if norm == "group":
            self.norm = ChannelNorm(channels=out_channels)
        elif norm == "layer":
            self.norm = LayerNorm(dim=out_channels)  # torch nn.LayerNorm default eps 1e-5
        self._act = activation(act)
        self._fold_norm = norm == "group" and in_channels == 1 and act == "gelu"

    def __call__(self, x: mx.array) -> mx.array:
        if self._fold_norm:
            return self._group_normed_gelu(x)
        x = self.conv(x)
        if "norm" in self:
            x = self.norm(x)
        return self._act(x)

    def _group_normed_gelu(self, x: mx.array) -> mx.array:
        """``gelu(norm(conv(x)))`` for a 1-channel input, the norm folded into the GEMM.

        Windows ``F (B, T', K)``; ``mu = mean_t F``, ``Sigma = cov_t F`` (centred, biased);
        channel ``c`` has mean ``w_c . mu`` and variance ``w_c Sigma w_c``, so
        ``norm(conv(x)) = [F, 1] @ [w^T * s; beta - (w . mu) * s]`` with
        ``s = gamma / sqrt(var + eps)``. A conv bias cancels in the normalisation.
        """
        conv, norm = self.conv, self.norm
        K, S = conv.kernel_size, conv.stride
        T_out = (x.shape[1] - K) // S + 1
        if T_out <= 0:
            raise ValueError(f"SSL conv front end: input of {x.shape[1]} samples is shorter "
                             f"than the first kernel ({K})")
        frames = mx.concatenate([x[:, k:k + (T_out - 1) * S + 1:S] for k in range(K)], axis=-1)
        mu = mx.mean(frames, axis=1, keepdims=True)  # (B, 1, K)
        centred = frames - mu
        sigma = (centred.swapaxes(1, 2) @ centred) / T_out  # (B, K, K)
        w = conv.effective_weight()[:, :, 0]  # (O, K)
        mean = mu @ w.T  # (B, 1, O)
        var = mx.sum((w @ sigma) * w, axis=-1)[:, None, :]  # (B, 1, O)
        scale = norm.weight * mx.rsqrt(var + norm.eps)
        # the shift rides in the GEMM as a constant-1 input column, so the GELU kernel reads
        # one contiguous array (a broadcast operand makes MLX's compiled CPU kernel strided)
        ones = mx.ones((*frames.shape[:2], 1), dtype=frames.dtype)
        weight = mx.concatenate([w.T * scale, norm.bias - mean * scale], axis=1)  # (B, K+1, O)
        return gelu_auto(mx.concatenate([frames, ones], axis=-1) @ weight)


class FeatureEncoder(nn.Module):
    """Raw waveform ``(B, T)`` -> conv features ``(B, F, conv_dim[-1])`` (``conv_layers.N``)."""

    def __init__(self, spec: Wav2Vec2Spec) -> None:
        super().__init__()
        dims = [1, *spec.conv_dim]
        self.conv_layers = []
        for i, (k, s) in enumerate(zip(spec.conv_kernel, spec.conv_stride)):
            norm = spec.feat_extract_norm if (spec.feat_extract_norm == "layer" or i == 0) else None
            self.conv_layers.append(ConvLayer(in_channels=dims[i], out_channels=dims[i + 1],
                                              kernel_size=k, stride=s, bias=spec.conv_bias,
                                              norm=norm, act=spec.feat_extract_activation))
        self._spec = spec
        self.receptive_field = spec.receptive_field

    def num_frames(self, num_samples: int) -> int:
        """Frames for ``num_samples`` input samples (0 if shorter than the receptive field)."""
        return self._spec.num_frames(num_samples)

    def __call__(self, wav: mx.array) -> mx.array:
        x = wav[..., None]
        for layer in self.conv_layers:
            x = layer(x)
        return x


class FeatureProjection(nn.Module):
    """``[layer_norm] -> projection``: ``(B, F, conv_dim[-1])`` -> ``(B, F, hidden_size)``."""

    def __init__(self, *, in_dim: int, out_dim: int, layer_norm: bool, eps: float) -> None:
        super().__init__()
        if layer_norm:
            self.layer_norm = LayerNorm(dim=in_dim, eps=eps)
        self.projection = nn.Linear(in_dim, out_dim)

    def __call__(self, x: mx.array) -> mx.array:
        if "layer_norm" in self:
            x = self.layer_norm(x)
        return self.projection(x)


class PositionalConvEmbedding(nn.Module):
    """Positions by a grouped convolution, ``(B, F, D)`` -> ``(B, F, D)`` (no residual)."""

    def __init__(self, *, dim: int, kernel_size: int, groups: int, batch_norm: bool,
                 act: str) -> None:
        super().__init__()
        if batch_norm:
            self.batch_norm = FrozenBatchNorm(channels=dim)
        self.conv = Conv1d(in_channels=dim, out_channels=dim, kernel_size=kernel_size,
                           groups=groups, bias=True, padding=kernel_size // 2)
        # upstream pads K//2 on both sides; an even kernel then yields F+1 frames: drop the last
        self._drop_last = 1 if kernel_size % 2 == 0 else 0
        self._act = activation(act)

    def __call__(self, x: mx.array) -> mx.array:
        if "batch_norm" in self:
            x = self.batch_norm(x)
        conv = self.conv
        if conv_kernels.uses_fast_path() and x.dtype == mx.float32:
            p = conv.kernel_size // 2
            xp = mx.pad(x, [(0, 0), (p, p - self._drop_last), (0, 0)])
            return self._act(grouped_conv1d(xp, conv.effective_weight(), groups=conv.groups,
                                            bias=conv.bias))
        y = conv(x)
        if self._drop_last:
            y = y[:, :y.shape[1] - self._drop_last]
        return self._act(y)


def grouped_conv1d(x: mx.array, w: mx.array, *, groups: int,
                   bias: mx.array | None = None) -> mx.array:
    """Unpadded grouped convolution, ``x (B, T, C)``, ``w (O, K, C/groups)`` -> ``(B, T-K+1, O)``.

    Same result as :func:`mlx_speech.layers.conv_kernels.conv1d`, whose grouped path builds a
    ``K``-fold im2col matrix (for this layer's ``K = 128`` that is 128 copies of the input,
    hundreds of MB at 10 s): here the input is moved to group-major order once and each tap is
    one batched GEMM over the groups, accumulated in place (``addmm``, beta = 1), faster on the
    CPU (docs/performance.md, "SSL encoders"). ``bias (O,)`` initialises the accumulator.
    """
    B, T, C = x.shape
    O, K, Ig = w.shape
    G, Og = groups, O // groups
    T_out = T - K + 1
    xg = mx.contiguous(x.reshape(B, T, G, Ig).transpose(0, 2, 1, 3))  # (B, G, T, Ig)
    wk = mx.contiguous(w.reshape(G, Og, K, Ig).transpose(2, 0, 3, 1))  # (K, G, Ig, Og)
    if bias is None:
        y = xg[:, :, :T_out] @ wk[0]
    else:
        y = mx.addmm(bias.reshape(G, 1, Og), xg[:, :, :T_out], wk[0])
    for k in range(1, K):
        y = mx.addmm(y, xg[:, :, k:k + T_out], wk[k])
    return y.transpose(0, 2, 1, 3).reshape(B, T_out, O)  # (B, G, T', Og) -> (B, T', O)

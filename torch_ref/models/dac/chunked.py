"""Exact streaming with look-ahead for non-causal DAC models, the torch mirror of
``mlx_speech/models/dac/chunked.py`` (same classes, rules and contracts; see there).

Every layer of the CNN runs as a stream of its own with the batch call's arithmetic: a
convolution starts with the batch call's left zeros, keeps its left context between calls and
emits an output once its window is complete; a transposed convolution carries its overlap tail;
a residual unit holds the skip path until its branch catches up; ``final`` appends the batch
call's right padding. Concatenated outputs equal ``encode`` / ``decode`` for any chunk sizes, and
the buffers hold only the context. Tensors are channels-first ``(B, C, T)``. Never imports mlx.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mlx_speech.models.dac import receptive
from mlx_speech.models.dac.receptive import (POINTWISE, ReceptiveField, ResidualGeometry,
                                             conv_geometry, up_geometry)
from torch_ref.layers.activations import Snake
from torch_ref.layers.conv import Conv1d, ConvTranspose1d
from torch_ref.models.dac.cnn import DecoderBlock, EncoderBlock, ResidualUnit


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    parts = [p for p in parts if p.shape[-1]] or parts[:1]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


class _Conv:
    """A zero-padded ``Conv1d`` as a stream."""

    def __init__(self, conv: Conv1d) -> None:
        self.layer, self.geometry = conv, conv_geometry(conv)
        self._buf: torch.Tensor | None = None  # padded inputs not yet consumed by a window

    def __call__(self, x: torch.Tensor, final: bool) -> torch.Tensor:
        g = self.geometry
        b, c = x.shape[0], x.shape[1]
        start = x.new_zeros(b, c, g.left) if self._buf is None else self._buf
        end = [x.new_zeros(b, c, g.right)] if final else []
        buf = _cat([start, x, *end])
        n = (buf.shape[-1] - g.span) // g.stride + 1 if buf.shape[-1] >= g.span else 0
        self._buf = buf[..., n * g.stride:]
        if n == 0:
            return x.new_zeros(b, self.layer.out_channels, 0)
        return self.layer._conv(buf[..., :(n - 1) * g.stride + g.span])


class _Up:
    """A trimmed ``ConvTranspose1d`` as a stream (overlap-add of each chunk's frames)."""

    def __init__(self, up: ConvTranspose1d) -> None:
        self.layer, self.geometry = up, up_geometry(up)
        self._tail: torch.Tensor | None = None  # last frame's overlap, missing later frames
        self._drop = self.geometry.trim_left  # samples still to drop at the start

    def __call__(self, x: torch.Tensor, final: bool) -> torch.Tensor:
        g = self.geometry
        keep = g.kernel - g.stride
        out = []
        if x.shape[-1]:
            y = self.layer._full(x)
            if self._tail is not None and keep:
                y = torch.cat([y[..., :keep] + self._tail, y[..., keep:]], dim=-1)
            n = x.shape[-1] * g.stride
            out.append(y[..., :n])
            self._tail = y[..., n:]
        if final and self._tail is not None:
            out.append(self._tail[..., :keep - g.trim_right])
            self._tail = None
        if not out:
            return x.new_zeros(x.shape[0], self.layer.out_channels, 0)
        y = _cat(out)
        if self._drop:
            drop = min(self._drop, y.shape[-1])
            y, self._drop = y[..., drop:], self._drop - drop
        return self.layer._add_bias(y)


class _Pointwise:
    geometry = POINTWISE

    def __init__(self, layer: nn.Module) -> None:
        self.layer = layer

    def __call__(self, x: torch.Tensor, final: bool) -> torch.Tensor:
        return self.layer(x) if x.shape[-1] else x


class _Residual:
    """``x + branch(x)``: the skip path waits for the branch's look-ahead."""

    def __init__(self, unit: ResidualUnit) -> None:
        self.branch = _stages(unit.block)
        self.geometry = ResidualGeometry(tuple(s.geometry for s in self.branch))
        self._skip: torch.Tensor | None = None  # inputs whose branch output is still due

    def __call__(self, x: torch.Tensor, final: bool) -> torch.Tensor:
        y = _run(self.branch, x, final)
        pending = x if self._skip is None else _cat([self._skip, x])
        n = y.shape[-1]
        self._skip = pending[..., n:]
        return pending[..., :n] + y


def _stages(layers: nn.ModuleList) -> list:
    out: list = []
    for layer in layers:
        if isinstance(layer, ResidualUnit):
            out.append(_Residual(layer))
        elif isinstance(layer, (EncoderBlock, DecoderBlock)):
            out.extend(_stages(layer.block))
        elif isinstance(layer, Conv1d):
            out.append(_Conv(layer))
        elif isinstance(layer, ConvTranspose1d):
            out.append(_Up(layer))
        elif isinstance(layer, (Snake, nn.Tanh)):
            out.append(_Pointwise(layer))
        else:
            raise TypeError(f"no streaming rule for {type(layer).__name__}")
    return out


def _run(stages: list, x: torch.Tensor, final: bool) -> torch.Tensor:
    for stage in stages:
        x = stage(x, final)
        if x.shape[-1] == 0 and not final:  # nothing new: no later stage can complete a step
            return x
    return x


def _held(stages: list) -> int:
    total = 0
    for stage in stages:
        for name in ("_buf", "_tail", "_skip"):
            buf = getattr(stage, name, None)
            total += 0 if buf is None else buf.shape[-1]
        total += _held(stage.branch) if isinstance(stage, _Residual) else 0
    return total


class Lookahead:
    """A stack of DAC CNN layers (``encoder.block`` or ``decoder.model``) as one stream:
    ``step(x (B, C, t), final)`` returns every output step whose inputs have all arrived."""

    def __init__(self, layers: nn.ModuleList) -> None:
        self._stages = _stages(layers)
        self.geometry = tuple(s.geometry for s in self._stages)

    def step(self, x: torch.Tensor, final: bool = False) -> torch.Tensor:
        return _run(self._stages, x, final)

    def held(self) -> int:
        """Time steps held in the buffers of every stage (each at its own rate): the context
        only, so it stays bounded however long the stream runs."""
        return _held(self._stages)


def check_streamable(model: Any, who: str) -> None:
    """ValueError for a non-causal model with transformer layers (no finite look-ahead)."""
    if not model.spec.causal and model.has_transformer:
        raise ValueError(f"DAC.{who}: this model is not causal and has transformer layers, which "
                         f"see the whole sequence (unbounded receptive field), so it cannot be "
                         f"streamed exactly; call encode() / decode() on the whole input")


def receptive_field(model: Any) -> ReceptiveField:
    """The exact receptive field of ``model``'s CNN, derived from its layers."""
    if model.has_transformer:
        raise ValueError("DAC.receptive_field covers the CNN only; this model has transformer "
                         "layers")
    return receptive.receptive_field(Lookahead(model.encoder.block).geometry,
                                     Lookahead(model.decoder.model).geometry,
                                     hop=model.frame_size, sample_rate=model.sample_rate)


class EncodeStream:
    """The non-causal ``DACModel.encode_step``: waveform chunks in, codes out."""

    def __init__(self, model: Any) -> None:
        check_streamable(model, "encode_step")
        self.model = model
        self.cnn = Lookahead(model.encoder.block)
        self.samples = 0

    def step(self, wav: torch.Tensor, num_codebooks: int, final: bool) -> torch.Tensor:
        self.samples += wav.shape[1]
        if final:
            pad = -self.samples % self.model.frame_size
            if pad:
                wav = nn.functional.pad(wav, (0, pad))
        x = self.cnn.step(wav[:, None, :], final)
        if x.shape[-1] == 0:
            return torch.zeros(wav.shape[0], num_codebooks, 0, dtype=torch.int32)
        return self.model.quantizer.encode(x.transpose(1, 2), num_levels=num_codebooks)


class DecodeStream:
    """The non-causal ``DACModel.decode_step``: codes chunks in, samples out (with the batch
    call's zero tail on ``final``, see the MLX twin)."""

    def __init__(self, model: Any) -> None:
        check_streamable(model, "decode_step")
        self.model = model
        self.cnn = Lookahead(model.decoder.model)
        self.frames = self.samples = 0

    def step(self, codes: torch.Tensor, final: bool) -> torch.Tensor:
        if codes.shape[2]:
            x = self.model.quantizer.decode(codes).transpose(1, 2)
        else:
            w = next(self.model.decoder.parameters())
            x = w.new_zeros(codes.shape[0], self.model.spec.latent_dim, 0)
        self.frames += codes.shape[2]
        y = self.cnn.step(x, final)[:, 0]
        self.samples += y.shape[1]
        short = self.frames * self.model.frame_size - self.samples if final else 0
        if short > 0:
            y = torch.nn.functional.pad(y, (0, short))
            self.samples += short
        return y

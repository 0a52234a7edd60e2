"""Exact streaming with look-ahead for non-causal DAC models (Descript's weights), MLX.

Descript's own chunked processing (``DAC.compress`` / ``decompress`` with ``win_duration``) runs
the model on overlapping windows, so its output depends on the window length
(descript-audio-codec issues #39 and #101). Here every layer of the CNN runs as a stream of its
own instead, with exactly the batch call's arithmetic:

- a convolution starts with the batch call's left zero padding, emits an output as soon as
  its whole window has arrived, keeps only the inputs the next window still needs (fewer than
  ``span``: its left context) between calls, and on ``final`` appends the batch call's right
  zeros;
- a transposed convolution keeps the overlap tail of its last frame (``kernel - stride``
  samples), drops its first ``trim_left`` samples once, and on ``final`` emits the tail less
  ``trim_right``;
- a residual unit holds the skip path's steps until its branch has caught up.

Each value is therefore computed from the same inputs as in the batch call and emitted as soon
as the last of them arrives, whatever the chunk sizes: the concatenated outputs equal
``encode`` / ``decode`` (codes identical, audio to float rounding), and the buffers hold the
context only, never the history. The look-ahead is the right receptive field
(:func:`receptive_field`): the encoder emits a frame's codes once ``encoder_right`` samples past
its end have arrived, the decoder a frame's audio once ``decoder_right`` later frames have.

Transformer layers without a causal mask see the whole sequence (an unbounded receptive field),
so a non-causal model with them is refused (:func:`check_streamable`).
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import mlx.nn as nn

from mlx_speech.layers.activations import Snake
from mlx_speech.layers.conv import Conv1d, ConvTranspose1d
from mlx_speech.models.dac.cnn import DecoderBlock, EncoderBlock, ResidualUnit
from mlx_speech.models.dac import receptive
from mlx_speech.models.dac.receptive import (POINTWISE, ReceptiveField, ResidualGeometry,
                                             conv_geometry, up_geometry)


def _cat(parts: list[mx.array]) -> mx.array:
    parts = [p for p in parts if p.shape[1]] or parts[:1]
    return parts[0] if len(parts) == 1 else mx.concatenate(parts, axis=1)


class _Conv:
    """A zero-padded ``Conv1d`` as a stream (channels-last ``(B, t, C)``)."""

    def __init__(self, conv: Conv1d) -> None:
        self.layer, self.geometry = conv, conv_geometry(conv)
        self._buf: mx.array | None = None  # padded inputs not yet consumed by a window

    def __call__(self, x: mx.array, final: bool) -> mx.array:
        g = self.geometry
        b, c = x.shape[0], x.shape[2]
        start = mx.zeros((b, g.left, c), dtype=x.dtype) if self._buf is None else self._buf
        end = [mx.zeros((b, g.right, c), dtype=x.dtype)] if final else []
        buf = _cat([start, x, *end])
        n = (buf.shape[1] - g.span) // g.stride + 1 if buf.shape[1] >= g.span else 0
        self._buf = buf[:, n * g.stride:]
        if n == 0:
            return mx.zeros((b, 0, self.layer.out_channels), dtype=x.dtype)
        return self.layer._conv(buf[:, :(n - 1) * g.stride + g.span])


class _Up:
    """A trimmed ``ConvTranspose1d`` as a stream (overlap-add of each chunk's frames)."""

    def __init__(self, up: ConvTranspose1d) -> None:
        self.layer, self.geometry = up, up_geometry(up)
        self._tail: mx.array | None = None  # last frame's overlap, still missing later frames
        self._drop = self.geometry.trim_left  # samples still to drop at the start

    def __call__(self, x: mx.array, final: bool) -> mx.array:
        g = self.geometry
        keep = g.kernel - g.stride
        out = []
        if x.shape[1]:
            y = self.layer._full(x)
            if self._tail is not None and keep:
                y = mx.concatenate([y[:, :keep] + self._tail, y[:, keep:]], axis=1)
            n = x.shape[1] * g.stride
            out.append(y[:, :n])
            self._tail = y[:, n:]
        if final and self._tail is not None:
            out.append(self._tail[:, :keep - g.trim_right])
            self._tail = None
        if not out:
            return mx.zeros((x.shape[0], 0, self.layer.out_channels), dtype=x.dtype)
        y = _cat(out)
        if self._drop:
            drop = min(self._drop, y.shape[1])
            y, self._drop = y[:, drop:], self._drop - drop
        return y + self.layer["bias"] if "bias" in self.layer else y


class _Pointwise:
    geometry = POINTWISE

    def __init__(self, layer: nn.Module) -> None:
        self.layer = layer

    def __call__(self, x: mx.array, final: bool) -> mx.array:
        return self.layer(x) if x.shape[1] else x


class _Residual:
    """``x + branch(x)``: the skip path waits for the branch's look-ahead."""

    def __init__(self, unit: ResidualUnit) -> None:
        self.branch = _stages(unit.block)
        self.geometry = ResidualGeometry(tuple(s.geometry for s in self.branch))
        self._skip: mx.array | None = None  # inputs whose branch output has not come out yet

    def __call__(self, x: mx.array, final: bool) -> mx.array:
        y = _run(self.branch, x, final)
        pending = x if self._skip is None else _cat([self._skip, x])
        n = y.shape[1]
        self._skip = pending[:, n:]
        return pending[:, :n] + y


def _stages(layers: list) -> list:
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


def _run(stages: list, x: mx.array, final: bool) -> mx.array:
    for stage in stages:
        x = stage(x, final)
        if x.shape[1] == 0 and not final:  # nothing new: no later stage can complete a step
            return x
    return x


def _held(stages: list) -> int:
    total = 0
    for stage in stages:
        for name in ("_buf", "_tail", "_skip"):
            buf = getattr(stage, name, None)
            total += 0 if buf is None else buf.shape[1]
        total += _held(stage.branch) if isinstance(stage, _Residual) else 0
    return total


class Lookahead:
    """A stack of DAC CNN layers (``encoder.block`` or ``decoder.model``) as one stream.

    ``step(x (B, t, C), final)`` feeds the next ``t >= 0`` steps and returns every output step
    whose inputs have all arrived; ``final=True`` closes the sequence (the batch call's right
    padding) and returns the rest. ``geometry`` is the per-layer plan for
    :mod:`~mlx_speech.models.dac.receptive`.
    """

    def __init__(self, layers: list) -> None:
        self._stages = _stages(layers)
        self.geometry = tuple(s.geometry for s in self._stages)

    def step(self, x: mx.array, final: bool = False) -> mx.array:
        return _run(self._stages, x, final)

    def held(self) -> int:
        """Time steps held in the buffers of every stage (each at its own rate): the context
        only, so it stays bounded however long the stream runs."""
        return _held(self._stages)


def check_streamable(model: Any, who: str) -> None:
    """ValueError unless ``model``'s encoder and decoder can stream exactly: a non-causal model
    with transformer layers attends to the whole sequence (no finite look-ahead)."""
    if not model.spec.causal and model.has_transformer:
        raise ValueError(f"DAC.{who}: this model is not causal and has transformer layers, which "
                         f"see the whole sequence (unbounded receptive field), so it cannot be "
                         f"streamed exactly; call encode() / decode() on the whole input")


def receptive_field(model: Any) -> ReceptiveField:
    """The exact receptive field of ``model``'s CNN (:class:`ReceptiveField`), derived from its
    layers. Refuses models with transformer layers (their context is not the CNN's)."""
    if model.has_transformer:
        raise ValueError("DAC.receptive_field covers the CNN only; this model has transformer "
                         "layers")
    return receptive.receptive_field(Lookahead(model.encoder.block).geometry,
                                     Lookahead(model.decoder.model).geometry,
                                     hop=model.frame_size, sample_rate=model.sample_rate)


class EncodeStream:
    """The non-causal ``DACModel.encode_step``: waveform chunks in, codes out (see the module
    docstring). ``final=True`` zero-pads the last partial hop like ``encode`` and flushes."""

    def __init__(self, model: Any) -> None:
        check_streamable(model, "encode_step")
        self.model = model
        self.cnn = Lookahead(model.encoder.block)
        self.samples = 0

    def step(self, wav: mx.array, num_codebooks: int, final: bool) -> mx.array:
        self.samples += wav.shape[1]
        if final:
            pad = -self.samples % self.model.frame_size
            if pad:
                wav = mx.pad(wav, [(0, 0), (0, pad)])
        x = self.cnn.step(wav[:, :, None], final)
        if x.shape[1] == 0:
            return mx.zeros((wav.shape[0], num_codebooks, 0), dtype=mx.int32)
        return self.model.quantizer.encode(x, num_levels=num_codebooks)


class DecodeStream:
    """The non-causal ``DACModel.decode_step``: codes chunks in, samples out; ``final=True``
    flushes the look-ahead (the last ``decoder_right`` frames' audio) and, for odd strides,
    appends the zeros the batch ``decode`` ends with (``cnn.py``), so the total is ``F * hop``."""

    def __init__(self, model: Any) -> None:
        check_streamable(model, "decode_step")
        self.model = model
        self.cnn = Lookahead(model.decoder.model)
        self.frames = self.samples = 0

    def step(self, codes: mx.array, final: bool) -> mx.array:
        if codes.shape[2]:
            x = self.model.quantizer.decode(codes)
        else:
            x = mx.zeros((codes.shape[0], 0, self.model.spec.latent_dim), dtype=mx.float32)
        self.frames += codes.shape[2]
        y = self.cnn.step(x, final)[:, :, 0]
        self.samples += y.shape[1]
        short = self.frames * self.model.frame_size - self.samples if final else 0
        if short > 0:
            y = mx.pad(y, [(0, 0), (0, short)])
            self.samples += short
        return y

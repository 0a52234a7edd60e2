"""Miipher-2 restoration model (MLX): frozen SSL backbone + parallel adapters + feature vocoder.

Mirrored by ``torch_ref.models.miipher2.model`` (same names, so the same keys). The module
tree::

    backbone.*       the SSL encoder truncated to ``spec.layer`` layers (frozen)
    adapters.N.*     one ParallelAdapter per backbone layer (norm, down, up)
    vocoder.*        HiFi-GAN generator from features (``n_mels`` = feature width)

The backbone is frozen at construction: ``trainable_parameters()`` holds the adapters and the
vocoder only, and its modules declare ``GRAPH_BUFFERS`` (a forward never replaces them), so a
trainer can compile a step that carries them. Which of the two trainable parts a run trains is
the training task's choice (it freezes the other).

Public calls, waveforms ``(B, S)`` float32 at 16 kHz in, ``(B, F * hop_length)`` at
``sample_rate`` out:

* ``features(wav, adapt=True)`` -> ``(B, F, D)``: hidden state ``layer`` (adapted or not);
* ``synthesize(feats)`` -> waveform: linear upsampling by ``feature_upsample``, then the vocoder;
* ``__call__(wav)`` = ``synthesize(features(wav))``: one window, no windowing (options pick
  the features alone, unadapted, or a number of frames: the training tasks call the model, so
  a DDP wrapper in torch_ref sees every forward);
* ``restore(wav, sample_rate=)``: any length, numpy in and out, on the window grid of
  ``windows.py``; ``restore_step(wav16, final=)`` streams the same windows (``reset_state()``
  starts a new stream).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mlx_speech.layers.adapter import ParallelAdapter
from mlx_speech.models.hifigan.model import HiFiGANGenerator
from mlx_speech.models.miipher2.spec import BACKBONE_RATE, Miipher2Spec
from mlx_speech.models.miipher2.windows import RestoreStream, WindowPlan, restore_windows
from mlx_speech.models.ssl.load import build_ssl_model
from mlx_speech.models.ssl.w2v_bert import W2VBertModel
from mlx_speech.utils.streaming import Streaming


def linear_upsample_plan(frames: int, factor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices and weights of linear interpolation by ``factor`` (half-pixel centres, edges
    clamped: torch's ``interpolate(mode="linear", align_corners=False)``)."""
    src = (np.arange(frames * factor, dtype=np.float64) + 0.5) / factor - 0.5
    src = np.clip(src, 0.0, frames - 1)
    i0 = np.floor(src).astype(np.int32)
    i1 = np.minimum(i0 + 1, frames - 1).astype(np.int32)
    return i0, i1, (src - i0).astype(np.float32)


def mark_static(module: nn.Module) -> nn.Module:
    """Freeze ``module`` and declare that no forward replaces its arrays (GRAPH_BUFFERS)."""
    module.freeze()
    for _, m in module.named_modules():
        m.GRAPH_BUFFERS = True
    return module


class Miipher2Model(Streaming, nn.Module):
    """See the module docstring; built as ``Miipher2Model(spec)``."""

    def __init__(self, spec: Miipher2Spec) -> None:
        super().__init__()
        spec.validate()
        self.spec = spec
        bb = spec.backbone_spec()
        self.backbone = mark_static(build_ssl_model(bb))
        self.adapters = [ParallelAdapter(dim=bb.hidden_size, bottleneck=spec.adapter_bottleneck,
                                         scale=spec.adapter_scale,
                                         activation=spec.adapter_activation,
                                         norm_eps=bb.layer_norm_eps)
                         for _ in range(spec.layer)]
        self.vocoder = HiFiGANGenerator(spec.vocoder_spec())
        self._plan = WindowPlan.from_spec(spec)
        self._stream: RestoreStream | None = None
        self._up: dict[int, tuple[mx.array, mx.array, mx.array]] = {}
        self._compiled: Any = None

    # --- facts ------------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.spec.sample_rate

    @property
    def input_rate(self) -> int:
        return BACKBONE_RATE

    @property
    def hop_length(self) -> int:
        return self.spec.hop_length

    def _reset_own_state(self) -> None:
        self._stream = None

    # --- the network ------------------------------------------------------------------------
    def backbone_inputs(self, wav: mx.array) -> dict[str, Any]:
        """16 kHz ``(B, S)`` -> the backbone's ``hidden_states`` inputs. w2v-BERT: fbank stacked
        in pairs; an odd last frame (padding-masked upstream, and seen by no other frame: the
        conformer convolution is causal) is dropped, so no mask is needed."""
        if wav.ndim != 2:
            raise ValueError(f"Miipher-2 expects waveforms (B, S), got shape {wav.shape}")
        bb = self.backbone
        if isinstance(bb, W2VBertModel):
            frames = bb._fbank.num_frames(wav.shape[1])
            if frames < bb.spec.stride:
                raise ValueError(f"Miipher-2: {wav.shape[1]} samples is too short for w2v-BERT's "
                                 f"front end")
            x = bb._fbank.normalize(bb._fbank.log_mel(wav))
            keep = frames - frames % bb.spec.stride
            x = x[:, :keep].reshape(wav.shape[0], keep // bb.spec.stride, -1)
            return {"input_features": x}
        if bb.spec.do_normalize:
            mean = mx.mean(wav, axis=1, keepdims=True)
            wav = (wav - mean) / mx.sqrt(mx.var(wav, axis=1, keepdims=True) + 1e-7)
        return {"wav": wav}

    def features(self, wav: mx.array, *, adapt: bool = True) -> mx.array:
        """Hidden state ``layer`` ``(B, F, D)`` of 16 kHz ``wav (B, S)``, adapted or not."""
        inputs = self.backbone_inputs(wav)
        states = self.backbone.hidden_states(**inputs, upto=self.spec.layer,
                                             adapters=self.adapters if adapt else None)
        return states[self.spec.layer]

    def upsample(self, feats: mx.array) -> mx.array:
        k = self.spec.feature_upsample
        if k == 1:
            return feats
        F = feats.shape[1]
        plan = self._up.get(F)
        if plan is None:
            i0, i1, w = linear_upsample_plan(F, k)
            plan = (mx.array(i0), mx.array(i1), mx.array(w)[None, :, None])
            self._up = {F: plan}
        i0, i1, w = plan
        return feats[:, i0] * (1.0 - w) + feats[:, i1] * w

    def synthesize(self, feats: mx.array) -> mx.array:
        """Features ``(B, F, D)`` -> waveform ``(B, F * hop_length)`` at ``sample_rate``."""
        return self.vocoder(self.upsample(feats))

    def __call__(self, wav: mx.array, *, adapt: bool = True, frames: int | None = None,
                 output: str = "audio") -> mx.array:
        """16 kHz ``wav (B, S)`` -> restored audio (``output="audio"``) or the features
        (``"features"``), of the first ``frames`` feature frames when given (a training crop)."""
        f = self.features(wav, adapt=adapt)
        if frames is not None:
            f = f[:, :frames]
        return f if output == "features" else self.synthesize(f)

    # --- any length ---------------------------------------------------------------------------
    def _run_window(self, x: np.ndarray) -> np.ndarray:
        """One window through the compiled forward (windows share one shape, so one graph
        serves them all; ``inputs=self.state`` makes it read the current weights)."""
        if self._compiled is None:
            self._compiled = mx.compile(lambda w: self(w), inputs=self.state)
        y = self._compiled(mx.array(x)[None])
        return np.array(y[0].astype(mx.float32))

    def restore(self, wav: Any, sample_rate: int = BACKBONE_RATE) -> np.ndarray:
        """Mono audio ``(S,)`` (numpy or MLX) at ``sample_rate`` -> restored float32 numpy
        ``(S * self.sample_rate / sample_rate,)`` (up to rounding) at ``self.sample_rate``."""
        from mlx_speech.models.miipher2.io import input_16k  # noqa: PLC0415

        return restore_windows(input_16k(wav, sample_rate), self._plan, self._run_window)

    def restore_step(self, wav16: np.ndarray, *, final: bool = False) -> np.ndarray:
        """Stream 16 kHz mono blocks; returns the restored output complete so far."""
        if self._stream is None or self._stream.done:
            self._stream = RestoreStream(self._plan, self._run_window)
        return self._stream.push(wav16, final=final)


def with_backbone(model: Miipher2Model, path: str | Path) -> Miipher2Model:
    """Load the transformers folder ``path`` into ``model.backbone`` in place (checked against
    the spec's backbone by :func:`~mlx_speech.models.miipher2.load.read_backbone`)."""
    from mlx_speech.models.miipher2.load import read_backbone  # noqa: PLC0415
    from mlx_speech.weights.core import flatten_tree  # noqa: PLC0415
    from mlx_speech.weights.mlx import load_arrays  # noqa: PLC0415
    from mlx_speech.weights.strict import check_state  # noqa: PLC0415

    arrays = read_backbone(path, model.spec, layout="mlx")
    check_state(arrays, flatten_tree(model.backbone.parameters()), where=str(path),
                what="the Miipher-2 backbone")
    load_arrays(model.backbone, arrays)
    mark_static(model.backbone)
    return model

"""Miipher-2 restoration model (torch mirror of ``mlx_speech.models.miipher2.model``; see its
docstring for the contract). The backbone is ``torch_ref.models.ssl``'s encoder truncated to
``spec.layer`` layers with ``requires_grad`` off; adapters and vocoder train.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mlx_speech.models.miipher2.spec import BACKBONE_RATE, Miipher2Spec
from mlx_speech.models.miipher2.windows import RestoreStream, WindowPlan, restore_windows
from mlx_speech.utils.streaming import Streaming
from torch_ref.layers.adapter import ParallelAdapter
from torch_ref.models.hifigan.model import HiFiGANGenerator
from torch_ref.models.ssl.load import build_ssl_model
from torch_ref.models.ssl.w2v_bert import W2VBertModel


def freeze(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class Miipher2Model(Streaming, nn.Module):
    """See ``mlx_speech.models.miipher2.model``; built as ``Miipher2Model(spec)``."""

    def __init__(self, spec: Miipher2Spec) -> None:
        super().__init__()
        spec.validate()
        self.spec = spec
        bb = spec.backbone_spec()
        self.backbone = freeze(build_ssl_model(bb))
        self.adapters = nn.ModuleList(
            ParallelAdapter(dim=bb.hidden_size, bottleneck=spec.adapter_bottleneck,
                            scale=spec.adapter_scale, activation=spec.adapter_activation,
                            norm_eps=bb.layer_norm_eps)
            for _ in range(spec.layer))
        self.vocoder = HiFiGANGenerator(spec.vocoder_spec())
        self._plan = WindowPlan.from_spec(spec)
        self._stream: RestoreStream | None = None

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

    def backbone_inputs(self, wav: torch.Tensor) -> dict[str, Any]:
        if wav.ndim != 2:
            raise ValueError(f"Miipher-2 expects waveforms (B, S), got shape {tuple(wav.shape)}")
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
            mean = wav.mean(dim=1, keepdim=True)
            wav = (wav - mean) / torch.sqrt(wav.var(dim=1, keepdim=True, unbiased=False) + 1e-7)
        return {"wav": wav}

    def features(self, wav: torch.Tensor, *, adapt: bool = True) -> torch.Tensor:
        inputs = self.backbone_inputs(wav)
        states = self.backbone.hidden_states(**inputs, upto=self.spec.layer,
                                             adapters=list(self.adapters) if adapt else None)
        return states[self.spec.layer]

    def upsample(self, feats: torch.Tensor) -> torch.Tensor:
        k = self.spec.feature_upsample
        if k == 1:
            return feats
        return nn.functional.interpolate(feats.transpose(1, 2), scale_factor=k, mode="linear",
                                         align_corners=False).transpose(1, 2)

    def synthesize(self, feats: torch.Tensor) -> torch.Tensor:
        return self.vocoder(self.upsample(feats))

    def forward(self, wav: torch.Tensor, *, adapt: bool = True, frames: int | None = None,
                output: str = "audio") -> torch.Tensor:
        f = self.features(wav, adapt=adapt)
        if frames is not None:
            f = f[:, :frames]
        return f if output == "features" else self.synthesize(f)

    def _run_window(self, x: np.ndarray) -> np.ndarray:
        p = next(self.vocoder.parameters())
        with torch.no_grad():
            y = self(torch.from_numpy(x)[None].to(p.device))
        return y[0].float().cpu().numpy()

    def restore(self, wav: Any, sample_rate: int = BACKBONE_RATE) -> np.ndarray:
        from mlx_speech.models.miipher2.io import input_16k  # noqa: PLC0415

        return restore_windows(input_16k(wav, sample_rate), self._plan, self._run_window)

    def restore_step(self, wav16: np.ndarray, *, final: bool = False) -> np.ndarray:
        if self._stream is None or self._stream.done:
            self._stream = RestoreStream(self._plan, self._run_window)
        return self._stream.push(wav16, final=final)


def with_backbone(model: Miipher2Model, path: str | Path) -> Miipher2Model:
    """Load the transformers folder ``path`` into ``model.backbone`` in place."""
    from mlx_speech.models.miipher2.load import read_backbone  # noqa: PLC0415
    from torch_ref.weights import load_torch_state  # noqa: PLC0415

    load_torch_state(model.backbone, read_backbone(path, model.spec, layout="torch"),
                     where=str(path))
    freeze(model.backbone)
    return model

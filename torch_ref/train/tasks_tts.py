"""The ``tts`` task in torch (twin of :mod:`mlx_speech.train.tasks_tts`): same inputs (the
neutral :class:`~mlx_speech.train.tts_data.TTSBase`), same losses, same voice folder.

Learned alignment works as on the MLX side: inside the loss, the aligner's log attention is
detached to numpy, monotonic alignment search and the phone averages run there
(:func:`~mlx_speech.train.tts_batch.mas_targets`), and the forward uses those durations.
The voice is written in torch layout (``acoustic.safetensors`` tagged ``fastspeech2``; the
loaders convert either layout), so this side never imports mlx. Features are extracted with
:func:`torch_ref.audio.spectral.log_mel`, the same maths as MLX's, so either back end reuses
the other's feature cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlx_speech.train.tts_batch import mas_targets
from mlx_speech.train.tts_data import TTSBase
from torch_ref.models.tts.fastspeech import FastSpeech2, alignment_matrix, sequence_mask
from torch_ref.train.tts_align import binarization_loss, forward_sum_loss, log_attention


def _first(w: Any) -> Any:
    return w[0] if isinstance(w, torch.Tensor) and w.ndim else w


def aligner_log_attention(model: FastSpeech2, b: dict[str, torch.Tensor]) -> torch.Tensor:
    """The aligner's ``(B, T, N)`` log attention (with the batch's prior) for the batch's rows."""
    ids = b["ids"].long()
    lang = b["language"].long() if "language" in b else torch.zeros(ids.shape[0], dtype=torch.long,
                                                                       device=ids.device)
    scores = model.alignment_scores(ids, b["lengths"], b["mel"], lang)
    return log_attention(scores, b["log_prior"], sequence_mask(b["lengths"], ids.shape[1]),
                         sequence_mask(b["mel_lengths"], b["mel"].shape[1]))


def tts_loss(model: FastSpeech2, b: dict[str, Any], log_att: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L1 mel + MSE of log(1 + duration), normalised pitch and energy (masked means); with
    ``log_prior`` in the batch also the forward-sum and binarization alignment losses (weights:
    scalars or per-row tensors whose first entry counts; ``log_att`` reused when given)."""
    B = b["ids"].shape[0]
    frames = b.get("frames", b["mel"].shape[1])
    zeros = torch.zeros(B, dtype=torch.long, device=b["ids"].device)
    out = model(b["ids"], b["lengths"], b["durations"], b["pitch"], b["energy"], zeros,
                b.get("language", zeros), frames=frames)
    fm = out["frame_mask"][..., None].float()
    pm = out["phone_mask"].float()
    mel_l = ((out["mel"] - b["mel"]).abs() * fm).sum() / (fm.sum() * b["mel"].shape[-1])
    n = pm.sum()
    dur_t = torch.log1p(b["durations"].float())
    dur_l = (((out["log_duration"] - dur_t) ** 2) * pm).sum() / n
    pitch_l = (((out["pitch"] - b["pitch"]) ** 2) * pm).sum() / n
    energy_l = (((out["energy"] - b["energy"]) ** 2) * pm).sum() / n
    total = mel_l + dur_l + 0.1 * pitch_l + 0.1 * energy_l
    parts = {"mel": mel_l, "duration": dur_l, "pitch": pitch_l, "energy": energy_l}
    if "log_prior" in b:
        la = aligner_log_attention(model, b) if log_att is None else log_att
        parts["align"] = forward_sum_loss(la, b["lengths"], b["mel_lengths"])
        parts["bin"] = binarization_loss(la, alignment_matrix(b["durations"], frames))
        total = total + _first(b["align_weight"]) * parts["align"] + _first(b["bin_weight"]) * parts["bin"]
    return total, parts


class TTSTask(TTSBase):
    """FastSpeech2 voice training in torch (module docstring)."""

    def log_mel(self, wav: np.ndarray, mel_spec: Any) -> np.ndarray:
        from torch_ref.audio.spectral import log_mel  # noqa: PLC0415

        with torch.no_grad():
            out = log_mel(torch.from_numpy(np.ascontiguousarray(wav[None], np.float32)),
                          **mel_spec.mel_kwargs(), floor=mel_spec.log_floor)[0]
        return out.numpy().astype(np.float32)

    def build(self) -> FastSpeech2:
        return FastSpeech2(self.arch)

    @staticmethod
    def _long(b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {**b, "ids": b["ids"].long(), "language": b["language"].long()}

    def log_attention(self, model: FastSpeech2, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """The aligner's ``(B, T, N)`` log attention (with the prior) for the step's rows."""
        return aligner_log_attention(model, b)

    def durations(self, model: FastSpeech2, b: dict[str, torch.Tensor], la: torch.Tensor | None = None
                  ) -> dict[str, np.ndarray]:
        """MAS durations and phone-level pitch / energy of the current aligner (numpy)."""
        la = self.log_attention(model, b) if la is None else la
        cpu = {k: b[k].detach().cpu().numpy() for k in ("lengths", "mel_lengths", "frame_log_f0", "frame_energy")}
        return mas_targets(la.detach().float().cpu().numpy(), cpu["lengths"], cpu["mel_lengths"],
                           cpu["frame_log_f0"], cpu["frame_energy"], self.stats)

    def loss(self, model: FastSpeech2, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        b = self._long(inputs)
        if self.spec.alignment == "corpus":
            return tts_loss(model, b)
        la = self.log_attention(model, b)
        dev = b["ids"].device
        b.update({k: torch.from_numpy(v).to(dev) for k, v in self.durations(model, b, la).items()})
        return tts_loss(model, b, la)

    def export(self, model: FastSpeech2) -> None:
        from torch_ref.weights import save_torch_model  # noqa: PLC0415

        self.voice_dir.mkdir(parents=True, exist_ok=True)
        save_torch_model(Path(self.voice_dir) / "acoustic.safetensors", model, model="fastspeech2",
                         spec=self.arch)
        self.write_voice_meta()

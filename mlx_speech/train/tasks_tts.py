"""The ``tts`` task (MLX): train a FastSpeech2-style voice on the common trainer.

The neutral half (:class:`~mlx_speech.train.tts_data.TTSBase`) reads the corpus, caches the
features and prepares each step's inputs; this half builds the model, computes the loss and
writes the voice folder (``voice.json`` + ``acoustic.safetensors``) after every checkpoint
(``export``; the trainer calls it on rank 0), so a run's newest voice always matches its newest
checkpoint and a resumed run keeps writing it.

Loss: L1 mel + MSE of log(1 + duration), normalised pitch and energy (masked means), and with
``alignment: learned`` the aligner's forward-sum loss plus the binarization loss.

Learned alignment inside the common loop: the durations are found *inside the loss*. It first
runs the aligner on the step's phones and mel (the model being trained, so the same weights
the old per-step MAS used), evaluates its log attention under ``stop_gradient`` to numpy,
runs monotonic alignment search and the phone averages of pitch / energy there
(:func:`~mlx_speech.train.tts_batch.mas_targets`, shared with torch_ref), and then the
teacher-forced forward with those durations; the forward-sum and binarization losses reuse
the same (differentiable) log attention. The alternative, a per-step hook the trainers call
before the gradient pass, would add a hook to both trainers and run the aligner twice; in the
loss, the durations of every micro-batch and CPU shard come from exactly the rows that
micro-batch trains on, and nothing in the common loop changes. The price: reading an array
back to numpy inside the gradient pass cannot be compiled, so ``alignment: learned`` needs
the recipe's ``compile: false`` (checked when the corpus is opened).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mlx_speech.errors import SpecError
from mlx_speech.models.tts.fastspeech import FastSpeech2, sequence_mask
from mlx_speech.train.tts_align import log_attention
from mlx_speech.train.tts_batch import mas_targets
from mlx_speech.train.tts_data import TTSBase


def _first(w: Any) -> Any:
    return w[0] if isinstance(w, mx.array) and w.ndim else w


def aligner_log_attention(model: Any, b: dict[str, Any]) -> mx.array:
    """The aligner's ``(B, T, N)`` log attention (with the batch's prior) for the batch's rows."""
    lang = b.get("language", mx.zeros((b["ids"].shape[0],), dtype=mx.int32))
    scores = model.alignment_scores(b["ids"], b["lengths"], b["mel"], lang)
    return log_attention(scores, b["log_prior"], sequence_mask(b["lengths"], b["ids"].shape[1]),
                         sequence_mask(b["mel_lengths"], b["mel"].shape[1]))


def tts_loss(model: Any, b: dict[str, Any], log_att: Any = None) -> tuple[Any, dict[str, Any]]:
    """L1 mel + MSE of log(1 + duration), normalised pitch and energy (masked means); with
    ``log_prior`` in the batch (learned alignment) also the aligner's forward-sum loss and the
    binarization loss towards the batch's MAS durations, weighted by ``align_weight`` / ``bin_weight``
    (scalars, or per-row arrays whose first entry counts). ``log_att``: the aligner's log
    attention when the caller has it already (it is computed here otherwise)."""
    B = b["ids"].shape[0]
    frames = b.get("frames", b["mel"].shape[1])
    zeros = mx.zeros((B,), dtype=mx.int32)
    out = model(b["ids"], b["lengths"], b["durations"], b["pitch"], b["energy"], zeros,
                b.get("language", zeros), frames=frames)
    fm = out["frame_mask"][..., None].astype(mx.float32)
    pm = out["phone_mask"].astype(mx.float32)
    mel_l = mx.sum(mx.abs(out["mel"] - b["mel"]) * fm) / (mx.sum(fm) * b["mel"].shape[-1])
    n = mx.sum(pm)
    dur_t = mx.log1p(b["durations"].astype(mx.float32))
    dur_l = mx.sum((out["log_duration"] - dur_t) ** 2 * pm) / n
    pitch_l = mx.sum((out["pitch"] - b["pitch"]) ** 2 * pm) / n
    energy_l = mx.sum((out["energy"] - b["energy"]) ** 2 * pm) / n
    total = mel_l + dur_l + 0.1 * pitch_l + 0.1 * energy_l
    parts = {"mel": mel_l, "duration": dur_l, "pitch": pitch_l, "energy": energy_l}
    if "log_prior" in b:
        from mlx_speech.models.tts.fastspeech import alignment_matrix  # noqa: PLC0415
        from mlx_speech.train.tts_align import binarization_loss, forward_sum_loss  # noqa: PLC0415

        la = aligner_log_attention(model, b) if log_att is None else log_att
        parts["align"] = forward_sum_loss(la, b["lengths"], b["mel_lengths"])
        parts["bin"] = binarization_loss(la, alignment_matrix(b["durations"], frames))
        total = total + _first(b["align_weight"]) * parts["align"] + _first(b["bin_weight"]) * parts["bin"]
    return total, parts


def mlx_log_attention_fn(model: Any, language: int) -> Any:
    """``nb -> (B, T, N)`` numpy log attention of an MLX model (for :func:`learned_batch`)."""
    def fn(nb: dict[str, np.ndarray]) -> np.ndarray:
        b = {k: mx.array(nb[k]) for k in ("ids", "lengths", "mel", "mel_lengths", "log_prior")}
        b["language"] = mx.full((b["ids"].shape[0],), language, dtype=mx.int32)
        return np.array(mx.stop_gradient(aligner_log_attention(model, b)))

    return fn


def write_voice(voice_dir: Path, model: Any, spec: Any) -> None:
    """The MLX model as ``voice_dir/acoustic.safetensors`` (tagged ``fastspeech2``)."""
    from mlx_speech.weights.mlx import save_mlx_model  # noqa: PLC0415

    voice_dir.mkdir(parents=True, exist_ok=True)
    save_mlx_model(voice_dir / "acoustic.safetensors", model, model="fastspeech2", spec=spec)


def numpy_log_mel(wav: np.ndarray, mel_spec: Any) -> np.ndarray:
    """``(T, n_mels)`` float32 log-mel of one utterance by MLX's front end (the task's features)."""
    from mlx_speech.audio.spectral import log_mel  # noqa: PLC0415

    out = log_mel(mx.array(wav[None]), **mel_spec.mel_kwargs(), floor=mel_spec.log_floor)[0]
    return np.array(out).astype(np.float32)


class TTSTask(TTSBase):
    """FastSpeech2 voice training (module docstring)."""

    def open_corpus(self, spec: Any, out_dir: Path, *, progress: bool = False) -> Any:
        if self.spec.alignment == "learned" and spec.compile:
            raise SpecError("model.alignment: learned runs monotonic alignment search inside the "
                            "loss, which cannot be compiled: set compile: false")
        return super().open_corpus(spec, out_dir, progress=progress)

    def log_mel(self, wav: np.ndarray, mel_spec: Any) -> np.ndarray:
        return numpy_log_mel(wav, mel_spec)

    def build(self) -> nn.Module:
        model = FastSpeech2(self.arch)
        mx.eval(model.parameters())
        return model

    def log_attention(self, model: nn.Module, b: dict[str, mx.array]) -> mx.array:
        """The aligner's ``(B, T, N)`` log attention (with the prior) for the step's rows."""
        return aligner_log_attention(model, b)

    def durations(self, model: nn.Module, b: dict[str, mx.array], la: mx.array | None = None
                  ) -> dict[str, np.ndarray]:
        """MAS durations and phone-level pitch / energy of the current aligner (numpy)."""
        la = self.log_attention(model, b) if la is None else la
        return mas_targets(np.array(mx.stop_gradient(la)), np.array(b["lengths"]), np.array(b["mel_lengths"]),
                           np.array(b["frame_log_f0"]), np.array(b["frame_energy"]), self.stats)

    def loss(self, model: nn.Module, inputs: dict[str, mx.array]) -> tuple[mx.array, dict[str, mx.array]]:
        if self.spec.alignment == "corpus":
            return tts_loss(model, inputs)
        la = self.log_attention(model, inputs)
        b = {**inputs, **{k: mx.array(v) for k, v in self.durations(model, inputs, la).items()}}
        return tts_loss(model, b, la)

    def export(self, model: nn.Module) -> None:
        write_voice(self.voice_dir, model, self.arch)
        self.write_voice_meta()

"""TTS acoustic-model training loop in torch (mirror of the MLX loop in
``mlx_speech/train/tasks_tts.py``): same batches, same losses, same schedule. Faster than MLX
on x86 CPUs and the path for CUDA; the result is converted to MLX by the caller.
Imports no mlx (features come precomputed from the neutral half)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlx_speech.train.tts_batch import lr_schedule, step_batch
from torch_ref.models.tts.fastspeech import FastSpeech2, alignment_matrix, sequence_mask
from torch_ref.train.tts_align import binarization_loss, forward_sum_loss, log_attention


def tts_loss(model: FastSpeech2, b: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L1 mel + MSE of log(1 + duration), normalised pitch and energy (masked means); with
    ``log_prior`` in the batch also the forward-sum and binarization alignment losses."""
    B = b["ids"].shape[0]
    zeros = torch.zeros(B, dtype=torch.long, device=b["ids"].device)
    out = model(b["ids"], b["lengths"], b["durations"], b["pitch"], b["energy"], zeros,
                b.get("language", zeros), frames=b["frames"])
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
        scores = model.alignment_scores(b["ids"], b["lengths"], b["mel"], b.get("language", zeros))
        la = log_attention(scores, b["log_prior"], out["phone_mask"], sequence_mask(b["mel_lengths"], b["frames"]))
        parts["align"] = forward_sum_loss(la, b["lengths"], b["mel_lengths"])
        parts["bin"] = binarization_loss(la, alignment_matrix(b["durations"], b["frames"]))
        total = total + b["align_weight"] * parts["align"] + b["bin_weight"] * parts["bin"]
    return total, parts


def torch_log_attention_fn(model: FastSpeech2, language: int) -> Any:
    """``nb -> (B, T, N)`` numpy log attention of a torch_ref model (for ``learned_batch``)."""
    def fn(nb: dict[str, np.ndarray]) -> np.ndarray:
        dev = next(model.parameters()).device
        ids = torch.from_numpy(nb["ids"]).long().to(dev)
        lengths = torch.from_numpy(nb["lengths"]).to(dev)
        lang = torch.full((ids.shape[0],), language, dtype=torch.long, device=dev)
        with torch.no_grad():
            scores = model.alignment_scores(ids, lengths, torch.from_numpy(nb["mel"]).to(dev), lang)
            mel_mask = sequence_mask(torch.from_numpy(nb["mel_lengths"]).to(dev), nb["mel"].shape[1])
            la = log_attention(scores, torch.from_numpy(nb["log_prior"]).to(dev), sequence_mask(lengths, ids.shape[1]),
                               mel_mask)
        return la.cpu().numpy()

    return fn


def to_torch_batch(nb: dict[str, Any], language: int, dev: torch.device) -> dict[str, Any]:
    """numpy step batch -> tensors on ``dev`` (ids long, ``language`` added)."""
    b = {k: (torch.from_numpy(v).to(dev) if isinstance(v, np.ndarray) else v) for k, v in nb.items()}
    b["ids"] = b["ids"].long()
    b["language"] = torch.full((len(nb["ids"]),), language, dtype=torch.long, device=dev)
    return b


def train_acoustic(feats: dict[str, Any], stats: dict[str, float], spec: Any, recipe: Any, *, steps: int,
                   language: int, log_path: Path, progress: bool = True, device: str | None = None,
                   on_save: Any = None) -> FastSpeech2:
    """Train a torch_ref FastSpeech2 on precomputed features; returns the module (CPU).

    ``on_save(model)`` is called every ``recipe.save_every`` steps (e.g. to write a voice)."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    model = FastSpeech2(spec).to(dev)
    align_fn = torch_log_attention_fn(model, language) if recipe.alignment == "learned" else None
    order = np.argsort([len(m) for m in feats["mel"]])
    batches = [list(order[i:i + recipe.batch_size]) for i in range(0, len(order), recipe.batch_size)]
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, betas=(0.9, 0.98), weight_decay=0.01)
    bar = None
    if progress:
        from tqdm import tqdm  # noqa: PLC0415
        bar = tqdm(total=steps, desc="train tts (torch)", unit="step")
    t0 = time.perf_counter()
    with open(log_path, "a", encoding="utf-8") as log:
        for step in range(steps):
            rows = batches[int(rng.integers(len(batches)))]
            b = to_torch_batch(step_batch(feats, rows, stats, recipe, step, align_fn), language, dev)
            loss, parts = tts_loss(model, b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            for g in opt.param_groups:
                g["lr"] = lr_schedule(step, recipe, steps)
            opt.step()
            if bar is not None:
                bar.update(1)
            if step % recipe.log_every == 0 or step == steps - 1:
                rec = {"step": step, "loss": float(loss.detach()), **{k: float(v.detach()) for k, v in parts.items()},
                       "lr": lr_schedule(step, recipe, steps), "elapsed_s": round(time.perf_counter() - t0, 1),
                       "backend": "torch"}
                log.write(json.dumps(rec) + "\n")
                log.flush()
                if bar is not None:
                    bar.set_postfix(loss=f"{rec['loss']:.3f}", mel=f"{rec['mel']:.3f}")
            if on_save is not None and (step + 1) % recipe.save_every == 0 and step + 1 < steps:
                on_save(model.eval())
                model.train()
    if bar is not None:
        bar.close()
    return model.cpu().eval()

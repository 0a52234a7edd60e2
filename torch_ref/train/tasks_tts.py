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

from mlx_speech.train.tasks_tts import lr_schedule, make_batch
from torch_ref.models.fastspeech import FastSpeech2


def tts_loss(model: FastSpeech2, b: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L1 mel + MSE of log(1 + duration), normalised pitch and energy (masked means)."""
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
    return total, {"mel": mel_l, "duration": dur_l, "pitch": pitch_l, "energy": energy_l}


def train_acoustic(feats: dict[str, Any], stats: dict[str, float], spec: Any, recipe: Any, *, steps: int,
                   language: int, log_path: Path, progress: bool = True, device: str | None = None,
                   on_save: Any = None) -> FastSpeech2:
    """Train a torch_ref FastSpeech2 on precomputed features; returns the module (CPU).

    ``on_save(model)`` is called every ``recipe.save_every`` steps (e.g. to write a voice)."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    model = FastSpeech2.from_spec(spec).to(dev)
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
            nb = make_batch(feats, rows, **stats)
            b = {k: (v if k == "frames" else torch.from_numpy(v).to(dev)) for k, v in nb.items()}
            b["ids"] = b["ids"].long()
            b["language"] = torch.full((len(rows),), language, dtype=torch.long, device=dev)
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

"""Evaluate a 9-codebook Mimi on a held-out manifest (``mlx-speech eval mimi9``).

Per utterance, with the whole file cut to a whole number of frames at the model's rate:

* codebook usage per head over the whole manifest: the share of a head's codes used at least
  once and the perplexity ``exp(entropy)`` of its code distribution (``1 .. codebook size``);
* distillation cosine similarity (with teachers given): head 0's ``proj_qwen(q_c)`` vs the
  Qwen targets on the frames a token covers, and ``proj_wavlm(q_c + q_p)`` vs the WavLM
  targets on every frame, ``q_c`` / ``q_p`` decoded from the 9-head codes (the same targets
  and alignment as training: :mod:`mlx_speech.train.mimi9_data`); mean over frames;
* reconstruction of ``decode(encode(wav))``: SNR (dB), log-mel distance (n_fft 1024, hop
  256, 80 mels) at the model's rate, and wide-band PESQ on both signals resampled to 16 kHz
  (an utterance PESQ cannot score, e.g. a silent output, is counted in ``pesq_failed``).

``weights``: a Mimi9 model file (or its directory with ``model.safetensors``), e.g. the output
of ``mlx-speech convert mimi-surgery``, or an MLX training checkpoint of the ``mimi9`` task.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

import mlx.core as mx
import numpy as np

from mlx_speech.audio.io import load as load_audio
from mlx_speech.audio.io import resample
from mlx_speech.audio.metrics import mel_distance, pesq_score, snr
from mlx_speech.data.manifest import read_manifest
from mlx_speech.errors import AudioError, CheckpointError
from mlx_speech.quantize.codes import usage_stats
from mlx_speech.models.mimi9.train_spec import Mimi9TrainSpec, QwenTeacherSpec, WavLMTeacherSpec
from mlx_speech.teachers.durations import frame_to_token
from mlx_speech.train.mimi9_data import FrameGrid, weights_file

ROLES = ["content", "prosody"] + ["acoustic"] * 7


def load_eval_model(weights: str | Path) -> Any:
    """An MLX ``Mimi9Model`` (eval mode) from a model file / directory or a training checkpoint."""
    from mlx_speech.weights.checkpoint import load_checkpoint, read_metadata  # noqa: PLC0415
    from mlx_speech.weights.mlx import load_mlx_model  # noqa: PLC0415

    path = weights_file(str(weights))
    meta = read_metadata(path)
    if meta.get("model") != "mimi9":
        raise CheckpointError(f"{path}: not a mimi9 model or training checkpoint "
                              f"(tag model={meta.get('model')!r})")
    if "train_state" not in meta:
        model, _ = load_mlx_model(path)
    else:
        from mlx_speech.models.mimi9.model import build_mimi9  # noqa: PLC0415
        from mlx_speech.train.checkpoint import strip_prefix  # noqa: PLC0415
        from mlx_speech.train.mimi9_data import model_spec  # noqa: PLC0415

        arrays, meta = load_checkpoint(path)
        if meta["format"] != "mlx":
            raise CheckpointError(f"{path}: a {meta['format']} training checkpoint; evaluate an "
                                  "MLX one or a converted model file")
        recipe = json.loads(meta["spec"])
        task = Mimi9TrainSpec._build(recipe.get("model", {}), strict=True, where=f"{path} model")
        model = build_mimi9(model_spec(task))
        weights_ = strip_prefix(arrays, "model")
        if task.loss.gan:  # a GAN run saves {generator, discriminator}: keep the codec
            weights_ = strip_prefix(weights_, "generator")
        try:
            model.load_weights([(k, mx.array(v)) for k, v in weights_.items()], strict=True)
        except ValueError as exc:
            raise CheckpointError(f"{path}: weights do not fit the recipe's model ({exc})") from None
    model.eval()
    return model


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of ``(N, H)`` arrays."""
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return num / np.maximum(den, 1e-12)


def evaluate(weights: str | Path, manifest: str | Path, *, qwen: QwenTeacherSpec | None = None,
             wavlm: WavLMTeacherSpec | None = None, max_items: int | None = None) -> dict[str, Any]:
    """Metrics of the model at ``weights`` on ``manifest`` (module docstring). Distillation
    similarity needs both teachers; without them it is reported as None."""
    model = load_eval_model(weights)
    grid = FrameGrid(sample_rate=int(model.sample_rate), frame_rate=float(model.frame_rate))
    fs = grid.frame_size
    items = read_manifest(manifest)[:max_items]
    if not items:
        raise AudioError(f"{manifest}: no utterances")
    teachers = None
    if (qwen is None) != (wavlm is None):
        raise CheckpointError("distillation similarity needs both teachers (--qwen and --wavlm)")
    if qwen is not None:
        from mlx_speech.train.mimi9_targets import TeacherTargets  # noqa: PLC0415

        teachers = TeacherTargets(qwen, wavlm, grid)
    q = model.quantizer
    counts = [np.zeros(s, dtype=np.float64) for s in model.codebook_sizes]
    rec: dict[str, list[float]] = {"snr_db": [], "mel_distance": [], "pesq_wb": []}
    cos_q, cos_w = [], []
    pesq_failed, frames_total = 0, 0
    for item in items:
        wav, _ = load_audio(item.path, sr=grid.sample_rate, mono=True)
        F = len(wav) // fs
        if F < 1:
            continue
        wav = wav[:F * fs]
        codes = model.encode(mx.array(wav)[None])
        out = np.array(model.decode(codes))[0]
        c = np.array(codes)[0]
        for k in range(c.shape[0]):
            counts[k] += np.bincount(c[k], minlength=len(counts[k]))
        frames_total += F
        rec["snr_db"].append(float(snr(wav, out)))
        rec["mel_distance"].append(float(mel_distance(wav, out, sample_rate=grid.sample_rate)))
        try:
            rec["pesq_wb"].append(pesq_score(resample(wav, grid.sample_rate, 16000),
                                             resample(out, grid.sample_rate, 16000), 16000, mode="wb"))
        except AudioError:
            pesq_failed += 1
        if teachers is not None:
            t = teachers.compute(item)
            q_c = q.content.decode(codes[:, :1])
            q_p = q.prosody.decode(codes[:, 1:2])
            pred_q = np.array(q.proj_qwen(q_c))[0]
            pred_w = np.array(q.proj_wavlm(q_c + q_p))[0]
            tok = frame_to_token(t["qwen_durations"])[:F]
            cos_q.append(_cos(pred_q[:len(tok)], t["qwen"][tok]))
            cos_w.append(_cos(pred_w, t["wavlm"][:F]))
    heads = []
    for k, cnt in enumerate(counts):
        st = usage_stats(mx.array(cnt.astype(np.float32)))
        heads.append({"head": k, "role": ROLES[k] if k < len(ROLES) else "acoustic",
                      "codebook_size": len(cnt), "usage": round(float(st["usage"]), 4),
                      "perplexity": round(float(st["perplexity"]), 2)})

    def mean(v: list[float]) -> float | None:
        return round(float(np.mean(v)), 4) if v else None

    distill = None
    if teachers is not None:
        distill = {"qwen_cosine": mean(list(np.concatenate(cos_q))) if cos_q else None,
                   "wavlm_cosine": mean(list(np.concatenate(cos_w))) if cos_w else None}
    return {"weights": str(weights), "manifest": str(manifest), "items": len(items),
            "frames": frames_total, "frame_rate": grid.frame_rate, "heads": heads,
            "distill": distill,
            "recon": {k: mean(v) for k, v in rec.items()} | {"pesq_failed": pesq_failed}}


def format_table(report: dict[str, Any]) -> str:
    """A plain-text table of :func:`evaluate`'s report."""
    lines = [f"{report['items']} utterances, {report['frames']} frames at {report['frame_rate']} Hz",
             f"{'head':>4}  {'role':<8}  {'codes':>5}  {'usage':>6}  {'perplexity':>10}"]
    for h in report["heads"]:
        lines.append(f"{h['head']:>4}  {h['role']:<8}  {h['codebook_size']:>5}  "
                     f"{h['usage']:>6.3f}  {h['perplexity']:>10.2f}")
    d = report["distill"]
    if d is None:
        lines.append("distillation cosine: n/a (pass --qwen and --wavlm)")
    else:
        lines.append(f"distillation cosine: qwen {_fmt(d['qwen_cosine'])}, wavlm {_fmt(d['wavlm_cosine'])}")
    r = report["recon"]
    lines.append(f"reconstruction: SNR {_fmt(r['snr_db'])} dB, mel distance {_fmt(r['mel_distance'])}, "
                 f"PESQ-WB {_fmt(r['pesq_wb'])} ({r['pesq_failed']} not scorable)")
    return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


# --- `mlx-speech eval mimi9` (registered by the mimi9 family) -----------------------------
@click.command("mimi9")
@click.option("--weights", required=True, type=click.Path(path_type=Path),
              help="Mimi9 model file / directory (convert mimi-surgery) or an MLX mimi9 training checkpoint.")
@click.option("--manifest", required=True, type=click.Path(path_type=Path),
              help="Held-out JSONL manifest (word timings used for the Qwen alignment when present).")
@click.option("--qwen", type=click.Path(path_type=Path), default=None,
              help="Local Qwen directory (mlx-lm / HF) for the distillation similarity.")
@click.option("--wavlm", type=click.Path(path_type=Path), default=None,
              help="Local transformers WavLM directory for the distillation similarity.")
@click.option("--qwen-layer", type=int, default=-1, show_default=True, help="Qwen hidden state index.")
@click.option("--wavlm-layer", type=int, default=-1, show_default=True, help="WavLM hidden state index.")
@click.option("--max-items", type=click.IntRange(1), default=None, help="Evaluate the first N items.")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None,
              help="Also write the report as JSON to this file.")
def command(weights: Path, manifest: Path, qwen: Path | None, wavlm: Path | None,
               qwen_layer: int, wavlm_layer: int, max_items: int | None, json_out: Path | None) -> None:
    """Per-head codebook usage, distillation cosine similarity and reconstruction (SNR, mel
    distance, PESQ) of a 9-codebook Mimi."""
    from mlx_speech.models.mimi9.train_spec import QwenTeacherSpec, WavLMTeacherSpec  # noqa: PLC0415
    from mlx_speech.utils.atomic import atomic_write_text  # noqa: PLC0415

    report = evaluate(weights, manifest, max_items=max_items,
                      qwen=None if qwen is None else QwenTeacherSpec(path=str(qwen), layer=qwen_layer),
                      wavlm=None if wavlm is None else WavLMTeacherSpec(path=str(wavlm), layer=wavlm_layer))
    click.echo(format_table(report))
    text = json.dumps(report, indent=2)
    click.echo(text)
    if json_out is not None:
        atomic_write_text(json_out, text + "\n")

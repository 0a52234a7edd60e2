"""Codec evaluation shared by the codec families' ``mlx-speech eval`` commands (``dac``,
``bsq_vit``): reconstruction metrics, code statistics and bitrate on a held-out manifest.

Per utterance, ``decode(encode(wav))`` at the model's rate (trimmed to the input):

* SNR and SI-SDR (dB; SI-SDR is SI-SNR), log-mel distance (n_fft 1024, hop 256, 80 mels),
  wide-band PESQ (at 16 kHz, resampled when the model's rate differs) and STOI; an utterance
  PESQ or STOI cannot score (e.g. a silent output) is counted in ``pesq_failed``;
* over the whole manifest, per codebook: the share of its codes used at least once, the
  entropy of its code distribution (bits) and the perplexity ``2^entropy``;
* the bitrate of the codes (``sum log2(size)`` over the codebooks used, times the frame rate).

A family's command loads its model (a model file, or the codec inside one of its training
checkpoints: :func:`codec_from_checkpoint`) and hands it to :func:`evaluate_codec`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from mlx_speech.errors import CheckpointError


def training_recipe(path: Path) -> dict[str, Any] | None:
    """The recipe of an MLX training checkpoint at ``path``; None for any other file."""
    from mlx_speech.weights.checkpoint import read_metadata  # noqa: PLC0415

    meta = read_metadata(path) if path.is_file() and path.suffix == ".safetensors" else {}
    if "train_state" not in meta:
        return None
    if meta["format"] != "mlx":
        raise CheckpointError(f"{path}: a {meta['format']} training checkpoint; evaluate an MLX "
                              "one or the model file its run exported")
    return json.loads(meta["spec"])


def codec_from_checkpoint(path: Path, task: str, build: Callable[[dict[str, Any]], Any],
                          prefix: tuple[str, ...]) -> Any:
    """The codec inside an MLX training checkpoint of ``task``: ``build(recipe's model:)``
    gives the module, loaded strictly from the arrays under ``prefix`` (e.g. ``("model",
    "generator")``)."""
    from mlx_speech.train.checkpoint import strip_prefix  # noqa: PLC0415
    from mlx_speech.weights.checkpoint import load_checkpoint  # noqa: PLC0415

    recipe = training_recipe(path)
    if recipe is None or recipe.get("task") != task:
        what = "not a training checkpoint" if recipe is None else f"a {recipe.get('task')!r} training checkpoint"
        raise CheckpointError(f"{path}: {what}, not {task}")
    arrays, _ = load_checkpoint(path)
    for p in prefix:
        arrays = strip_prefix(arrays, p)
    model = build(recipe.get("model", {}))
    try:
        model.load_weights([(k, mx.array(v)) for k, v in arrays.items()], strict=True)
    except ValueError as exc:
        raise CheckpointError(f"{path}: weights do not fit the recipe's {task} model ({exc})") from None
    model.eval()
    return model


class Recon:
    """Reconstruction metrics of (reference, output) pairs at ``sample_rate``, averaged by
    :meth:`summary`: SNR, SI-SDR, mel distance, PESQ-WB and STOI (an utterance PESQ or STOI
    cannot score is counted in ``pesq_failed``)."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.values: dict[str, list[float]] = {"snr_db": [], "si_sdr_db": [], "mel_distance": [],
                                               "pesq_wb": [], "stoi": []}
        self.pesq_failed = 0

    def add(self, ref: np.ndarray, out: np.ndarray) -> None:
        from mlx_speech.audio.metrics import (mel_distance, pesq_score, si_sdr, snr,  # noqa: PLC0415
                                              stoi_score)
        from mlx_speech.errors import UserError  # noqa: PLC0415

        sr, v = self.sample_rate, self.values
        v["snr_db"].append(float(snr(ref, out)))
        v["si_sdr_db"].append(float(si_sdr(ref, out)))
        v["mel_distance"].append(float(mel_distance(ref, out, sample_rate=sr)))
        try:
            pesq, stoi = float(pesq_score(ref, out, sr, mode="wb")), float(stoi_score(ref, out, sr))
        except UserError:
            self.pesq_failed += 1
        else:
            v["pesq_wb"].append(pesq)
            v["stoi"].append(stoi)

    def summary(self) -> dict[str, Any]:
        return ({name: (round(float(np.mean(v)), 4) if v else None) for name, v in self.values.items()}
                | {"pesq_failed": self.pesq_failed})


def evaluate_codec(model: Any, manifest: str | Path, *, num_codebooks: int | None = None,
                   max_items: int | None = None,
                   per_item: Callable[[np.ndarray], None] | None = None) -> dict[str, Any]:
    """The report (see the module docstring) of the MLX codec ``model`` on ``manifest``;
    ``per_item(wav)`` sees each utterance as read, for a family's own measures."""
    from mlx_speech.audio.io import load as load_audio  # noqa: PLC0415
    from mlx_speech.data.manifest import read_manifest  # noqa: PLC0415

    items = read_manifest(manifest)[:max_items]
    sr = model.sample_rate
    k = model.num_codebooks if num_codebooks is None else num_codebooks
    counts = [np.zeros(s, dtype=np.int64) for s in model.codebook_sizes[:k]]
    rec = Recon(sr)
    frames = 0
    for item in items:
        wav, _ = load_audio(item.path, sr=sr, mono=True)
        codes = np.array(model.encode(mx.array(wav[None]), num_codebooks=k))
        rec.add(wav, np.array(model.decode(mx.array(codes)))[0, :len(wav)])
        frames += codes.shape[2]
        for lv in range(k):
            counts[lv] += np.bincount(codes[0, lv], minlength=len(counts[lv]))
        if per_item is not None:
            per_item(wav)
    levels = []
    for lv, cnt in enumerate(counts):
        p = cnt / max(cnt.sum(), 1)
        ent = float(-(p[p > 0] * np.log2(p[p > 0])).sum())
        levels.append({"level": lv, "codebook_size": len(cnt),
                       "usage": round(float((cnt > 0).mean()), 4),
                       "entropy_bits": round(ent, 3), "perplexity": round(2.0 ** ent, 2)})
    bits = sum(math.log2(s) for s in model.codebook_sizes[:k])
    return {"manifest": str(manifest), "items": len(items), "frames": frames,
            "frame_rate": model.frame_rate, "num_codebooks": k,
            "bitrate_bps": round(bits * model.frame_rate, 1), "levels": levels,
            "recon": rec.summary()}


def format_table(report: dict[str, Any]) -> str:
    """A plain-text table of :func:`evaluate_codec`'s report."""
    lines = [f"{report['items']} utterances, {report['frames']} frames at "
             f"{report['frame_rate']:.4g} Hz, {report['num_codebooks']} codebooks, "
             f"{report['bitrate_bps'] / 1000:.3f} kbps",
             f"{'level':>5}  {'codes':>6}  {'usage':>6}  {'entropy':>7}  {'perplexity':>10}"]
    for lv in report["levels"]:
        lines.append(f"{lv['level']:>5}  {lv['codebook_size']:>6}  {lv['usage']:>6.3f}  "
                     f"{lv['entropy_bits']:>7.3f}  {lv['perplexity']:>10.2f}")
    r = report["recon"]
    lines.append(f"reconstruction: SNR {_fmt(r['snr_db'])} dB, SI-SDR {_fmt(r['si_sdr_db'])} dB, "
                 f"mel distance {_fmt(r['mel_distance'])}, PESQ-WB {_fmt(r['pesq_wb'])}, "
                 f"STOI {_fmt(r['stoi'])} ({r['pesq_failed']} not scorable)")
    return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


def emit(report: dict[str, Any], json_out: Path | None,
         table: Callable[[dict[str, Any]], str] = format_table) -> None:
    """Print ``table(report)`` (the codec table by default) and the JSON report; also write
    the JSON (atomically) when asked."""
    import click  # noqa: PLC0415

    from mlx_speech.utils.atomic import atomic_write_text  # noqa: PLC0415

    click.echo(table(report))
    text = json.dumps(report, indent=2)
    click.echo(text)
    if json_out is not None:
        atomic_write_text(json_out, text + "\n")

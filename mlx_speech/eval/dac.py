"""Evaluate a DAC-style codec on a held-out manifest (``mlx-speech eval dac``).

Per utterance, ``decode(encode(wav))`` at the model's rate (trimmed to the input):

* SNR and SI-SDR (dB), log-mel distance (n_fft 1024, hop 256, 80 mels), wide-band PESQ (at
  16 kHz, resampled when the model's rate differs) and STOI; an utterance PESQ or STOI cannot
  score (e.g. a silent output) is counted in ``pesq_failed``;
* over the whole manifest, per codebook level: the share of its codes used at least once and
  the perplexity ``exp(entropy)`` of its code distribution;
* the bitrate of the codes (``sum log2(size)`` over the levels used, times the frame rate).

``weights``: anything ``mlx_speech.load`` reads as a DAC (Descript ``.pth``, transformers
folders, our tagged file such as a run's exported ``dac.safetensors``) or an MLX training
checkpoint of the ``dac`` task (its codec is taken out of the generator).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click
import mlx.core as mx
import numpy as np

from mlx_speech.errors import CheckpointError


def load_eval_codec(weights: str | Path, *, num_codebooks: int | None = None) -> Any:
    """An MLX ``DACModel`` (eval mode) from a model file / folder or a ``dac`` training checkpoint."""
    import mlx_speech  # noqa: PLC0415
    from mlx_speech.weights.checkpoint import load_checkpoint, read_metadata  # noqa: PLC0415

    path = Path(weights).expanduser()
    meta = read_metadata(path) if path.is_file() and path.suffix == ".safetensors" else {}
    if "train_state" not in meta:
        return mlx_speech.load(path, family="dac", num_codebooks=num_codebooks)
    from mlx_speech.models.dac.model import DACModel  # noqa: PLC0415
    from mlx_speech.models.dac.train_spec import DACTrainSpec  # noqa: PLC0415
    from mlx_speech.train.checkpoint import strip_prefix  # noqa: PLC0415

    arrays, meta = load_checkpoint(path)
    if meta["format"] != "mlx":
        raise CheckpointError(f"{path}: a {meta['format']} training checkpoint; evaluate an MLX "
                              "one or its exported dac.safetensors")
    recipe = json.loads(meta["spec"])
    if recipe.get("task") != "dac":
        raise CheckpointError(f"{path}: a {recipe.get('task')!r} training checkpoint, not dac")
    task = DACTrainSpec._build(recipe.get("model", {}), strict=True, where=f"{path} model")
    model = DACModel(task.codec_spec())
    weights_ = strip_prefix(strip_prefix(strip_prefix(arrays, "model"), "generator"), "codec")
    try:
        model.load_weights([(k, mx.array(v)) for k, v in weights_.items()], strict=True)
    except ValueError as exc:
        raise CheckpointError(f"{path}: weights do not fit the recipe's codec ({exc})") from None
    if num_codebooks is not None:
        model.set_num_codebooks(num_codebooks)
    model.eval()
    return model


def evaluate(weights: str | Path, manifest: str | Path, *, num_codebooks: int | None = None,
             max_items: int | None = None, model: Any = None) -> dict[str, Any]:
    """The report (see the module docstring) of ``weights`` (or an already built ``model``)."""
    from mlx_speech.audio.io import load as load_audio  # noqa: PLC0415
    from mlx_speech.audio.metrics import mel_distance, pesq_score, si_sdr, snr, stoi_score  # noqa: PLC0415
    from mlx_speech.data.manifest import read_manifest  # noqa: PLC0415
    from mlx_speech.errors import UserError  # noqa: PLC0415

    model = model if model is not None else load_eval_codec(weights, num_codebooks=num_codebooks)
    items = read_manifest(manifest)[:max_items]
    sr, k = model.sample_rate, model.num_codebooks
    counts = [np.zeros(s, dtype=np.int64) for s in model.codebook_sizes[:k]]
    rec: dict[str, list[float]] = {"snr_db": [], "si_sdr_db": [], "mel_distance": [], "pesq_wb": [],
                                   "stoi": []}
    pesq_failed = frames = 0
    for item in items:
        wav, _ = load_audio(item.path, sr=sr, mono=True)
        codes = np.array(model.encode(mx.array(wav[None]), num_codebooks=k))
        out = np.array(model.decode(mx.array(codes)))[0, :len(wav)]
        frames += codes.shape[2]
        for lv in range(k):
            counts[lv] += np.bincount(codes[0, lv], minlength=len(counts[lv]))
        rec["snr_db"].append(float(snr(wav, out)))
        rec["si_sdr_db"].append(float(si_sdr(wav, out)))
        rec["mel_distance"].append(float(mel_distance(wav, out, sample_rate=sr)))
        try:
            rec["pesq_wb"].append(float(pesq_score(wav, out, sr, mode="wb")))
            rec["stoi"].append(float(stoi_score(wav, out, sr)))
        except UserError:
            pesq_failed += 1
    levels = []
    for lv, cnt in enumerate(counts):
        p = cnt / max(cnt.sum(), 1)
        ent = -(p[p > 0] * np.log(p[p > 0])).sum()
        levels.append({"level": lv, "codebook_size": len(cnt),
                       "usage": round(float((cnt > 0).mean()), 4),
                       "perplexity": round(float(np.exp(ent)), 2)})
    bits = sum(math.log2(s) for s in model.codebook_sizes[:k])
    return {"weights": str(weights), "manifest": str(manifest), "items": len(items),
            "frames": frames, "frame_rate": model.frame_rate, "num_codebooks": k,
            "bitrate_bps": round(bits * model.frame_rate, 1), "levels": levels,
            "recon": {name: (round(float(np.mean(v)), 4) if v else None) for name, v in rec.items()}
            | {"pesq_failed": pesq_failed}}


def format_table(report: dict[str, Any]) -> str:
    """A plain-text table of :func:`evaluate`'s report."""
    lines = [f"{report['items']} utterances, {report['frames']} frames at "
             f"{report['frame_rate']:.4g} Hz, {report['num_codebooks']} codebooks, "
             f"{report['bitrate_bps'] / 1000:.3f} kbps",
             f"{'level':>5}  {'codes':>5}  {'usage':>6}  {'perplexity':>10}"]
    for lv in report["levels"]:
        lines.append(f"{lv['level']:>5}  {lv['codebook_size']:>5}  {lv['usage']:>6.3f}  "
                     f"{lv['perplexity']:>10.2f}")
    r = report["recon"]
    lines.append(f"reconstruction: SNR {_fmt(r['snr_db'])} dB, SI-SDR {_fmt(r['si_sdr_db'])} dB, "
                 f"mel distance {_fmt(r['mel_distance'])}, PESQ-WB {_fmt(r['pesq_wb'])}, "
                 f"STOI {_fmt(r['stoi'])} ({r['pesq_failed']} not scorable)")
    return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


# --- `mlx-speech eval dac` (registered by the dac family) --------------------------------------
@click.command("dac")
@click.option("--weights", required=True, type=click.Path(path_type=Path),
              help="A DAC model (Descript .pth, transformers folder, tagged file) or an MLX dac "
                   "training checkpoint.")
@click.option("--manifest", required=True, type=click.Path(path_type=Path),
              help="Held-out JSONL manifest.")
@click.option("--num-codebooks", type=click.IntRange(1), default=None,
              help="Codebooks to use (default: the model's).")
@click.option("--max-items", type=click.IntRange(1), default=None, help="Evaluate the first N items.")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None,
              help="Also write the report as JSON to this file.")
def command(weights: Path, manifest: Path, num_codebooks: int | None, max_items: int | None,
            json_out: Path | None) -> None:
    """Reconstruction (SNR, SI-SDR, mel distance, PESQ, STOI), per-level codebook usage and
    bitrate of a DAC-style codec."""
    from mlx_speech.utils.atomic import atomic_write_text  # noqa: PLC0415

    report = evaluate(weights, manifest, num_codebooks=num_codebooks, max_items=max_items)
    click.echo(format_table(report))
    text = json.dumps(report, indent=2)
    click.echo(text)
    if json_out is not None:
        atomic_write_text(json_out, text + "\n")

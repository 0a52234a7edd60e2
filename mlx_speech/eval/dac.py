"""Evaluate a DAC-style codec on a held-out manifest (``mlx-speech eval dac``): the shared codec
report of :mod:`mlx_speech.eval.codec` (SNR, SI-SDR, mel distance, PESQ, STOI, per-level usage,
entropy and perplexity, bitrate).

``weights``: anything ``mlx_speech.load`` reads as a DAC (Descript ``.pth``, transformers
folders, our tagged file such as a run's exported ``dac.safetensors``) or an MLX training
checkpoint of the ``dac`` task (its codec is taken out of the generator).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mlx_speech.eval.codec import codec_from_checkpoint, emit, evaluate_codec, training_recipe


def load_eval_codec(weights: str | Path, *, num_codebooks: int | None = None) -> Any:
    """An MLX ``DACModel`` (eval mode) from a model file / folder or a ``dac`` training checkpoint."""
    import mlx_speech  # noqa: PLC0415

    path = Path(weights).expanduser()
    if training_recipe(path) is None:
        return mlx_speech.load(path, family="dac", num_codebooks=num_codebooks)
    from mlx_speech.models.dac.model import DACModel  # noqa: PLC0415
    from mlx_speech.models.dac.train_spec import DACTrainSpec  # noqa: PLC0415

    def build(recipe_model: dict[str, Any]) -> Any:
        task = DACTrainSpec._build(recipe_model, strict=True, where=f"{path} model")
        return DACModel(task.codec_spec())

    model = codec_from_checkpoint(path, "dac", build, ("model", "generator", "codec"))
    if num_codebooks is not None:
        model.set_num_codebooks(num_codebooks)
    return model


def evaluate(weights: str | Path, manifest: str | Path, *, num_codebooks: int | None = None,
             max_items: int | None = None, model: Any = None) -> dict[str, Any]:
    """The report of ``weights`` (or an already built ``model``) on ``manifest``."""
    model = model if model is not None else load_eval_codec(weights, num_codebooks=num_codebooks)
    return {"weights": str(weights)} | evaluate_codec(model, manifest, max_items=max_items)


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
    emit(evaluate(weights, manifest, num_codebooks=num_codebooks, max_items=max_items), json_out)

"""Evaluate a BSQ-ViT tokenizer on a held-out manifest (``mlx-speech eval bsq_vit``).

The shared codec report (:mod:`mlx_speech.eval.codec`: SNR, SI-SDR / SI-SNR, mel distance,
PESQ, STOI of the resynthesised audio; per-codebook usage, entropy and perplexity; bits per
second), with the audio made by the model's own vocoder (Griffin-Lim, or the HiFi-GAN its file
holds), or by the HiFi-GAN generator given as ``--vocoder``. Added: ``token_mel_l1``, the mean
absolute error of the decoded mel on the tokenizer's [-1, 1] scale (the vocoder plays no part
in it), ``vocoder``, which one made the audio, and ``vocoder_only``, the same metrics of the
vocoder on the input's own mel (no tokenizer): the ceiling the tokenizer is judged under.

``weights``: a tagged BSQ-ViT file (a run's exported ``bsq_vit.safetensors``) or an MLX
training checkpoint of the ``bsq_vit`` task (the tokenizer is taken out of the generator).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import mlx.core as mx
import numpy as np

from mlx_speech.eval.codec import (Recon, codec_from_checkpoint, emit, evaluate_codec,
                                   training_recipe)


def load_eval_tokenizer(weights: str | Path, *, vocoder: str | Path | None = None) -> Any:
    """An MLX ``BSQViTModel`` (eval mode) from a model file or a ``bsq_vit`` training
    checkpoint, with the HiFi-GAN at ``vocoder`` joined in when given."""
    import mlx_speech  # noqa: PLC0415

    path = Path(weights).expanduser()
    if training_recipe(path) is None:
        model = mlx_speech.load(path, family="bsq_vit")
    else:
        from mlx_speech.models.bsq_vit.model import BSQViTModel  # noqa: PLC0415
        from mlx_speech.models.bsq_vit.train_spec import BSQViTTrainSpec  # noqa: PLC0415

        def build(recipe_model: dict[str, Any]) -> Any:
            task = BSQViTTrainSpec._build(recipe_model, strict=True, where=f"{path} model")
            return BSQViTModel(task.tokenizer_spec())

        model = codec_from_checkpoint(path, "bsq_vit", build, ("model", "generator"))
    if vocoder is not None:
        from mlx_speech.models.bsq_vit.load import with_vocoder  # noqa: PLC0415

        model = with_vocoder(model, vocoder)
    return model


class MelAndVocoder:
    """Per utterance (``evaluate_codec``'s ``per_item``): the ``|decode_mel(encode_mel(x)) -
    x|`` of the input's mel ``x`` ([-1, 1] scale) and the reconstruction metrics of the vocoder
    alone on it, ``vocode(features(wav))``: the ceiling the tokenizer is judged under."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.total = self.cells = 0.0
        self.vocoder_only = Recon(model.sample_rate)

    def __call__(self, wav: np.ndarray) -> None:
        m = self.model
        x = m.features(mx.array(wav[None]))
        y = m.decode_mel(m.encode_mel(x))
        self.total += float(np.abs(np.array(y) - np.array(x)).sum())
        self.cells += x.size
        self.vocoder_only.add(wav, np.array(m.vocode(x))[0, :len(wav)])

    @property
    def mel_l1(self) -> float:
        return round(self.total / max(self.cells, 1.0), 5)


def evaluate(weights: str | Path, manifest: str | Path, *, vocoder: str | Path | None = None,
             max_items: int | None = None, model: Any = None) -> dict[str, Any]:
    """The report of ``weights`` (or an already built ``model``) on ``manifest``."""
    model = model if model is not None else load_eval_tokenizer(weights, vocoder=vocoder)
    extra = MelAndVocoder(model)
    report = evaluate_codec(model, manifest, max_items=max_items, per_item=extra)
    report["recon"]["token_mel_l1"] = extra.mel_l1
    return ({"weights": str(weights), "vocoder": model.spec.vocoder.kind} | report
            | {"vocoder_only": extra.vocoder_only.summary()})


# --- `mlx-speech eval bsq_vit` (registered by the bsq_vit family) -------------------------------
@click.command("bsq_vit")
@click.option("--weights", required=True, type=click.Path(path_type=Path),
              help="A BSQ-ViT model file or an MLX bsq_vit training checkpoint.")
@click.option("--manifest", required=True, type=click.Path(path_type=Path),
              help="Held-out JSONL manifest.")
@click.option("--vocoder", type=click.Path(path_type=Path), default=None,
              help="A HiFi-GAN generator trained on the tokenizer's mel (default: the model's "
                   "own vocoder).")
@click.option("--max-items", type=click.IntRange(1), default=None, help="Evaluate the first N items.")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None,
              help="Also write the report as JSON to this file.")
def command(weights: Path, manifest: Path, vocoder: Path | None, max_items: int | None,
            json_out: Path | None) -> None:
    """Resynthesis quality (mel distance, SI-SNR, PESQ, STOI), code usage and entropy, and
    bits per second of a BSQ-ViT tokenizer."""
    emit(evaluate(weights, manifest, vocoder=vocoder, max_items=max_items), json_out)

"""Joining a trained HiFi-GAN generator into an MLX BSQ-ViT tokenizer (:func:`with_vocoder`),
so one file turns codes into audio. Our tagged files (``weights.mlx.save_mlx_model`` /
``torch_ref.weights.save_torch_model`` with ``model="bsq_vit"``) are read by
:func:`mlx_speech.load` through their tag, in either framework's layout.

No upstream checkpoints exist (the one audio fork of BSQ-ViT publishes none), so there is no
format reader here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlx_speech.errors import CheckpointError


def with_vocoder(model: Any, hifigan: str | Path) -> Any:
    """A copy of the MLX tokenizer ``model`` whose vocoder is the HiFi-GAN generator at
    ``hifigan`` (any file ``mlx_speech.load`` reads as ``hifigan``); its mel must be the
    tokenizer's (``n_mels`` and hop are checked by the spec)."""
    import mlx_speech  # noqa: PLC0415
    from mlx_speech.models.bsq_vit.model import BSQViTModel  # noqa: PLC0415
    from mlx_speech.weights.core import flatten_tree  # noqa: PLC0415

    gen = mlx_speech.load(hifigan, family="hifigan")
    voc = flatten_tree(gen.parameters())
    gen_spec = gen.spec.replace(weight_norm=any(k.endswith(".weight_g") for k in voc))
    try:
        spec = model.spec.replace(vocoder=model.spec.vocoder.replace(
            kind="hifigan", hifigan=gen_spec.to_dict()))
    except Exception as exc:  # SpecError: the generator's mel is not the tokenizer's
        raise CheckpointError(f"{hifigan}: {exc}") from None
    weights = {k: v for k, v in flatten_tree(model.parameters()).items()
               if not k.startswith("vocoder.")}
    weights.update({f"vocoder.{k}": v for k, v in voc.items()})
    out = BSQViTModel(spec)
    out.load_weights(list(weights.items()), strict=True)
    out.eval()
    return out

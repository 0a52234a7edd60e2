"""File-level generation with the Moshi-style LM, behind ``mlx-speech s2s generate`` (MLX).

:func:`generate_file` reads the user's side of a conversation as our codes file (``codec
encode --model mimi`` writes one: ``(B, K, F)`` int32 with at least the LM's
``n_q - dep_q`` codebooks, of its ``card`` codes; further codebooks are ignored, as moshi's
``LMGen`` ignores them), runs one model step per frame (:meth:`MoshiLM.step`, moshi ``LMGen``'s
delay handling) and writes the model's side: its own audio codes as the file's ``codes``
``(B, dep_q, F - max_delay)`` (same codec, rates and sizes as the input, so ``codec decode``
turns them into its voice) and its text tokens ``(B, F - max_delay)`` as the extra tensor
``text`` (metadata ``text_card``; :func:`read_generated` reads both). The last ``max_delay``
user frames only complete earlier frames: a step returns frame ``t - max_delay``.

Tokens are chosen greedily (moshi's ``use_sampling=False``) unless a ``sampler`` is given (the
hook of :class:`~mlx_speech.models.s2s.lm.MoshiLM`). Every bad input is one line: weights that
are not a moshi LM, a codes file of the wrong shape or vocabulary, a bad output path (checked
before any model work); nothing is written on failure (the file is written atomically).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.errors import CodesError, UserError
from mlx_speech.io.codes import CodesFile, load_codes, save_codes
from mlx_speech.pipelines.codec import CODES_SUFFIXES, check_output

TEXT_TENSOR = "text"


def load_lm(weights: str | Path) -> Any:
    """The MLX :class:`~mlx_speech.models.s2s.lm.MoshiLM` at ``weights`` (a moshi LM folder or
    our tagged file); UserError for any other model."""
    import mlx_speech  # noqa: PLC0415
    from mlx_speech.models.s2s.lm_spec import MoshiLMSpec  # noqa: PLC0415

    model = mlx_speech.load(weights, family="s2s")
    if not isinstance(getattr(model, "spec", None), MoshiLMSpec):
        raise UserError(f"{weights}: not a Moshi-style LM (s2s generate needs one)")
    return model


def check_user_codes(codes: CodesFile, spec: Any, where: str) -> np.ndarray:
    """The user's stream ``(B, n_q - dep_q, F)`` of a codes file made for this LM."""
    need = spec.user_codebooks
    if codes.codebook_size != spec.card:
        raise CodesError(f"{where}: codebooks of {codes.codebook_size} codes, this LM reads "
                         f"{spec.card}")
    if codes.num_codebooks < need:
        raise CodesError(f"{where}: {codes.num_codebooks} codebooks, this LM reads the user's "
                         f"first {need}")
    if codes.num_frames <= spec.max_delay:
        raise CodesError(f"{where}: {codes.num_frames} frames; this LM needs more than "
                         f"{spec.max_delay} (its acoustic delay) to complete one")
    return codes.codes[:, :need]


def generate_codes(model: Any, user: np.ndarray, *,
                   sampler: Callable[[Any, str], Any] | None = None,
                   progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(text (B, F'), audio (B, dep_q, F'))`` int32 of a new conversation over ``user
    (B, n_q - dep_q, F)``, one step per frame, ``F' = F - max_delay``."""
    from tqdm import tqdm  # noqa: PLC0415

    model.reset_state()
    texts, audios = [], []
    for t in tqdm(range(user.shape[2]), desc="generate", unit="frame", disable=not progress,
                  leave=False):
        out = model.step(user[:, :, t], sampler=sampler)
        if out is not None:
            texts.append(out[0])
            audios.append(out[1])
    model.reset_state()
    return np.stack(texts, axis=1), np.stack(audios, axis=2)


def generate_file(weights: str | Path, user_codes: str | Path, dst: str | Path, *,
                  greedy: bool = True, sampler: Callable[[Any, str], Any] | None = None,
                  progress: bool = False) -> dict[str, Any]:
    """``mlx-speech s2s generate --weights DIR --user-codes IN --greedy -o OUT``: the LM's
    answer to the user's codes file, written to the codes file ``dst``; returns a summary.

    ``greedy=False`` needs a ``sampler`` (``sampler(logits (B, V), stream) -> (B,)``)."""
    if not greedy and sampler is None:
        raise UserError("sampled generation needs a sampler; only --greedy is available here")
    out = check_output(dst, CODES_SUFFIXES, "generated codes")
    codes = load_codes(user_codes)
    model = load_lm(weights)
    spec = model.spec
    user = check_user_codes(codes, spec, str(user_codes))
    text, audio = generate_codes(model, user, sampler=None if greedy else sampler,
                                 progress=progress)
    frames = audio.shape[2]
    samples = round(frames * codes.sample_rate / codes.frame_rate)
    save_codes(out, audio, model=codes.model, sample_rate=codes.sample_rate,
               frame_rate=codes.frame_rate, codebook_size=spec.card, num_samples=samples,
               source=Path(user_codes).name, extra={TEXT_TENSOR: text},
               extra_metadata={"text_card": str(spec.text_card), "generated_by": "moshi_lm"})
    return {"codes": str(out), "model": codes.model, "user_frames": codes.num_frames,
            "frames": int(frames), "own_codebooks": int(audio.shape[1]),
            "seconds": round(frames / codes.frame_rate, 3), "greedy": greedy}


def read_generated(path: str | Path) -> tuple[CodesFile, np.ndarray]:
    """A file :func:`generate_file` wrote: ``(own audio codes, text tokens (B, F) int32)``."""
    from safetensors import safe_open  # noqa: PLC0415

    codes = load_codes(path)
    with safe_open(str(path), framework="np") as fh:
        if TEXT_TENSOR not in fh.keys():
            raise CodesError(f"{path}: no {TEXT_TENSOR!r} tensor (not written by s2s generate)")
        text = fh.get_tensor(TEXT_TENSOR)
    if text.shape != (codes.codes.shape[0], codes.num_frames):
        raise CodesError(f"{path}: text tokens {text.shape} do not match codes "
                         f"{codes.codes.shape}")
    return codes, text.astype(np.int32)

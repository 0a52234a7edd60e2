"""Checkpoint surgery: an 8+-codebook Mimi -> a 9-codebook Mimi (``mimi9``) that starts where
Mimi was.

Sources: anything ``mlx_speech/models/mimi/formats.py`` reads (moshi-format file, transformers-format folder or
file, or our own tagged ``mimi`` file). The source needs 1 semantic + at least 7 acoustic
codebooks. Destination tensors (our names; every one is listed in the report):

* every non-quantizer tensor (SEANet, transformers, down/upsample): copied 1:1;
* ``quantizer.rvq_first.*`` (Mimi codebook 0 and its projections) -> ``quantizer.prosody.*``
  (head 1);
* ``quantizer.rvq_rest.{in,out}_proj`` -> ``quantizer.acoustic.{in,out}_proj`` and rest levels
  0..6 -> ``quantizer.acoustic.levels.0..6`` (heads 2-8): ``embedding_sum``, ``cluster_usage``
  and ``initialized`` of each level together, so the folded codebook
  ``embedding_sum / clamp(cluster_usage, eps)`` is Mimi's;
* fresh (numpy generator seeded with ``seed``): ``quantizer.content.{in,out}_proj`` and
  ``quantizer.proj_{qwen,wavlm}`` (uniform +-1/sqrt(fan_in), the MLX / torch Linear default);
  the content codebook starts empty (``embedding_sum`` 0, ``cluster_usage`` 1,
  ``initialized`` 0), so the first training batch k-means-initialises it in its own projected
  space (a copy of Mimi's codebook 0 would live in ``rvq_first``'s projection space, not the
  fresh one); ``quantizer.content_gate = 0`` (head 0 gated off).

Mimi's rest levels 7.. (the 32-codebook release has 31) are not used; the report lists them as
dropped. With ``arrangement="split"`` the result reproduces Mimi exactly (heads 1-8 codes ==
Mimi codes 0-7; same decoded audio); ``"residual"`` keeps head 1 == Mimi codebook 0 but feeds
heads 2-8 ``x - q_p`` (see the README).

Output: ``DST/model.safetensors`` (tagged ``model=mimi9``, MLX layout, spec JSON) and
``DST/surgery_report.json``, both written atomically.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.weights.checkpoint import _PICKLE_SUFFIXES, convert_arrays, load_checkpoint, save_checkpoint
from mlx_speech.models.mimi.formats import detect_format, read_moshi_raw, read_upstream_state, resolve_mimi_path
from mlx_speech.models.mimi.hf import flatten_nested_names, hf_key_map
from mlx_speech.models.mimi.keys import KeyMap
from mlx_speech.models.mimi.moshi import moshi_key_map, normalize_attention_names
from mlx_speech.errors import CheckpointError
from mlx_speech.models.mimi.spec import MimiSpec
from mlx_speech.models.mimi9.spec import Mimi9Spec
from mlx_speech.utils.atomic import atomic_write_text

MODEL_NAME = "mimi9"
ARRANGEMENTS = ("split", "residual")
WEIGHTS_FILE = "model.safetensors"
REPORT_FILE = "surgery_report.json"
NUM_ACOUSTIC = 7
FRESH_LINEAR = "fresh:uniform(+-1/sqrt(fan_in))"
FRESH_CODEBOOK = {
    "embedding_sum": "fresh:zeros (k-means on the first training batch)",
    "cluster_usage": "fresh:ones",
    "initialized": "fresh:zeros (not initialised)",
}


# --- reading the source ------------------------------------------------------------------------
def _origins(key_map: KeyMap, original: dict[str, str]) -> dict[str, str]:
    """Our key -> where it is in the source file (the file's own spelling) and how."""
    out: dict[str, str] = {}
    for src, dst in key_map.copy.items():
        out[dst] = original.get(src, src)
    for src, dst in key_map.squeeze.items():
        out[dst] = f"{original.get(src, src)} (1x1 conv -> linear)"
    for src, dsts in key_map.split.items():
        for i, dst in enumerate(dsts):
            out[dst] = f"{original.get(src, src)} (row block {i + 1}/{len(dsts)})"
    for src, dst in key_map.permute.items():
        out[dst] = f"{original.get(src, src)} (RoPE rows re-ordered)"
    return out


def _file_keys(weights: Path) -> list[str]:
    if weights.suffix in _PICKLE_SUFFIXES:
        return list(read_moshi_raw(weights))
    from safetensors import safe_open  # noqa: PLC0415

    with safe_open(str(weights), framework="np") as fh:
        return list(fh.keys())


def read_mimi_source(src: str | Path, *, spec: MimiSpec | None = None
                     ) -> tuple[dict[str, np.ndarray], MimiSpec, str, dict[str, str]]:
    """``(torch_ref state, spec, format, origins)`` of the Mimi at ``src``; ``origins`` maps
    each of our keys to its key in the source file."""
    fmt = detect_format(src)
    weights, _ = resolve_mimi_path(src)
    if fmt == "mlx-speech":
        from convert.checkpoint import kinds_for  # noqa: PLC0415

        arrays, meta = load_checkpoint(weights)
        tagged = MimiSpec.from_dict(json.loads(meta["spec"]))
        state = convert_arrays(arrays, kinds_for("mimi", tagged.to_dict()),
                               source=meta["format"], target="torch")
        layout = "" if meta["format"] == "torch" else " (MLX layout -> torch)"
        return state, tagged, fmt, {k: k + layout for k in state}
    state, mimi, fmt = read_upstream_state(src, spec=spec)
    keys = {k: k for k in _file_keys(weights)}
    where = str(weights)
    if fmt == "moshi":
        origins = _origins(moshi_key_map(mimi), normalize_attention_names(keys, where))
    else:
        origins = _origins(hf_key_map(mimi), flatten_nested_names(keys, where))
    return state, mimi, fmt, origins


# --- the surgery -------------------------------------------------------------------------------
def _uniform(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


def surgery_state(state: dict[str, np.ndarray], origins: dict[str, str], mimi: MimiSpec, *,
                  arrangement: str = "split", seed: int = 0, qwen_dim: int | None = None,
                  wavlm_dim: int | None = None, where: str = "Mimi checkpoint"
                  ) -> tuple[dict[str, np.ndarray], Mimi9Spec, dict[str, dict[str, Any]],
                             dict[str, str]]:
    """Mimi torch_ref ``state`` -> ``(mimi9 torch_ref state, spec, tensors, dropped)``.

    ``tensors`` maps every destination key to ``{"source", "shape"}`` (torch layout shapes);
    ``dropped`` maps unused source keys to the reason.
    """
    if arrangement not in ARRANGEMENTS:
        raise CheckpointError(f"arrangement must be one of {', '.join(ARRANGEMENTS)}, "
                              f"got {arrangement!r}")
    if mimi.num_semantic != 1 or mimi.num_acoustic < NUM_ACOUSTIC:
        raise CheckpointError(
            f"{where}: Mimi surgery needs 1 semantic + at least {NUM_ACOUSTIC} acoustic codebooks "
            f"(8 in all); this Mimi has {mimi.num_semantic} + {mimi.num_acoustic}")
    defaults = Mimi9Spec().bridge
    spec = Mimi9Spec.for_mimi(mimi, arrangement=arrangement,
                              qwen_dim=qwen_dim or defaults.qwen_dim,
                              wavlm_dim=wavlm_dim or defaults.wavlm_dim)
    out: dict[str, np.ndarray] = {}
    source: dict[str, str] = {}
    dropped: dict[str, str] = {}

    def take(dst: str, src: str) -> None:
        out[dst] = state[src]
        source[dst] = origins.get(src, src)

    rest_level = "quantizer.rvq_rest.levels."
    for key in state:
        if not key.startswith("quantizer."):
            take(key, key)
        elif key.startswith("quantizer.rvq_first."):
            take("quantizer.prosody." + key[len("quantizer.rvq_first."):], key)
        elif key.startswith(rest_level):
            level = int(key[len(rest_level):].split(".")[0])
            if level < NUM_ACOUSTIC:
                take("quantizer.acoustic." + key[len("quantizer.rvq_rest."):], key)
            else:
                dropped[origins.get(key, key)] = f"Mimi codebook {level + 1}: beyond head 8"
        elif key.startswith("quantizer.rvq_rest."):
            take("quantizer.acoustic." + key[len("quantizer.rvq_rest."):], key)
        else:
            raise CheckpointError(f"{where}: unexpected quantizer tensor {key}")

    b = spec.bridge
    rng = np.random.default_rng(seed)
    fresh = {
        "quantizer.content.in_proj.weight": _uniform(rng, (b.vq_dim, b.dim), b.dim),
        "quantizer.content.out_proj.weight": _uniform(rng, (b.dim, b.vq_dim), b.vq_dim),
        "quantizer.proj_qwen.weight": _uniform(rng, (b.qwen_dim, b.dim), b.dim),
        "quantizer.proj_qwen.bias": _uniform(rng, (b.qwen_dim,), b.dim),
        "quantizer.proj_wavlm.weight": _uniform(rng, (b.wavlm_dim, b.dim), b.dim),
        "quantizer.proj_wavlm.bias": _uniform(rng, (b.wavlm_dim,), b.dim),
    }
    for k, v in fresh.items():
        out[k] = v
        source[k] = f"{FRESH_LINEAR} seed={seed}"
    book = "quantizer.content.levels.0.codebook."
    out[book + "embedding_sum"] = np.zeros((b.content_size, b.vq_dim), dtype=np.float32)
    out[book + "cluster_usage"] = np.ones((b.content_size,), dtype=np.float32)
    out[book + "initialized"] = np.zeros((1,), dtype=np.float32)
    for leaf, how in FRESH_CODEBOOK.items():
        source[book + leaf] = how
    out["quantizer.content_gate"] = np.zeros((1,), dtype=np.float32)
    source["quantizer.content_gate"] = "fresh:constant 0.0 (head 0 gated off)"
    tensors = {k: {"source": source[k], "shape": list(out[k].shape)} for k in out}
    return out, spec, tensors, dropped


def _category(key: str, src: str) -> str:
    if src.startswith("fresh:"):
        return "fresh"
    if key.startswith("quantizer.prosody."):
        return "Mimi codebook 0 (rvq_first) -> head 1 (prosody)"
    if key.startswith("quantizer.acoustic."):
        return "Mimi codebooks 1-7 (rvq_rest) -> heads 2-8 (acoustic)"
    return "copied 1:1 (SEANet, transformers, down/upsample)"


def format_report(report: dict[str, Any]) -> str:
    """A readable summary: counts per source, then every quantizer tensor's source."""
    counts = Counter(_category(k, v["source"]) for k, v in report["tensors"].items())
    lines = [f"Mimi surgery: {report['source']} ({report['source_format']}) -> "
             f"{report['destination']} ({report['arrangement']} arrangement)"]
    lines += [f"  {n:4d}  {cat}" for cat, n in counts.items()]
    lines.append(f"  {len(report['dropped']):4d}  source tensors dropped (Mimi codebooks 9..)")
    lines.append("quantizer:")
    lines += [f"  {k}  <-  {v['source']}" for k, v in report["tensors"].items()
              if k.startswith("quantizer.")]
    return "\n".join(lines)


def surgery(src: str | Path, dst: str | Path, *, arrangement: str = "split", seed: int = 0,
            qwen_dim: int | None = None, wavlm_dim: int | None = None,
            spec: MimiSpec | None = None,
            echo: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Write the 9-codebook Mimi made from the Mimi at ``src`` into folder ``dst``.

    ``spec`` gives the architecture of a moshi-format file that is not the released one (moshi
    files carry no config). ``echo`` receives the readable report (None: silent). Returns the
    report (also saved as ``dst/surgery_report.json``).
    """
    from mlx_speech.weights.mlx import torch_state_to_mlx_arrays  # noqa: PLC0415
    from mlx_speech.models.mimi9.model import build_mimi9  # noqa: PLC0415

    dst = Path(dst)
    if dst.exists() and not dst.is_dir():
        raise CheckpointError(f"{dst} exists and is not a folder")
    state, mimi, fmt, origins = read_mimi_source(src, spec=spec)
    out, spec9, tensors, dropped = surgery_state(
        state, origins, mimi, arrangement=arrangement, seed=seed, qwen_dim=qwen_dim,
        wavlm_dim=wavlm_dim, where=str(src))
    arrays = torch_state_to_mlx_arrays(build_mimi9(spec9), out)  # asserts keys and shapes
    for k, entry in tensors.items():  # shapes as stored (MLX layout)
        entry["shape"] = list(arrays[k].shape)
    report = {"source": str(src), "source_format": fmt, "destination": str(dst / WEIGHTS_FILE),
              "arrangement": arrangement, "seed": seed, "layout": "mlx", "spec": spec9.to_dict(),
              "tensors": tensors, "dropped": dropped}
    dst.mkdir(parents=True, exist_ok=True)
    save_checkpoint(dst / WEIGHTS_FILE, arrays, fmt="mlx", model=MODEL_NAME, spec=spec9.to_dict(),
                    extra={"surgery_source": str(src), "surgery_format": fmt})
    atomic_write_text(dst / REPORT_FILE, json.dumps(report, indent=1) + "\n")
    if echo is not None:
        echo(format_report(report))
    return report


# --- loading the result ------------------------------------------------------------------------
def _weights(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / WEIGHTS_FILE
    if not p.exists():
        raise CheckpointError(f"9-codebook Mimi weights not found: {p}")
    return p


def _check_tag(weights: Path, model: str) -> None:
    if model != MODEL_NAME:
        raise CheckpointError(f"{weights}: an mlx-speech {model!r} checkpoint, not {MODEL_NAME}")


def _load(path: str | Path, backend: str) -> Any:
    from mlx_speech.weights.mlx import load_mlx_model  # noqa: PLC0415
    from torch_ref.weights import load_torch_model  # noqa: PLC0415
    from mlx_speech.weights.checkpoint import read_metadata  # noqa: PLC0415

    weights = _weights(path)
    _check_tag(weights, read_metadata(weights).get("model", "?"))
    model, _ = (load_mlx_model if backend == "mlx" else load_torch_model)(weights)
    model.eval()
    return model


def load_mimi9(path: str | Path) -> Any:
    """An MLX ``Mimi9Model`` (eval mode) from a tagged file or a surgery output folder."""
    return _load(path, "mlx")


def load_mimi9_torch(path: str | Path) -> Any:
    """A torch_ref ``Mimi9Model`` (eval mode) from a tagged file or a surgery output folder."""
    return _load(path, "torch")

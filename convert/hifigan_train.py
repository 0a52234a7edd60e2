"""HiFi-GAN training checkpoints: original discriminator files and generator export.

* Original discriminators (jik876/hifi-gan ``do_XXXXXXXX``): a torch pickle
  ``{'mpd': state_dict, 'msd': state_dict, 'optim_g', 'optim_d', 'steps', 'epoch'}`` (read
  with ``weights_only=True``; only ``mpd`` / ``msd`` are used). Key names equal ours under
  ``mpd.`` / ``msd.`` (``discriminators.i.convs.j``, ``discriminators.i.conv_post``). Layouts:

  - MPD convs are Conv2d ``(O, I, k, 1)`` with weight norm ``weight_g (O, 1, 1, 1)``; ours are
    Conv1d, torch ``(O, I, k)`` / ``(O, 1, 1)``: the trailing axis is dropped / added.
  - MSD scale 0 uses spectral norm: ``weight_orig (O, I, k)``, ``weight_u (O,)``,
    ``weight_v (I*k,)`` (or torch >= 2.1 ``parametrizations.weight.original`` / ``.0._u`` /
    ``.0._v``). In eval mode its conv uses ``W = weight_orig / (u . (weight_orig v))``; we fold
    that ``W`` into weight norm (``weight_v = W``, ``weight_g = |W|`` per output channel), which
    gives the same forward pass. Writing back (:func:`save_original_discriminators`) gives
    weight-norm keys on every scale, i.e. the file is loadable here and by code that uses
    weight norm on all scales, not by the original's strict spectral-norm scale 0.
  - Weight-norm keys in the torch >= 2.1 form (``parametrizations.weight.original0/1``) are
    renamed to ``weight_g`` / ``weight_v``.

* :func:`export_generator`: a ``task: hifigan`` trainer checkpoint (MLX or torch) -> a tagged
  ``hifigan`` or ``vocos`` generator file (the recipe's ``model.kind``) that
  ``mlx-speech synth --vocoder neural --vocoder-weights PATH`` loads; given several
  checkpoints of one run, the average of their generators' weights.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.weights.checkpoint import convert_arrays, load_pickle_state, save_checkpoint
from convert.checkpoint import kinds_for
from mlx_speech.models.hifigan.official import rename_official
from mlx_speech.errors import CheckpointError
from mlx_speech.weights.strict import check_state
from mlx_speech.specs.train import TrainSpec
from mlx_speech.models.hifigan.train_spec import HiFiGANDiscriminatorSpec, HiFiGANTrainSpec

_SPECTRAL_NEW = re.compile(r"^(.*)\.parametrizations\.weight\.(original|0\._u|0\._v)$")


def _np(v: Any) -> np.ndarray:
    return v.detach().cpu().float().numpy() if hasattr(v, "detach") else np.asarray(v, np.float32)


def _fold_spectral(state: dict[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
    """Replace spectral-norm triples by the eval-mode weight, written as weight norm."""
    groups: dict[str, dict[str, np.ndarray]] = {}
    out: dict[str, np.ndarray] = {}
    for k, v in state.items():
        m = _SPECTRAL_NEW.match(k)
        if m:
            groups.setdefault(m.group(1), {})[{"original": "orig", "0._u": "u", "0._v": "v"}[m.group(2)]] = v
        else:
            out[k] = v
    spectral = [k for k in out if k.endswith(".weight_orig")]
    for k in spectral:
        base = k[: -len(".weight_orig")]
        try:
            groups.setdefault(base, {}).update(orig=out.pop(k), u=out.pop(f"{base}.weight_u"),
                                               v=out.pop(f"{base}.weight_v"))
        except KeyError:
            raise CheckpointError(f"{where}: spectral norm of {base!r} lacks weight_u / weight_v") from None
    for base, g in groups.items():
        if set(g) != {"orig", "u", "v"}:
            raise CheckpointError(f"{where}: incomplete spectral norm for {base!r}: {sorted(g)}")
        w = g["orig"]
        sigma = float(g["u"] @ (w.reshape(w.shape[0], -1) @ g["v"]))
        w = (w / sigma).astype(np.float32)
        out[f"{base}.weight_v"] = w
        norm = np.sqrt((w.astype(np.float64) ** 2).sum(axis=(1, 2), keepdims=True))
        out[f"{base}.weight_g"] = norm.astype(np.float32)
    return out


def discriminator_state_from_original(obj: dict[str, Any], where: str = "checkpoint") -> dict[str, np.ndarray]:
    """``{'mpd': sd, 'msd': sd, ...}`` -> our torch-layout state dict (``mpd.*``, ``msd.*``)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("mpd"), dict) or not isinstance(obj.get("msd"), dict):
        raise CheckpointError(f"{where}: expected {{'mpd': state_dict, 'msd': state_dict}} "
                              "(HiFi-GAN do_XXXXXXXX layout)")
    out: dict[str, np.ndarray] = {}
    for k, v in obj["mpd"].items():
        a = _np(v)
        if a.ndim == 4:
            if a.shape[-1] != 1:
                raise CheckpointError(f"{where}: mpd.{k} has shape {a.shape}; expected a (k, 1) Conv2d")
            a = a[..., 0]
        out[f"mpd.{rename_official(k)}"] = a
    msd = _fold_spectral({k: _np(v) for k, v in obj["msd"].items()}, where)
    out.update({f"msd.{rename_official(k)}": v for k, v in msd.items()})
    return out


def spec_from_state(state: dict[str, np.ndarray], periods: list[int] | None = None) -> HiFiGANDiscriminatorSpec:
    """Channel widths, kernel, scales and groups read from a discriminator state dict."""
    def convs(prefix: str) -> list[np.ndarray]:
        out, j = [], 0
        while f"{prefix}.convs.{j}.weight_v" in state:
            out.append(state[f"{prefix}.convs.{j}.weight_v"])
            j += 1
        return out

    n_mpd = sum(1 for k in state if re.fullmatch(r"mpd\.discriminators\.\d+\.conv_post\.bias", k))
    n_msd = sum(1 for k in state if re.fullmatch(r"msd\.discriminators\.\d+\.conv_post\.bias", k))
    mpd, msd = convs("mpd.discriminators.0"), convs("msd.discriminators.0")
    if not (n_mpd and n_msd and mpd and msd):
        raise CheckpointError("discriminator state has no mpd / msd convs (HiFi-GAN layout expected)")
    c_in, groups = 1, []
    for w in msd:
        groups.append(c_in // w.shape[1])
        c_in = w.shape[0]
    base = HiFiGANDiscriminatorSpec()
    periods = list(periods) if periods is not None else base.periods
    if len(periods) != n_mpd:
        raise CheckpointError(f"the checkpoint has {n_mpd} period discriminators; pass their periods "
                              f"(default {base.periods})")
    return HiFiGANDiscriminatorSpec(periods=periods, mpd_channels=[int(w.shape[0]) for w in mpd],
                                    mpd_kernel=int(mpd[0].shape[2]), msd_scales=n_msd,
                                    msd_channels=[int(w.shape[0]) for w in msd], msd_groups=groups)


def load_original_discriminators(path: str | Path, *, backend: str = "mlx",
                                 periods: list[int] | None = None) -> Any:
    """An MLX (or torch_ref) ``HiFiGANDiscriminator`` with an original ``do_`` file's weights."""
    state = discriminator_state_from_original(load_pickle_state(path), str(path))
    spec = spec_from_state(state, periods)
    if backend == "torch":
        import torch  # noqa: PLC0415

        from torch_ref.train.discriminators import HiFiGANDiscriminator  # noqa: PLC0415

        model = HiFiGANDiscriminator(spec)
        own = model.state_dict()
        _check(path, state, {k: tuple(v.shape) for k, v in own.items()})
        model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()})
        return model.eval()
    import mlx_speech  # noqa: F401,PLC0415
    import mlx.core as mx  # noqa: PLC0415

    from mlx_speech.weights.core import flatten_tree, param_kinds  # noqa: PLC0415
    from mlx_speech.weights.layout import to_mlx  # noqa: PLC0415
    from mlx_speech.train.discriminators import HiFiGANDiscriminator as M  # noqa: PLC0415

    model = M(spec)
    kinds = param_kinds(model)
    arrays = {k: to_mlx(kinds[k], v, k) for k, v in state.items() if k in kinds}
    _check(path, {**state, **arrays}, {k: tuple(v.shape) for k, v in flatten_tree(model.parameters()).items()})
    model.load_weights([(k, mx.array(v)) for k, v in arrays.items()], strict=True)
    model.eval()
    return model


def _check(path: Any, state: dict[str, np.ndarray], expected: dict[str, tuple]) -> None:
    check_state(state, expected, where=str(path), what="the discriminator")


def save_original_discriminators(path: str | Path, torch_discriminator: Any) -> None:
    """Write a torch_ref ``HiFiGANDiscriminator`` as ``{'mpd': sd, 'msd': sd}`` (original key
    names, MPD weights as ``(k, 1)`` Conv2d; weight norm on every scale, see the module docstring)."""
    import torch  # noqa: PLC0415

    from mlx_speech.utils.atomic import atomic_path  # noqa: PLC0415

    out: dict[str, dict[str, Any]] = {"mpd": {}, "msd": {}}
    for k, v in torch_discriminator.state_dict().items():
        part, _, rest = k.partition(".")
        t = v.detach().clone()
        if part == "mpd" and t.ndim == 3:
            t = t[..., None]
        out[part][rest] = t
    with atomic_path(Path(path)) as tmp:
        torch.save(out, str(tmp))


def _generator_arrays(checkpoint: str | Path, ema: bool) -> tuple[dict[str, np.ndarray], dict[str, Any], Any, str]:
    """The generator arrays of one trainer checkpoint, its metadata, generator spec and kind."""
    from mlx_speech.train.checkpoint import CheckpointManager, strip_prefix  # noqa: PLC0415

    arrays, meta, _ = CheckpointManager.load(checkpoint)
    if meta.get("model") != "hifigan":
        raise CheckpointError(f"{checkpoint}: a {meta.get('model')!r} training checkpoint, not task hifigan")
    recipe = TrainSpec.from_dict(json.loads(meta["spec"]))
    gen_spec = HiFiGANTrainSpec._build(recipe.model, strict=True, where="model").generator_spec()
    prefix = "ema" if ema else "model"
    gen = strip_prefix(strip_prefix(arrays, prefix), "generator")
    if not gen:
        raise CheckpointError(f"{checkpoint}: no {prefix}.generator.* arrays"
                              + (" (the run had no EMA)" if ema else ""))
    return gen, meta, gen_spec, recipe.model.get("kind", "hifigan")


def average_arrays(states: list[dict[str, np.ndarray]], names: list[str]) -> dict[str, np.ndarray]:
    """The element-wise mean of several state dicts with the same keys and shapes (summed in
    float64, stored in each array's own dtype); ``names`` label them in errors."""
    first = states[0]
    for state, name in zip(states[1:], names[1:]):
        if set(state) != set(first):
            diff = sorted(set(state) ^ set(first))
            raise CheckpointError(f"{name}: other generator tensors than {names[0]} "
                                  f"({len(diff)} differ, e.g. {diff[0]!r})")
        for k, v in state.items():
            if v.shape != first[k].shape:
                raise CheckpointError(f"{name}: {k} has shape {v.shape}, {names[0]} {first[k].shape}")
    return {k: (sum(s[k].astype(np.float64) for s in states) / len(states)).astype(v.dtype)
            for k, v in first.items()}


def export_generator(checkpoint: str | Path | list[str | Path], out: str | Path, *,
                     ema: bool = False, half: bool = False) -> dict[str, Any]:
    """Write the generator of a ``task: hifigan`` trainer checkpoint as a tagged ``hifigan``
    or ``vocos`` model file (MLX layout, weight norm kept; loaders fold it). ``ema``: the EMA
    weights. ``half``: store the float32 tensors as float16 (half the file, for bundling; the
    loaders cast them back to the model's float32, so only the rounding of the weights differs).

    Several checkpoints (a list) give the average of their generators' weights: checkpoint
    averaging, which smooths the step-to-step oscillation of GAN training the way an EMA of the
    weights would. They must come from runs with the same generator (kind and spec) and be in
    the same framework's layout."""
    paths = list(checkpoint) if isinstance(checkpoint, (list, tuple)) else [checkpoint]
    if not paths:
        raise CheckpointError("no checkpoint to export")
    loaded = [_generator_arrays(p, ema) for p in paths]
    gen, meta, gen_spec, kind = loaded[0]
    for p, (_, m, s, k) in zip(paths[1:], loaded[1:]):
        if (k, s.to_dict(), m["format"]) != (kind, gen_spec.to_dict(), meta["format"]):
            raise CheckpointError(f"{p}: its generator ({k}, {m['format']} layout) differs from "
                                  f"{paths[0]}'s ({kind}, {meta['format']} layout) or has another spec")
    if len(loaded) > 1:
        gen = average_arrays([g for g, *_ in loaded], [str(p) for p in paths])
    spec = gen_spec.to_dict()
    mlx_arrays = convert_arrays(gen, kinds_for(kind, spec), source=meta["format"], target="mlx")
    if half:
        big = [k for k, v in mlx_arrays.items() if v.dtype == np.float32 and np.abs(v).max(initial=0) > 6e4]
        if big:
            raise CheckpointError(f"{paths[0]}: {big[0]} has values beyond float16's range; export it in float32")
        mlx_arrays = {k: v.astype(np.float16) if v.dtype == np.float32 else v for k, v in mlx_arrays.items()}
    save_checkpoint(out, mlx_arrays, fmt="mlx", model=kind, spec=spec)
    return {"generator": str(out), "kind": kind, "tensors": len(mlx_arrays), "hop_length": gen_spec.hop_length,
            "source_format": meta["format"], "checkpoints": len(paths), "dtype": "float16" if half else "float32"}

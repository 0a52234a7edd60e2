"""The one DAC key map: every upstream tensor name, for Descript's and transformers' naming, to
ours (torch layouts; numpy only, shared by ``mlx_speech.load`` and ``torch_ref.load``).

Our module tree is Descript's (``dac/model/dac.py``), so under Descript's naming the map is the
identity apart from the two rewrites below. transformers' ``DacModel`` renames the same layers
(its conversion script walks Descript's ``nn.Sequential`` positions)::

    ours / Descript                          transformers
    encoder.block.0                          encoder.conv1
    encoder.block.{i+1}.block.{j}.block.{0..3} encoder.block.{i}.res_unit{j+1}.{snake1,conv1,snake2,conv2}
    encoder.block.{i+1}.block.3              encoder.block.{i}.snake1          (3 = len(dilations))
    encoder.block.{i+1}.block.4              encoder.block.{i}.conv1
    encoder.block.{n+1} / .block.{n+2}       encoder.snake1 / encoder.conv2
    decoder.model.0                          decoder.conv1
    decoder.model.{i+1}.block.{0,1}          decoder.block.{i}.{snake1,conv_t1}
    decoder.model.{i+1}.block.{2+j}.block.*  decoder.block.{i}.res_unit{j+1}.*
    decoder.model.{n+1} / .{n+2}             decoder.snake1 / decoder.conv2
    quantizer.quantizers.{k}.{in_proj,out_proj,codebook}   (same)

Rewrites (nothing else changes, nothing is dropped: neither model registers a buffer):

* weight norm is kept as weight norm, never folded. A file stores it one way throughout
  (:func:`weight_norm_form`): ``weight_g`` / ``weight_v`` (``torch.nn.utils.weight_norm``,
  Descript's releases), ``parametrizations.weight.original0`` / ``original1`` (torch >= 2.1
  ``parametrizations.weight_norm``, e.g. ``DacModel.apply_weight_norm()``), both read as our
  ``weight_g`` / ``weight_v``; or plain ``weight`` (transformers' released files: its conversion
  script folds the norm before saving), read into a model built with ``weight_norm=False``.
  ``weight_g`` is ``(O, 1, 1)`` for a conv and ``(I, 1, 1)`` for a transposed conv on every side.
* Snake ``alpha``: upstream ``(1, C, 1)`` -> ours ``(C,)``.

:func:`convert_state` checks every upstream name and shape against this map before anything is
copied: an unknown or missing key, a shape, a non-float or non-finite tensor is one
:class:`CheckpointError` naming the keys in the file's own spelling.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mlx_speech.errors import CheckpointError
from mlx_speech.models.dac.spec import DACSpec
from mlx_speech.weights.core import _as_numpy
from mlx_speech.weights.strict import short

NAMINGS = ("descript", "transformers")
# how each form spells a conv's weight: upstream leaf -> our leaf
WEIGHT_LEAVES = {
    "weight_norm": {"weight_g": "weight_g", "weight_v": "weight_v"},
    "parametrizations": {"parametrizations.weight.original0": "weight_g",
                         "parametrizations.weight.original1": "weight_v"},
    "plain": {"weight": "weight"},
}
_FORM_MARKERS = (("weight_norm", ".weight_g"), ("parametrizations", ".parametrizations.weight."))


@dataclasses.dataclass(frozen=True)
class Layer:
    """One parametrised layer: our (= Descript's) path, transformers' path, its kind and sizes.

    ``size``: conv ``(out, in, kernel)``, transposed conv ``(in, out, kernel)`` (torch's weight
    shapes), snake ``(channels,)``, codebook ``(codes, dim)``.
    """

    ours: str
    hf: str
    kind: str  # "conv" | "convtr" | "snake" | "codebook"
    size: tuple[int, ...]


def _residual(ours: str, first: int, hf: str, dim: int, dilations: list[int],
              kernel: int) -> list[Layer]:
    """The residual units ``ours.{first + j}`` / ``hf.res_unit{j + 1}`` of one block."""
    out = []
    for j, _ in enumerate(dilations):
        o, h = f"{ours}.{first + j}.block", f"{hf}.res_unit{j + 1}"
        out += [Layer(f"{o}.0", f"{h}.snake1", "snake", (dim,)),
                Layer(f"{o}.1", f"{h}.conv1", "conv", (dim, dim, kernel)),
                Layer(f"{o}.2", f"{h}.snake2", "snake", (dim,)),
                Layer(f"{o}.3", f"{h}.conv2", "conv", (dim, dim, 1))]
    return out


def dac_layers(spec: DACSpec) -> list[Layer]:
    """Every parametrised layer of a Descript-shaped DAC of this spec, in module order."""
    dil, kern, r = list(spec.dilations), spec.residual_kernel, len(spec.dilations)
    d = spec.encoder_dim
    layers = [Layer("encoder.block.0", "encoder.conv1", "conv", (d, 1, 7))]
    for i, stride in enumerate(spec.encoder_rates):
        ours, hf = f"encoder.block.{i + 1}", f"encoder.block.{i}"
        layers += _residual(f"{ours}.block", 0, hf, d, dil, kern)
        layers += [Layer(f"{ours}.block.{r}", f"{hf}.snake1", "snake", (d,)),
                   Layer(f"{ours}.block.{r + 1}", f"{hf}.conv1", "conv", (2 * d, d, 2 * stride))]
        d *= 2
    n = len(spec.encoder_rates)
    layers += [Layer(f"encoder.block.{n + 1}", "encoder.snake1", "snake", (d,)),
               Layer(f"encoder.block.{n + 2}", "encoder.conv2", "conv", (spec.latent_dim, d, 3))]
    for k, size in enumerate(spec.codebook_sizes):
        q = f"quantizer.quantizers.{k}"
        layers += [Layer(f"{q}.in_proj", f"{q}.in_proj", "conv",
                         (spec.codebook_dim, spec.latent_dim, 1)),
                   Layer(f"{q}.out_proj", f"{q}.out_proj", "conv",
                         (spec.latent_dim, spec.codebook_dim, 1)),
                   Layer(f"{q}.codebook", f"{q}.codebook", "codebook", (size, spec.codebook_dim))]
    d = spec.decoder_dim
    layers.append(Layer("decoder.model.0", "decoder.conv1", "conv", (d, spec.latent_dim, 7)))
    for i, stride in enumerate(spec.decoder_rates):
        ours, hf = f"decoder.model.{i + 1}.block", f"decoder.block.{i}"
        layers += [Layer(f"{ours}.0", f"{hf}.snake1", "snake", (d,)),
                   Layer(f"{ours}.1", f"{hf}.conv_t1", "convtr", (d, d // 2, 2 * stride))]
        d //= 2
        layers += _residual(ours, 2, hf, d, dil, kern)  # after the snake and the upsampler
    m = len(spec.decoder_rates)
    layers += [Layer(f"decoder.model.{m + 1}", "decoder.snake1", "snake", (d,)),
               Layer(f"decoder.model.{m + 2}", "decoder.conv2", "conv", (1, d, 7))]
    return layers


def key_map(spec: DACSpec, naming: str, form: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """``{upstream key: (our key, upstream shape)}`` for every tensor of a file of this spec
    in ``naming`` ("descript" | "transformers") with weight-norm ``form`` (see the module
    docstring). Snake alphas are the only keys whose shape changes ((1, C, 1) -> (C,))."""
    if naming not in NAMINGS or form not in WEIGHT_LEAVES:
        raise ValueError(f"naming must be one of {NAMINGS} and form one of {tuple(WEIGHT_LEAVES)}")
    out: dict[str, tuple[str, tuple[int, ...]]] = {}
    for layer in dac_layers(spec):
        up = layer.ours if naming == "descript" else layer.hf
        if layer.kind == "snake":
            out[f"{up}.alpha"] = (f"{layer.ours}.alpha", (1, layer.size[0], 1))
        elif layer.kind == "codebook":
            out[f"{up}.weight"] = (f"{layer.ours}.weight", layer.size)
        else:
            a, b, k = layer.size  # weight (a, b, k); the norm's gain and the bias
            bias = b if layer.kind == "convtr" else a
            for src, dst in WEIGHT_LEAVES[form].items():
                shape = (a, 1, 1) if dst == "weight_g" else (a, b, k)
                out[f"{up}.{src}"] = (f"{layer.ours}.{dst}", shape)
            out[f"{up}.bias"] = (f"{layer.ours}.bias", (bias,))
    ours = [v[0] for v in out.values()]
    assert len(set(ours)) == len(ours), "DAC key map names one of our keys twice"
    return out


def weight_norm_form(keys: Any, where: str) -> str:
    """``"weight_norm"``, ``"parametrizations"`` or ``"plain"``: how a file stores its conv
    weights. A file mixing forms is a :class:`CheckpointError` naming one key of each."""
    found: dict[str, str] = {}
    for key in keys:
        form = next((f for f, marker in _FORM_MARKERS if marker in key), None)
        if form is None and key.endswith(".weight") and not key.endswith("codebook.weight"):
            form = "plain"
        if form is not None:
            found.setdefault(form, key)
    if len(found) > 1:
        raise CheckpointError(f"{where}: mixes weight-norm forms ("
                              + ", ".join(f"{f}: {k}" for f, k in sorted(found.items()))
                              + "); expected one form throughout")
    if not found:
        raise CheckpointError(f"{where}: no convolution weights (weight, weight_g/weight_v or "
                              "parametrizations.weight.original0/1) found")
    return next(iter(found))


def convert_state(state: dict[str, Any], spec: DACSpec, naming: str, *,
                  where: str) -> tuple[dict[str, np.ndarray], bool]:
    """``(our torch-layout float32 state, weight_norm)`` of an upstream ``state`` in ``naming``.

    ``weight_norm`` is False for a plain-weight file: build the model with
    ``spec.replace(weight_norm=False)``. Keys, shapes, dtypes and finiteness are checked here
    in the file's own names, before anything is copied.
    """
    form = weight_norm_form(state, where)
    kmap = key_map(spec, naming, form)
    unknown = sorted(set(state) - set(kmap))
    missing = sorted(set(kmap) - set(state))
    if unknown or missing:
        who = "Descript" if naming == "descript" else "transformers"
        raise CheckpointError(f"{where}: keys do not match a {who} DAC of this architecture: "
                              f"unexpected {short(unknown)}; missing {short(missing)}")
    out: dict[str, np.ndarray] = {}
    bad: list[str] = []
    for src, (dst, shape) in kmap.items():
        arr = _as_numpy(state[src])
        if tuple(arr.shape) != shape:
            bad.append(f"{src} {tuple(arr.shape)} != {shape}")
        elif not np.issubdtype(arr.dtype, np.floating):
            bad.append(f"{src} is {arr.dtype}, not floating point")
        elif not np.all(np.isfinite(arr)):
            bad.append(f"{src} has non-finite values")
        else:
            arr = np.asarray(arr, dtype=np.float32)
            out[dst] = np.ascontiguousarray(arr.reshape(-1) if dst.endswith(".alpha") else arr)
    if bad:
        more = f" (+{len(bad) - 4} more)" if len(bad) > 4 else ""
        raise CheckpointError(f"{where}: {'; '.join(bad[:4])}{more}")
    assert len(out) == len(kmap)
    return out, form != "plain"

"""Upstream parity: transformers' ``DacModel`` and Descript's original ``.pth`` layout, random
init, saved in their own formats, loaded through ``mlx_speech.load`` / ``torch_ref.load``
(no ``family=``) and compared: codes identical, audio within 1e-4.

Descript's and transformers' decoders give odd strides no ``output_padding``, so a
``[5, 4, 2]`` decoder returns ``F * hop - 8`` samples; ours computes the same samples and
appends the missing 8 as zeros (``F * hop`` in all), pinned by
:func:`test_odd_strides_end_in_zeros`.

Descript's own package (``dac``) needs torchaudio; where it installs, :func:`test_descript_package`
checks a ``dac.DAC`` saved by its own ``save(..., package=False)``. Elsewhere the release layout
is written here from a transformers model, with Descript's key names written out independently
of ``mlx_speech/models/dac/keys.py``.
"""

from __future__ import annotations

import math
import re

import mlx.core as mx
import numpy as np
import pytest
import torch

import mlx_speech
import torch_ref
from convert.parity import compare
from mlx_speech.audio.synth import speechlike
from mlx_speech.models.dac.hf import spec_from_hf_config
from mlx_speech.models.dac.keys import convert_state
from mlx_speech.models.dac.spec import DACSpec
from torch_ref.models.dac.model import DACModel
from torch_ref.weights import load_torch_state

transformers = pytest.importorskip("transformers")

AUDIO_ATOL = 1e-4
SMALL = dict(encoder_hidden_size=8, downsampling_ratios=[2, 4, 5], decoder_hidden_size=64,
             n_codebooks=4, codebook_size=64, codebook_dim=4, sampling_rate=16000)  # hop 40
WIDE = dict(SMALL, encoder_hidden_size=2, downsampling_ratios=[2, 4, 8, 8])  # 44.1 kHz ratios
CONFIGS = {"stride5": SMALL, "default_ratios": WIDE}
FRAMES = 24


def randomise(model: torch.nn.Module, seed: int = 0) -> None:
    """Weights that keep every layer's scale near 1 (the default init shrinks the signal to
    ~1e-2, so an audio tolerance would test nothing): convs N(0, 0.7^2 / fan_in), small biases,
    alphas in [0.5, 1.5], N(0, 1) codebooks. Works before or after ``torch.nn.utils.weight_norm``."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
                shape = (module.weight_v if hasattr(module, "weight_v") else module.weight).shape
                fan = module.in_channels * module.kernel_size[0]
                w = torch.randn(shape, generator=gen) * (0.7 / math.sqrt(fan))
                if hasattr(module, "weight_v"):  # classic weight norm: weight = g * v / |v|
                    module.weight_v.copy_(w)
                    module.weight_g.copy_(torch.linalg.vector_norm(w, dim=(1, 2), keepdim=True))
                else:
                    module.weight.copy_(w)
                module.bias.copy_(0.02 * torch.randn(module.bias.shape, generator=gen))
            elif isinstance(module, torch.nn.Embedding):
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen))
            elif hasattr(module, "alpha"):
                module.alpha.copy_(0.5 + torch.rand(module.alpha.shape, generator=gen))


def wav_batch(num_samples: int) -> np.ndarray:
    seconds = (num_samples + 1) / 16000
    return np.stack([speechlike(sr=16000, seconds=seconds, f0=110.0 + 60 * b, seed=b)[:num_samples]
                     for b in range(2)]).astype(np.float32)


def check_audio(ours, theirs: np.ndarray, rates: list[int], name: str) -> None:
    """``ours`` equals ``theirs`` over every sample they return (the rest is a zero tail)."""
    ours = np.asarray(ours)
    assert ours.shape[1] >= theirs.shape[1]
    compare(ours[:, :theirs.shape[1]], theirs, atol=AUDIO_ATOL, name=name)


def hf_run(model, wav: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """transformers' codes (B, K, F) and decoded audio (B, T') of ``wav`` (B, T)."""
    with torch.no_grad():
        out = model.encode(torch.from_numpy(wav)[:, None])  # DacModel takes (B, 1, T)
        audio = model.decode(audio_codes=out.audio_codes).audio_values
    return out.audio_codes.numpy().astype(np.int32), audio.numpy()


def ours_run(path, wav: np.ndarray, codes: np.ndarray) -> dict:
    m, t = mlx_speech.load(path), torch_ref.load(path)
    with torch.no_grad():
        t_codes = t.encode(torch.from_numpy(wav)).numpy()
        t_audio = t.decode(torch.from_numpy(codes)).numpy()
    return {"mlx": m, "torch": t, "mlx_codes": np.array(m.encode(mx.array(wav))),
            "torch_codes": t_codes, "mlx_audio": np.array(m.decode(mx.array(codes))),
            "torch_audio": t_audio}


def hf_model(config: dict, *, weight_norm: bool):
    model = transformers.DacModel(transformers.DacConfig(**config)).eval()
    randomise(model)
    if weight_norm:
        model.apply_weight_norm()  # torch >= 2.1: parametrizations.weight.original0 / 1
    return model


@pytest.fixture(scope="module", params=[(c, wn) for c in CONFIGS for wn in (False, True)],
                ids=lambda p: f"{p[0]}-{'wn' if p[1] else 'plain'}")
def hf_case(request, tmp_path_factory):
    name, weight_norm = request.param
    config = CONFIGS[name]
    model = hf_model(config, weight_norm=weight_norm)
    path = tmp_path_factory.mktemp(f"hf_{name}")
    model.save_pretrained(path)
    wav = wav_batch(FRAMES * math.prod(config["downsampling_ratios"]))
    codes, audio = hf_run(model, wav)
    return config, weight_norm, codes, audio, ours_run(path, wav, codes)


@pytest.mark.upstream
def test_transformers_codes_and_audio_match(hf_case):
    config, weight_norm, codes, audio, ours = hf_case
    assert codes.shape == (2, 4, FRAMES)
    assert min(len(np.unique(codes[:, k])) for k in range(4)) >= 4  # codes are not trivial
    assert 0.05 < np.abs(audio).max() < 0.99  # neither silent nor saturated
    assert (ours["mlx_codes"] == codes).all() and (ours["torch_codes"] == codes).all()
    rates = config["downsampling_ratios"][::-1]
    check_audio(ours["mlx_audio"], audio, rates, "mlx decode")
    check_audio(ours["torch_audio"], audio, rates, "torch_ref decode")
    assert ours["mlx"].spec.weight_norm is weight_norm and ours["torch"].spec.weight_norm is weight_norm
    assert ("encoder.block.0.weight_g" in ours["torch"].state_dict()) is weight_norm


@pytest.mark.upstream
def test_odd_strides_end_in_zeros(hf_case):
    """Descript returns ``F * hop - 8`` samples for ``[5, 4, 2]``; ours the same ones plus 8 zeros."""
    config, _, _, audio, ours = hf_case
    rates = config["downsampling_ratios"][::-1]
    hop = math.prod(rates)
    for key in ("mlx_audio", "torch_audio"):
        assert np.asarray(ours[key]).shape == (2, FRAMES * hop)
    if all(s % 2 == 0 for s in rates):
        assert audio.shape == (2, FRAMES * hop)
        return
    assert rates == [5, 4, 2] and audio.shape == (2, FRAMES * hop - 8)
    for key in ("mlx_audio", "torch_audio"):
        assert not np.asarray(ours[key])[:, audio.shape[1]:].any()
        compare(np.asarray(ours[key])[:, :audio.shape[1]], audio, atol=AUDIO_ATOL, name=key)


@pytest.mark.upstream
def test_transformers_does_not_pad_to_a_hop():
    """DacModel drops a partial last frame; ours zero-pads it (as Descript's ``preprocess``):
    on the padded input the codes agree."""
    model = hf_model(SMALL, weight_norm=False)
    wav = wav_batch(FRAMES * 40 - 17)
    codes_hf, _ = hf_run(model, wav)
    padded, _ = hf_run(model, np.pad(wav, [(0, 0), (0, 17)]))
    assert codes_hf.shape[2] < FRAMES == padded.shape[2]
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    spec = spec_from_hf_config(model.config.to_dict()).replace(weight_norm=False)
    ours = load_torch_state(DACModel(spec), convert_state(state, spec, "transformers",
                                                          where="test")[0]).eval()
    with torch.no_grad():
        assert (ours.encode(torch.from_numpy(wav)).numpy() == padded).all()


# --- Descript's release layout -----------------------------------------------------------
_HF_TO_DESCRIPT = [  # (pattern, replacement builder); encoder/decoder block counts n
    (r"^encoder\.conv1\.", lambda m, n: "encoder.block.0."),
    (r"^encoder\.block\.(\d+)\.res_unit(\d)\.(snake1|conv1|snake2|conv2)\.",
     lambda m, n: f"encoder.block.{int(m[1]) + 1}.block.{int(m[2]) - 1}.block."
                  f"{['snake1', 'conv1', 'snake2', 'conv2'].index(m[3])}."),
    (r"^encoder\.block\.(\d+)\.snake1\.", lambda m, n: f"encoder.block.{int(m[1]) + 1}.block.3."),
    (r"^encoder\.block\.(\d+)\.conv1\.", lambda m, n: f"encoder.block.{int(m[1]) + 1}.block.4."),
    (r"^encoder\.snake1\.", lambda m, n: f"encoder.block.{n + 1}."),
    (r"^encoder\.conv2\.", lambda m, n: f"encoder.block.{n + 2}."),
    (r"^decoder\.conv1\.", lambda m, n: "decoder.model.0."),
    (r"^decoder\.block\.(\d+)\.snake1\.", lambda m, n: f"decoder.model.{int(m[1]) + 1}.block.0."),
    (r"^decoder\.block\.(\d+)\.conv_t1\.", lambda m, n: f"decoder.model.{int(m[1]) + 1}.block.1."),
    (r"^decoder\.block\.(\d+)\.res_unit(\d)\.(snake1|conv1|snake2|conv2)\.",
     lambda m, n: f"decoder.model.{int(m[1]) + 1}.block.{int(m[2]) + 1}.block."
                  f"{['snake1', 'conv1', 'snake2', 'conv2'].index(m[3])}."),
    (r"^decoder\.snake1\.", lambda m, n: f"decoder.model.{n + 1}."),
    (r"^decoder\.conv2\.", lambda m, n: f"decoder.model.{n + 2}."),
    (r"^quantizer\.", lambda m, n: "quantizer."),
]


def descript_name(hf_key: str, n: int, form: str) -> str:
    """Descript's name for a transformers key (``form``: ``weight_norm`` spells weight norm
    ``weight_g`` / ``weight_v`` as Descript's releases do, ``parametrizations`` keeps torch's)."""
    for pattern, build in _HF_TO_DESCRIPT:
        m = re.match(pattern, hf_key)
        if m:
            key = build(m, n) + hf_key[m.end():]
            if form == "weight_norm":
                key = key.replace("parametrizations.weight.original0", "weight_g")
                key = key.replace("parametrizations.weight.original1", "weight_v")
            return key
    raise AssertionError(f"no Descript name for {hf_key}")


def descript_kwargs(config: dict) -> dict:
    """``metadata["kwargs"]`` as audiotools' ``BaseModel.save`` writes it for ``DAC``:
    the constructor's defaults overwritten by same-named attributes (``quantizer_dropout`` is no
    attribute of ``DAC``, so it stays ``False``)."""
    ratios = list(config["downsampling_ratios"])
    return {"encoder_dim": config["encoder_hidden_size"], "encoder_rates": ratios,
            "latent_dim": config["encoder_hidden_size"] * 2 ** len(ratios),
            "decoder_dim": config["decoder_hidden_size"], "decoder_rates": ratios[::-1],
            "n_codebooks": config["n_codebooks"], "codebook_size": config["codebook_size"],
            "codebook_dim": config["codebook_dim"], "quantizer_dropout": False,
            "sample_rate": config["sampling_rate"]}


def write_descript_pth(path, model, config: dict, form: str) -> None:
    """A weight-normed transformers model saved in Descript's release layout."""
    n = len(config["downsampling_ratios"])
    state = {descript_name(k, n, form): v.detach().clone()
             for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "metadata": {"kwargs": descript_kwargs(config)}}, path)


@pytest.mark.upstream
@pytest.mark.parametrize("form", ["weight_norm", "parametrizations"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_descript_pth_matches_its_source(tmp_path, name, form):
    config = CONFIGS[name]
    model = hf_model(config, weight_norm=True)
    path = tmp_path / "weights.pth"
    write_descript_pth(path, model, config, form)
    wav = wav_batch(FRAMES * math.prod(config["downsampling_ratios"]))
    codes, audio = hf_run(model, wav)
    ours = ours_run(path, wav, codes)
    spec = ours["mlx"].spec
    assert isinstance(spec, DACSpec) and spec.weight_norm and not spec.causal
    assert spec.encoder_rates == config["downsampling_ratios"] and spec.codebook_sizes == [64] * 4
    assert (ours["mlx_codes"] == codes).all() and (ours["torch_codes"] == codes).all()
    rates = config["downsampling_ratios"][::-1]
    check_audio(ours["mlx_audio"], audio, rates, f"mlx decode ({form})")
    check_audio(ours["torch_audio"], audio, rates, f"torch_ref decode ({form})")


@pytest.mark.upstream
@pytest.mark.parametrize("rates", [[2, 4, 5], [2, 4, 8, 8]])
def test_descript_package(tmp_path, rates):
    """Descript's own ``DAC``, saved by its own ``save`` (weights layout), against ours."""
    dac = pytest.importorskip("dac", reason="descript-audio-codec not installed")
    kwargs = dict(encoder_dim=8 if len(rates) == 3 else 2, encoder_rates=rates,
                  decoder_dim=64, decoder_rates=rates[::-1], n_codebooks=4, codebook_size=64,
                  codebook_dim=4, sample_rate=16000)
    torch.manual_seed(0)
    up = dac.DAC(**kwargs).eval()
    randomise(up)
    path = tmp_path / "weights.pth"
    up.save(str(path), package=False)  # {"state_dict", "metadata": {"kwargs"}}
    wav = wav_batch(FRAMES * math.prod(rates))
    with torch.no_grad():
        x = up.preprocess(torch.from_numpy(wav)[:, None], 16000)
        z, codes, *_ = up.encode(x)
        audio = up.decode(z)[:, 0].numpy()
    codes = codes.numpy().astype(np.int32)
    ours = ours_run(path, wav, codes)
    assert (ours["mlx_codes"] == codes).all() and (ours["torch_codes"] == codes).all()
    check_audio(ours["mlx_audio"], audio, rates[::-1], "mlx decode (dac package)")
    check_audio(ours["torch_audio"], audio, rates[::-1], "torch_ref decode (dac package)")

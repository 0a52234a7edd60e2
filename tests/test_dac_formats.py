"""DAC checkpoint formats: the key map is our module tree, which paths are DAC weights, our tagged
file, and bad input (a tampered, truncated, unsafe or foreign file is one CheckpointError line
naming the file). Parity against the upstream models is in ``test_dac_upstream.py``."""

from __future__ import annotations

import json
import pickle

import mlx.core as mx
import numpy as np
import pytest
import torch

import mlx_speech
import torch_ref
from mlx_speech.errors import CheckpointError
from mlx_speech.models.dac.formats import detect_format, recognise
from mlx_speech.models.dac.keys import key_map
from mlx_speech.models.dac.load import load_dac, save_dac
from mlx_speech.models.dac.spec import DACSpec, dac_16khz, dac_tiny
from torch_ref.models.dac.load import load_dac_torch
from torch_ref.models.dac.model import DACModel as TorchDAC

SPEC = DACSpec(sample_rate=16000, encoder_dim=4, encoder_rates=[2, 4, 5], decoder_dim=32,
               decoder_rates=[5, 4, 2], codebook_sizes=[32] * 3, codebook_dim=4)
KWARGS = {"encoder_dim": 4, "encoder_rates": [2, 4, 5], "latent_dim": 32, "decoder_dim": 32,
          "decoder_rates": [5, 4, 2], "n_codebooks": 3, "codebook_size": 32, "codebook_dim": 4,
          "quantizer_dropout": False, "sample_rate": 16000}


def source_model() -> TorchDAC:
    torch.manual_seed(0)
    return TorchDAC(SPEC).eval()


def descript_state(model: TorchDAC) -> dict[str, torch.Tensor]:
    """Our names are Descript's; only Snake's alpha is stored (1, C, 1) there."""
    return {k: (v.reshape(1, -1, 1) if k.endswith(".alpha") else v).clone()
            for k, v in model.state_dict().items()}


def write_pth(path, state, kwargs=KWARGS) -> None:
    torch.save({"state_dict": state, "metadata": {"kwargs": kwargs}}, path)


def wav(n: int = 400) -> np.ndarray:
    return (0.3 * np.sin(np.arange(n) * 0.07)[None]).astype(np.float32)


def one_line(exc: pytest.ExceptionInfo, *fragments: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and "weights_only" not in msg and "safe_globals" not in msg, msg
    for frag in fragments:
        assert frag in msg, msg
    return msg


# --- the key map ---------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [SPEC, dac_tiny(), SPEC.replace(weight_norm=False),
                                  dac_16khz().replace(encoder_dim=2, decoder_dim=32,
                                                      codebook_sizes=[16] * 2, num_codebooks=2)],
                         ids=["descript_small", "tiny_mixed_sizes", "plain", "16khz_ratios"])
def test_key_map_is_our_module_tree(spec):
    ours = TorchDAC(spec).state_dict()
    forms = ["weight_norm", "parametrizations"] if spec.weight_norm else ["plain"]
    for form in forms:
        kmap = key_map(spec, "descript", form)
        assert {dst for dst, _ in kmap.values()} == set(ours)
        for src, (dst, shape) in kmap.items():
            want = (1, ours[dst].shape[0], 1) if dst.endswith(".alpha") else tuple(ours[dst].shape)
            assert shape == want, (src, shape, want)


@pytest.mark.parametrize("weight_norm", [False, True])
def test_key_map_is_transformers_module_tree(weight_norm):
    transformers = pytest.importorskip("transformers")
    config = transformers.DacConfig(encoder_hidden_size=4, downsampling_ratios=[2, 4, 5],
                                    decoder_hidden_size=32, n_codebooks=3, codebook_size=32,
                                    codebook_dim=4)
    hf = transformers.DacModel(config)
    if weight_norm:
        hf.apply_weight_norm()
    kmap = key_map(SPEC, "transformers", "parametrizations" if weight_norm else "plain")
    assert {k: tuple(v.shape) for k, v in hf.state_dict().items()} == \
        {k: shape for k, (_, shape) in kmap.items()}


# --- recognising and loading ---------------------------------------------------------------
def test_descript_pth_round_trips_both_frameworks(tmp_path):
    src = source_model()
    path = tmp_path / "weights.pth"
    write_pth(path, descript_state(src))
    assert recognise(path) and detect_format(path) == "descript"
    m, t = mlx_speech.load(path), torch_ref.load(path)  # found without family=
    assert m.spec == t.spec == SPEC and not m.training and not t.training
    for k, v in src.state_dict().items():
        assert torch.equal(t.state_dict()[k], v), k
    with torch.no_grad():
        codes = src.encode(torch.from_numpy(wav())).numpy()
    assert (np.array(m.encode(mx.array(wav()))) == codes).all()
    assert load_dac(path, num_codebooks=2).num_codebooks == 2


def test_bare_state_dict_needs_a_spec(tmp_path):
    path = tmp_path / "bare.pt"
    torch.save(descript_state(source_model()), path)
    assert recognise(path)
    with pytest.raises(CheckpointError) as exc:
        load_dac(path)
    one_line(exc, str(path), "spec=")
    assert load_dac_torch(path, spec=SPEC).spec == SPEC


def _pth(tmp_path, model) -> str:
    path = tmp_path / "weights.pth"
    write_pth(path, descript_state(model))
    return str(path)


def test_tagged_file_round_trips(tmp_path):
    src = source_model()
    for fmt, model in (("torch", src), ("mlx", load_dac(_pth(tmp_path, src)))):
        path = tmp_path / f"ours_{fmt}.safetensors"
        save_dac(path, model)
        assert recognise(path) and detect_format(path) == "mlx-speech"
        t = torch_ref.load(path, num_codebooks=1)
        assert t.num_codebooks == 1 and t.spec.replace(num_codebooks=3) == SPEC
        for k, v in src.state_dict().items():
            assert torch.allclose(t.state_dict()[k], v), k
        assert mlx_speech.load(path).spec == SPEC
        with pytest.raises(CheckpointError) as exc:
            load_dac(path, spec=SPEC)
        one_line(exc, str(path), "spec=")


def test_what_is_not_dac(tmp_path):
    other = tmp_path / "g_00000001.pth"  # a HiFi-GAN generator checkpoint
    torch.save({"generator": {"conv_pre.weight_g": torch.ones(4, 1, 1)}}, other)
    mimi = tmp_path / "mimi"
    mimi.mkdir()
    (mimi / "config.json").write_text(json.dumps({"model_type": "mimi"}))
    (mimi / "model.safetensors").write_bytes(b"")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    for path in (other, mimi, text, tmp_path / "missing.pth"):
        assert not recognise(path), path


# --- bad input -----------------------------------------------------------------------------
def _tamper(state: dict, how: str) -> str:
    """Damage ``state`` in place; returns the key the error must name."""
    if how == "unmapped key":
        state["encoder.block.1.block.9.weight_g"] = torch.ones(4, 1, 1)
        return "encoder.block.1.block.9.weight_g"
    if how == "missing key":
        del state["decoder.model.0.bias"]
        return "decoder.model.0.bias"
    key = {"shape": "decoder.model.1.block.1.weight_v", "alpha shape": "encoder.block.1.block.3.alpha",
           "int dtype": "quantizer.quantizers.0.codebook.weight",
           "nan": "encoder.block.0.weight_v", "mixed forms": "encoder.block.0.weight_g"}[how]
    v = state[key]
    if how in ("shape", "alpha shape"):
        state[key] = v[:, :-1]
    elif how == "int dtype":
        state[key] = v.round().to(torch.int32)
    elif how == "nan":
        state[key] = v.clone().fill_(float("nan"))
    else:  # one conv in torch's parametrizations spelling, the rest classic
        key = "encoder.block.0.parametrizations.weight.original0"
        state[key] = state.pop("encoder.block.0.weight_g")
        state[key[:-1] + "1"] = state.pop("encoder.block.0.weight_v")
    return key


@pytest.mark.parametrize("how", ["unmapped key", "missing key", "shape", "alpha shape",
                                 "int dtype", "nan", "mixed forms"])
def test_tampered_pth_is_one_line(tmp_path, how):
    state = descript_state(source_model())
    key = _tamper(state, how)
    path = tmp_path / "weights.pth"
    write_pth(path, state)
    for loader in (load_dac, load_dac_torch, mlx_speech.load, torch_ref.load):
        with pytest.raises(CheckpointError) as exc:
            loader(path)
        one_line(exc, str(path), key)


@pytest.mark.parametrize("kwargs,fragment", [
    ({**KWARGS, "codebook_dim": [4, 8, 4]}, "per-level codebook_dim"),
    ({**KWARGS, "decoder_rates": [5, 4, 4]}, "same product"),
    ({**KWARGS, "n_codebooks": 4}, "quantizer.quantizers.3"),
])
def test_bad_metadata_is_one_line(tmp_path, kwargs, fragment):
    path = tmp_path / "weights.pth"
    write_pth(path, descript_state(source_model()), kwargs)
    with pytest.raises(CheckpointError) as exc:
        load_dac(path)
    one_line(exc, str(path), fragment)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize("how", ["truncated", "garbage", "unsafe", "other model"])
def test_unreadable_or_foreign_pth_is_one_line(tmp_path, how):
    path = tmp_path / "weights.pth"
    if how == "unsafe":
        with open(path, "wb") as fh:
            # protocol 2, torch's own: the unpickler reaches the global and refuses it by name
            pickle.dump({"state_dict": {}, "metadata": {"kwargs": _Payload()}}, fh, protocol=2)
    elif how == "other model":
        torch.save({"generator": {"conv_pre.weight": torch.ones(4, 1, 7)}}, path)
    else:
        good = tmp_path / "good.pth"
        write_pth(good, descript_state(source_model()))
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2] if how == "truncated"
                         else np.random.default_rng(0).bytes(len(data)))
    assert not recognise(path)
    with pytest.raises(CheckpointError) as exc:
        load_dac(path)
    one_line(exc, str(path), *(["GLOBAL print"] if how == "unsafe" else []))
    with pytest.raises(CheckpointError) as exc:
        mlx_speech.load(path)  # some other family may claim it: still one line
    one_line(exc, str(path))


def test_transformers_pickle_folder(tmp_path):
    """Older transformers wrote ``pytorch_model.bin``; it is read safely, like any pickle."""
    transformers = pytest.importorskip("transformers")
    config = transformers.DacConfig(encoder_hidden_size=4, downsampling_ratios=[2, 4, 5],
                                    decoder_hidden_size=32, n_codebooks=3, codebook_size=32,
                                    codebook_dim=4)
    hf = transformers.DacModel(config).eval()
    folder = tmp_path / "hf_bin"
    folder.mkdir()
    config.to_json_file(folder / "config.json")
    torch.save(hf.state_dict(), folder / "pytorch_model.bin")
    assert detect_format(folder) == detect_format(folder / "pytorch_model.bin") == "transformers"
    t = torch_ref.load(folder, num_codebooks=2)
    assert t.num_codebooks == 2 and not t.spec.weight_norm
    with torch.no_grad():
        want = hf.encode(torch.from_numpy(wav())[:, None], n_quantizers=2).audio_codes.numpy()
        assert (t.encode(torch.from_numpy(wav())).numpy() == want).all()


def test_bad_transformers_folders_are_one_line(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.DacConfig(encoder_hidden_size=4, downsampling_ratios=[2, 4, 5],
                                    decoder_hidden_size=32, n_codebooks=3, codebook_size=32,
                                    codebook_dim=4)
    folder = tmp_path / "hf"
    transformers.DacModel(config).save_pretrained(folder)
    assert recognise(folder) and recognise(folder / "model.safetensors")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "n_codebooks": 2}))
    with pytest.raises(CheckpointError) as exc:
        mlx_speech.load(folder)
    one_line(exc, "model.safetensors", "quantizer.quantizers.2")
    (folder / "config.json").write_text(json.dumps({**cfg, "downsampling_ratios": [2, 4, 5, 0]}))
    with pytest.raises(CheckpointError) as exc:
        load_dac(folder)
    one_line(exc, "config.json", "not a valid DAC config")

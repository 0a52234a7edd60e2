"""Specs: lenient from_dict, strict YAML with clear errors, presets, round trips."""

import dataclasses

import pytest

from mlx_speech.errors import SpecError
from mlx_speech.specs import MelSpec, Spec


@dataclasses.dataclass
class _Inner(Spec):
    dim: int = 8
    ratios: list[int] = dataclasses.field(default_factory=lambda: [8, 5])


@dataclasses.dataclass
class _Outer(Spec):
    name: str = "x"
    inner: _Inner = dataclasses.field(default_factory=_Inner)
    dropout: float = 0.0
    mode: str | None = None


def test_yaml_round_trip(tmp_path):
    spec = MelSpec.from_preset("speech_16k")
    path = tmp_path / "mel.yaml"
    spec.to_yaml(path)
    assert MelSpec.from_yaml(path) == spec
    assert MelSpec.from_yaml(path.read_text()) == spec


def test_unknown_key_names_key_suggestion_and_valid_keys():
    with pytest.raises(SpecError) as exc:
        MelSpec.from_yaml("n_mel: 64\n")
    msg = str(exc.value)
    assert "'n_mel'" in msg and "did you mean 'n_mels'" in msg and "hop_length" in msg
    assert "\n" not in msg


def test_wrong_type_names_field_and_expected_type():
    with pytest.raises(SpecError, match=r"MelSpec\.n_mels: expected int, got str"):
        MelSpec.from_yaml("n_mels: eighty\n")
    with pytest.raises(SpecError, match=r"expected int, got bool"):
        MelSpec.from_yaml("n_fft: true\n")
    with pytest.raises(SpecError, match=r"mel_scale: expected one of 'slaney', 'htk'"):
        MelSpec.from_yaml("mel_scale: bark\n")


def test_int_widens_to_float_but_not_reverse():
    assert MelSpec.from_yaml("f_min: 10\n").f_min == 10.0
    with pytest.raises(SpecError, match="hop_length: expected int, got float"):
        MelSpec.from_yaml("hop_length: 2.5\n")


def test_invalid_yaml_and_non_mapping():
    with pytest.raises(SpecError, match="invalid YAML at line"):
        MelSpec.from_yaml("n_mels: [1\n")
    with pytest.raises(SpecError, match="expected a mapping at top level"):
        MelSpec.from_yaml("- 1\n- 2\n")


def test_duplicate_key_is_an_error(tmp_path):
    # safe_load keeps the last value without a word; a repeated key is almost surely a mistake.
    with pytest.raises(SpecError, match=r"invalid YAML at line 3, column 1: duplicate key 'n_mels' \(first given at line 1\)"):
        MelSpec.from_yaml("n_mels: 80\nhop_length: 256\nn_mels: 128\n")
    path = tmp_path / "mel.yaml"
    path.write_text("n_mels: 80\nn_mels: 80\n")
    with pytest.raises(SpecError, match=r"mel.yaml: invalid YAML at line 2, column 1: duplicate key 'n_mels'"):
        MelSpec.from_yaml(path)
    # anchors and merge keys stay usable: an explicit key overrides a merged one
    from mlx_speech.specs.yaml_io import load_strict

    assert load_strict("a: &b {x: 1, y: 2}\nc:\n  <<: *b\n  x: 3\n")["c"] == {"x": 3, "y": 2}


def test_missing_file():
    with pytest.raises(SpecError, match="config file not found"):
        MelSpec.from_yaml("does/not/exist.yaml")


def test_value_validation():
    with pytest.raises(SpecError, match="win_length 4096 must be in 1..n_fft"):
        MelSpec.from_yaml("win_length: 4096\n")
    with pytest.raises(SpecError, match="f_max"):
        MelSpec.from_dict({"sample_rate": 16000, "f_max": 9000.0})


def test_from_dict_is_lenient_but_type_checked():
    spec = MelSpec.from_dict({"n_mels": 64, "architectures": ["Foo"], "torch_dtype": "float32"})
    assert spec.n_mels == 64
    with pytest.raises(SpecError):
        MelSpec.from_dict({"n_mels": "64"})


def test_nested_specs_and_lists():
    spec = _Outer.from_yaml("name: a\ninner:\n  dim: 4\n  ratios: [2, 3]\nmode: null\n")
    assert spec.inner == _Inner(dim=4, ratios=[2, 3])
    with pytest.raises(SpecError, match=r"_Outer\.inner\.ratios\[1\]: expected int"):
        _Outer.from_yaml("inner:\n  ratios: [2, x]\n")
    with pytest.raises(SpecError, match=r"unknown key 'dimm'"):
        _Outer.from_yaml("inner:\n  dimm: 4\n")
    assert _Outer.from_yaml(spec.to_yaml()) == spec


def test_presets_and_replace():
    assert "hifigan_22k" in MelSpec.presets()
    with pytest.raises(SpecError, match="unknown MelSpec preset 'nope'; known: bsq_16k, hifigan_22k"):
        MelSpec.from_preset("nope")
    s = MelSpec.from_preset("hifigan_22k").replace(n_mels=100)
    assert s.n_mels == 100
    with pytest.raises(SpecError):
        s.replace(n_mels="x")


def test_shipped_configs_load():
    from pathlib import Path

    cfgs = sorted((Path(__file__).parent.parent / "mlx_speech" / "configs").glob("mel_*.yaml"))
    assert cfgs, "expected shipped mel configs"
    for p in cfgs:
        assert MelSpec.from_yaml(p).n_mels > 0

"""Conversion core: layouts by declared kind, strict key matching, exact round trips, checkpoints."""

import json

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
import torch

from mlx_speech.weights.checkpoint import (convert_arrays, load_checkpoint, load_pickle_state, read_metadata,
                                save_checkpoint)
from convert.parity import copy_mlx_to_torch
from mlx_speech.weights.mlx import load_torch_state_into_mlx, mlx_to_numpy, mlx_to_torch_state
from mlx_speech.weights.core import param_kinds
from mlx_speech.weights.layout import to_mlx, to_torch
from mlx_speech.errors import CheckpointError


class _ConvLike(nn.Module):
    PARAM_KINDS = {"weight": "conv1d"}

    def __init__(self, o: int, i: int, k: int):
        super().__init__()
        self.weight = mx.random.normal((o, k, i))
        self.bias = mx.random.normal((o,))
        self._state = mx.zeros((3,))  # not a parameter


class _TConvLike(nn.Module):
    PARAM_KINDS = {"weight": "conv_transpose1d"}

    def __init__(self, i: int, o: int, k: int):
        super().__init__()
        self.weight = mx.random.normal((o, k, i))


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = _ConvLike(6, 4, 3)
        self.up = _TConvLike(6, 5, 4)
        self.proj = nn.Linear(5, 7)
        self.blocks = [_ConvLike(4, 4, 1), _ConvLike(4, 4, 5)]


class _TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(4, 6, 3)
        self.up = torch.nn.ConvTranspose1d(6, 5, 4, bias=False)
        self.proj = torch.nn.Linear(5, 7)
        self.blocks = torch.nn.ModuleList([torch.nn.Conv1d(4, 4, 1), torch.nn.Conv1d(4, 4, 5)])


def test_kinds_are_declared_not_guessed():
    kinds = param_kinds(_Net())
    assert kinds == {
        "conv.weight": "conv1d", "conv.bias": "plain", "up.weight": "conv_transpose1d",
        "proj.weight": "plain", "proj.bias": "plain",
        "blocks.0.weight": "conv1d", "blocks.0.bias": "plain",
        "blocks.1.weight": "conv1d", "blocks.1.bias": "plain",
    }


@pytest.mark.parametrize("kind,torch_shape,mlx_shape", [
    ("conv1d", (6, 4, 3), (6, 3, 4)),
    ("conv_transpose1d", (6, 5, 4), (5, 4, 6)),
    ("conv2d", (8, 3, 5, 7), (8, 5, 7, 3)),
    ("plain", (3, 2), (3, 2)),
], ids=["conv1d", "conv_transpose1d", "conv2d", "plain"])
def test_layout_helpers_round_trip_exactly(kind, torch_shape, mlx_shape):
    w = np.random.default_rng(0).standard_normal(torch_shape).astype(np.float32)
    m = to_mlx(kind, w)
    assert m.shape == mlx_shape
    back = to_torch(kind, m)
    assert back.dtype == w.dtype and np.array_equal(back, w)


def test_layout_matches_real_torch_ops():
    """The conv layouts agree with what torch and MLX convolutions actually compute."""
    rng = np.random.default_rng(1)
    tw = rng.standard_normal((6, 4, 3)).astype(np.float32)
    x = rng.standard_normal((2, 4, 11)).astype(np.float32)
    ref = torch.nn.functional.conv1d(torch.from_numpy(x), torch.from_numpy(tw)).numpy()
    got = mx.conv1d(mx.array(x.transpose(0, 2, 1)), mx.array(to_mlx("conv1d", tw)))
    np.testing.assert_allclose(np.array(got).transpose(0, 2, 1), ref, atol=1e-5)
    tw = rng.standard_normal((4, 6, 5)).astype(np.float32)  # ConvTranspose1d (I, O, K)
    ref = torch.nn.functional.conv_transpose1d(torch.from_numpy(x), torch.from_numpy(tw), stride=2).numpy()
    got = mx.conv_transpose1d(mx.array(x.transpose(0, 2, 1)), mx.array(to_mlx("conv_transpose1d", tw)), stride=2)
    np.testing.assert_allclose(np.array(got).transpose(0, 2, 1), ref, atol=1e-5)


def test_rank_mismatch_is_an_error():
    with pytest.raises(ValueError, match="declared conv1d"):
        to_mlx("conv1d", np.zeros((3, 3), np.float32), "x.weight")
    with pytest.raises(ValueError, match="unknown parameter kind"):
        to_mlx("conv3d", np.zeros((3, 3), np.float32))


def test_mlx_torch_mlx_round_trip_is_bit_exact():
    mx.random.seed(0)
    net = _Net()
    before = mlx_to_numpy(net)
    tnet = _TorchNet()
    copy_mlx_to_torch(net, tnet)
    net2 = _Net()
    load_torch_state_into_mlx(net2, tnet.state_dict())
    after = mlx_to_numpy(net2)
    assert before.keys() == after.keys()
    for k in before:
        assert np.array_equal(before[k], after[k]), k


def test_state_mismatch_names_keys():
    net = _Net()
    state = mlx_to_torch_state(net)
    del state["proj.bias"]
    state["proj.extra"] = np.zeros(1, np.float32)
    with pytest.raises(CheckpointError, match=r"missing proj\.bias; unexpected proj\.extra"):
        load_torch_state_into_mlx(net, state)
    state = mlx_to_torch_state(net)
    state["conv.weight"] = np.zeros((6, 4, 2), np.float32)
    with pytest.raises(CheckpointError, match=r"shape mismatch: conv\.weight"):
        load_torch_state_into_mlx(net, state)


def test_checkpoint_file_round_trip_and_tag(tmp_path):
    net = _Net()
    arrays = mlx_to_numpy(net)
    path = tmp_path / "net.safetensors"
    save_checkpoint(path, arrays, fmt="mlx", model="toy", spec={"dim": 4})
    meta = read_metadata(path)
    assert meta["format"] == "mlx" and meta["model"] == "toy" and json.loads(meta["spec"]) == {"dim": 4}
    loaded, _ = load_checkpoint(path)
    kinds = param_kinds(net)
    as_torch = convert_arrays(loaded, kinds, source="mlx", target="torch")
    back = convert_arrays(as_torch, kinds, source="torch", target="mlx")
    for k in arrays:
        assert np.array_equal(back[k], arrays[k])
    assert convert_arrays(loaded, kinds, source="mlx", target="mlx").keys() == arrays.keys()


def test_checkpoint_bad_inputs(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.safetensors")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty file"):
        load_checkpoint(tmp_path / "empty.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(tmp_path / "junk.safetensors")
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(2, np.float32)}, str(tmp_path / "untagged.safetensors"))
    with pytest.raises(CheckpointError, match="no mlx-speech metadata tag"):
        load_checkpoint(tmp_path / "untagged.safetensors")
    good = tmp_path / "good.safetensors"
    save_checkpoint(good, {"w": np.ones(4096, np.float32)}, fmt="mlx", model="toy", spec={})
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(CheckpointError):
        load_checkpoint(truncated)


def test_failed_save_keeps_existing_file(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, {"w": np.ones(3, np.float32)}, fmt="mlx", model="toy", spec={})
    original = path.read_bytes()
    with pytest.raises(CheckpointError, match="non-finite"):
        save_checkpoint(path, {"w": np.array([np.nan], np.float32)}, fmt="mlx", model="toy", spec={})
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.safetensors"]


def test_pickle_is_loaded_safely(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}}, good)
    assert set(load_pickle_state(good)) == {"w"}

    class _Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.pt"
    torch.save({"w": _Evil()}, bad)
    with pytest.raises(CheckpointError, match="refused or unreadable"):
        load_pickle_state(bad)

"""CausalBridgeQuantizer: heads, both arrangements, distillation losses, checkpoints, errors."""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from mlx.utils import tree_flatten

from cli import cli
from torch_ref.weights import load_torch_model
from mlx_speech.weights.mlx import save_mlx_model
from convert.parity import compare
from mlx_speech.errors import CodesError
from mlx_speech.quantize import CausalBridgeQuantizer, expand_durations
from mlx_speech.registry import get_model
from mlx_speech.specs.quantize import BridgeSpec, EMACodebookSpec
from torch_ref.quantize import expand_durations as t_expand_durations

PLAIN = EMACodebookSpec(kmeans_init=False)


def _bridge(arrangement="residual", **kw):
    mx.random.seed(0)
    args = dict(dim=16, arrangement=arrangement, content_size=32, prosody_size=16,
                acoustic_sizes=[16] * 7, qwen_dim=12, wavlm_dim=10, ema=PLAIN)
    args.update(kw)
    return CausalBridgeQuantizer(**args)


def test_expand_durations_matches_numpy_repeat(rng):
    hidden = rng.standard_normal((2, 4, 3)).astype(np.float32)
    durations = np.array([[2, 0, 3, 1], [1, 2, 2, 5]], dtype=np.int32)  # totals 6 and 10
    target, mask = expand_durations(mx.array(hidden), mx.array(durations), 8)
    for b in range(2):
        rep = np.repeat(hidden[b], durations[b], axis=0)[:8]
        n = len(rep)
        assert np.array_equal(np.array(target)[b, :n], rep)
        assert np.array_equal(np.array(mask)[b], (np.arange(8) < n).astype(np.float32))
    tt, tm = t_expand_durations(torch.from_numpy(hidden), torch.from_numpy(durations), 8)
    assert np.array_equal(tt.numpy(), np.array(target)) and np.array_equal(tm.numpy(), np.array(mask))


@pytest.mark.parametrize("gate", [1.0, 0.5, 0.0])
@pytest.mark.parametrize("arrangement", ["residual", "split"])
def test_heads_codes_and_eval_consistency(rng, arrangement, gate):
    br = _bridge(arrangement, vq_dim=8, content_gate_init=gate)
    br.eval()
    x = mx.array(rng.standard_normal((2, 20, 16)).astype(np.float32))
    out = br(x)
    assert out.codes.shape == (2, 9, 20) and out.codes.dtype == mx.int32
    codes = br.encode(x)
    assert np.array_equal(np.array(codes), np.array(out.codes))
    compare(br.decode(codes), out.quantized, atol=1e-6, name="q_total")
    compare(gate * out.content + out.prosody + br.decode(codes) - br.decode(codes[:, :2]),
            out.quantized, atol=1e-5, name="g q_c + q_p + q_a")
    q_g = gate * br.content.decode(codes[:, :1])
    compare(br.decode(codes[:, :1]), q_g, atol=1e-6, name="gated head 0")
    # prosody always quantizes x - g q_c
    assert np.array_equal(np.array(br.prosody.encode(x - q_g)), np.array(codes[:, 1:2]))
    if arrangement == "residual":  # acoustic on x - (g q_c + q_p)
        q_p = br.prosody.decode(codes[:, 1:2])
        assert np.array_equal(np.array(br.acoustic.encode(x - (q_g + q_p))), np.array(codes[:, 2:]))
    else:  # Mimi's split: acoustic quantizes the same input as prosody
        assert np.array_equal(np.array(br.acoustic.encode(x - q_g)), np.array(codes[:, 2:]))
    if gate == 0.0:  # head 0 gated off: heads 1.. do not depend on the content head at all
        assert np.array_equal(np.array(br.prosody.encode(x)), np.array(codes[:, 1:2]))
    for k in (1, 2, 5):
        assert np.array_equal(np.array(br.encode(x, num_levels=k)), np.array(codes[:, :k]))
        compare(br(x, num_levels=k).quantized, br.decode(codes[:, :k]), atol=1e-6)


def test_arrangements_share_parameter_names_and_gate_is_trained(rng):
    res, split = _bridge("residual", vq_dim=8), _bridge("split", vq_dim=8, content_gate_init=0.0)
    names = {k for k, _ in tree_flatten(res.parameters())}
    assert names == {k for k, _ in tree_flatten(split.parameters())}
    assert {"content_gate", "prosody.in_proj.weight",
            "acoustic.levels.6.codebook.cluster_usage"} <= names
    assert float(split.content_gate[0]) == 0.0 and float(res.content_gate[0]) == 1.0
    # a split checkpoint loads into a residual quantizer (the data flow changes, not the keys)
    res.load_weights(tree_flatten(split.parameters()), strict=True)
    assert float(res.content_gate[0]) == 0.0
    split.train()
    x = mx.array(rng.standard_normal((2, 12, 16)).astype(np.float32))

    def fn(model):
        return ((model(x).quantized - x) ** 2).mean()

    _, grads = nn.value_and_grad(split, fn)(split)
    assert float(mx.abs(grads["content_gate"]).sum()) > 0  # the gate opens by gradient


@pytest.mark.parametrize("arrangement", ["residual", "split"])
def test_distillation_losses_are_real(rng, arrangement):
    br = _bridge(arrangement, qwen_weight=0.5, wavlm_weight=2.0, commitment_weight=0.1)
    br.eval()
    b, f = 2, 20
    x = mx.array(rng.standard_normal((b, f, 16)).astype(np.float32))
    qwen = rng.standard_normal((b, 5, 12)).astype(np.float32)
    durations = np.array([[4, 4, 4, 4, 4], [3, 3, 3, 3, 3]], dtype=np.int32)  # 20 and 15 frames
    wavlm = rng.standard_normal((b, f, 10)).astype(np.float32)
    out = br(x, qwen_hidden=mx.array(qwen), durations=mx.array(durations),
             wavlm_features=mx.array(wavlm))
    pq = np.array(br.proj_qwen(out.content))
    num, den = 0.0, 0
    for i in range(b):
        rep = np.repeat(qwen[i], durations[i], axis=0)
        num += ((pq[i, :len(rep)] - rep) ** 2).mean(-1).sum()
        den += len(rep)
    np.testing.assert_allclose(float(out.losses["qwen"]), num / den, rtol=1e-5)
    pw = np.array(br.proj_wavlm(out.content + out.prosody))
    np.testing.assert_allclose(float(out.losses["wavlm"]), ((pw - wavlm) ** 2).mean(), rtol=1e-5)
    total = 0.1 * out.losses["commitment"] + 0.5 * out.losses["qwen"] + 2.0 * out.losses["wavlm"]
    np.testing.assert_allclose(float(out.losses["total"]), float(total), rtol=1e-6)

    br.train()

    def fn(model):
        return model(x, qwen_hidden=mx.array(qwen), durations=mx.array(durations),
                     wavlm_features=mx.array(wavlm)).losses["total"]

    _, grads = nn.value_and_grad(br, fn)(br)
    for name in ("proj_qwen", "proj_wavlm"):
        assert float(mx.abs(grads[name]["weight"]).sum()) > 0, name


def test_presets_and_checkpoint_round_trip_through_cli(rng, tmp_path):
    spec = BridgeSpec.from_preset("bridge_9")
    assert spec.num_codebooks == 9 and (spec.qwen_dim, spec.wavlm_dim) == (1536, 1024)
    assert BridgeSpec.from_preset("bridge_9_split").arrangement == "split"
    small = spec.replace(dim=16, content_size=32, prosody_size=32, acoustic_sizes=[16] * 7,
                         qwen_dim=8, wavlm_dim=8, ema=PLAIN.to_dict())
    mx.random.seed(1)
    m = get_model("bridge_quantizer").build_mlx(small)
    m.eval()
    src, dst = tmp_path / "bridge_mlx.safetensors", tmp_path / "bridge_torch.safetensors"
    save_mlx_model(src, m, model="bridge_quantizer", spec=small)
    res = CliRunner().invoke(cli, ["convert", "to-torch", str(src), str(dst)])
    assert res.exit_code == 0, res.output
    t, _ = load_torch_model(dst)
    t.eval()
    x = rng.standard_normal((2, 15, 16)).astype(np.float32)
    assert np.array_equal(np.array(m.encode(mx.array(x))), t.encode(torch.from_numpy(x)).numpy())
    assert "content.levels.0.codebook.cluster_usage" in t.state_dict()


def test_user_errors(rng):
    br = _bridge()
    x = mx.array(rng.standard_normal((1, 10, 16)).astype(np.float32))
    with pytest.raises(CodesError, match="need per-token durations"):
        br(x, qwen_hidden=mx.zeros((1, 3, 12)))
    with pytest.raises(CodesError, match=r"durations must be integer \(B, T\) = \(1, 3\)"):
        br(x, qwen_hidden=mx.zeros((1, 3, 12)), durations=mx.zeros((1, 4), dtype=mx.int32))
    with pytest.raises(CodesError, match="durations must be >= 0"):
        br(x, qwen_hidden=mx.zeros((1, 2, 12)), durations=mx.array([[3, -1]]))
    with pytest.raises(CodesError, match=r"WavLM features must be \(B, F, wavlm_dim\) = \(1, 10, 10\)"):
        br(x, wavlm_features=mx.zeros((1, 9, 10)))
    with pytest.raises(CodesError, match="code 16 in codebook 2"):
        br.decode(mx.array([[[0], [0], [16]]], dtype=mx.int32))
    with pytest.raises(ValueError, match="arrangement must be"):
        _bridge("parallel")

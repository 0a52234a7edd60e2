"""9-codebook Mimi + checkpoint surgery from Mimi (issue 9, part A).

Tiny Mimi configs are built with random init through moshi and transformers, their codebooks
filled (``test_mimi_upstream._randomize_upstream``), saved in their own formats and surgered.
Acceptance: with the split arrangement and head 0 gated off, heads 1-8 of the surgered model
give the original Mimi's codes 0-7 and the same audio (1e-4), in MLX and torch_ref.
"""

from __future__ import annotations

import json

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from mlx.utils import tree_flatten
from safetensors.numpy import load_file
from test_mimi_upstream import _randomize_upstream, _wav, moshi_tiny

from cli import cli
from mlx_speech.models.mimi.load import load_mimi, save_mimi
from torch_ref.models.mimi.load import load_mimi_torch
from convert.mimi_surgery import REPORT_FILE, WEIGHTS_FILE, load_mimi9, load_mimi9_torch, surgery
from convert.parity import compare
from mlx_speech.errors import CheckpointError, CodesError
from mlx_speech.models.mimi.model import build_mimi
from mlx_speech.models.mimi.spec import MimiSpec
from mlx_speech.models.mimi9.spec import Mimi9Spec

AUDIO_ATOL = 1e-4
TINY = MimiSpec.from_preset("mimi_tiny").replace(total_codebooks=8, num_codebooks=8)
DIMS = {"qwen_dim": 24, "wavlm_dim": 20}


def _moshi_tiny(spec: MimiSpec):
    return moshi_tiny(spec)


def _hf_tiny(spec: MimiSpec):
    transformers = pytest.importorskip("transformers", reason="transformers not installed")
    config = transformers.MimiConfig(
        hidden_size=spec.dimension, num_filters=spec.n_filters, upsampling_ratios=spec.ratios,
        num_hidden_layers=spec.num_layers, num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads, head_dim=spec.dimension // spec.num_heads,
        intermediate_size=spec.ffn_dim, sliding_window=spec.context,
        vector_quantization_hidden_dimension=spec.rvq_dim, codebook_dim=spec.rvq_dim,
        codebook_size=spec.codebook_size, num_quantizers=spec.total_codebooks,
        upsample_groups=spec.dimension, frame_rate=spec.frame_rate)
    torch.manual_seed(0)
    up = transformers.MimiModel(config).eval()
    _randomize_upstream(up, sum_name="embed_sum", flag_name="codebook.initialized", layer_scale=0.5)
    return up


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """{"moshi": (path, spec override, upstream), "transformers": (...)} of tiny random Mimis."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("mimi_src")
    moshi = _moshi_tiny(TINY)
    path = root / "tiny_moshi.safetensors"
    save_file({k: v.contiguous() for k, v in moshi.state_dict().items()}, str(path))
    hf = _hf_tiny(TINY)
    hf.save_pretrained(str(root / "tiny_hf"))
    return {"moshi": (path, TINY, moshi), "transformers": (root / "tiny_hf", None, hf)}


@pytest.fixture(scope="module")
def surgered(sources, tmp_path_factory):
    """(fmt, arrangement) -> (surgery report, output folder, original MLX Mimi, torch Mimi)."""
    out = {}
    for fmt, (path, spec, _) in sources.items():
        orig, orig_t = load_mimi(path, spec=spec), load_mimi_torch(path, spec=spec)
        for arr in ("split", "residual"):
            dst = tmp_path_factory.mktemp(f"{fmt}_{arr}")
            report = surgery(path, dst, arrangement=arr, spec=spec, echo=None, **DIMS)
            out[fmt, arr] = (report, dst, orig, orig_t)
    return out


def _snr(ref: np.ndarray, x: np.ndarray) -> float:
    return float(10 * np.log10((ref ** 2).sum() / max(((x - ref) ** 2).sum(), 1e-30)))


# --- acceptance: split surgery reproduces Mimi --------------------------------------------------
@pytest.mark.upstream
@pytest.mark.parametrize("fmt", ["moshi", "transformers"])
def test_split_surgery_reproduces_mimi(sources, surgered, fmt):
    _, dst, orig, orig_t = surgered[fmt, "split"]
    up = sources[fmt][2]
    m9, t9 = load_mimi9(dst), load_mimi9_torch(dst)
    assert float(m9.quantizer.content_gate[0]) == 0.0 and m9.num_codebooks == 9
    wav = _wav(0.04, batch=2)  # 960 samples = 20 whole frames of 48
    codes8 = orig.encode(mx.array(wav), num_codebooks=8)
    audio8 = orig.decode(codes8)
    with torch.no_grad():  # the upstream package's own codes
        if fmt == "moshi":
            codes_up = up.encode(torch.from_numpy(wav)[:, None]).numpy()
        else:
            codes_up = up.encode(torch.from_numpy(wav)[:, None], num_quantizers=8).audio_codes.numpy()
    np.testing.assert_array_equal(np.array(codes8), codes_up)

    codes9 = m9.encode(mx.array(wav))
    assert codes9.shape == (2, 9, 20) and codes9.dtype == mx.int32
    np.testing.assert_array_equal(np.array(codes9[:, 1:]), codes_up)
    compare(m9.decode(codes9), audio8, atol=AUDIO_ATOL, name=f"{fmt} mlx decode")
    m9.train()  # the training forward (EMA updates on; only the fresh head 0 changes)
    out = m9(mx.array(wav))
    m9.eval()
    np.testing.assert_array_equal(np.array(out.bridge.codes[:, 1:]), codes_up)
    compare(out.audio, audio8, atol=AUDIO_ATOL, name=f"{fmt} mlx training forward")

    codes9_t = t9.encode(torch.from_numpy(wav))
    np.testing.assert_array_equal(codes9_t[:, 1:].numpy(), codes_up)
    compare(t9.decode(codes9_t), audio8, atol=AUDIO_ATOL, name=f"{fmt} torch_ref decode")
    compare(t9(torch.from_numpy(wav)).audio.detach(), orig_t.decode(torch.from_numpy(codes_up)),
            atol=AUDIO_ATOL, name=f"{fmt} torch_ref training forward")


def test_surgery_from_our_own_mimi_file(surgered, tmp_path):
    _, _, orig, _ = surgered["moshi", "split"]
    src = tmp_path / "mimi.safetensors"
    save_mimi(src, orig)
    report = surgery(src, tmp_path / "out", echo=None, **DIMS)
    assert report["source_format"] == "mlx-speech"
    m9 = load_mimi9(tmp_path / "out")
    wav = mx.array(_wav(0.04))
    codes8 = orig.encode(wav, num_codebooks=8)
    codes9 = m9.encode(wav)
    np.testing.assert_array_equal(np.array(codes9[:, 1:]), np.array(codes8))
    compare(m9.decode(codes9), orig.decode(codes8), atol=AUDIO_ATOL, name="tagged source")


# --- residual arrangement at surgery ----------------------------------------------------------
@pytest.mark.upstream
def test_residual_arrangement_keeps_head_1_only(surgered):
    """residual: head 1 still == Mimi codebook 0 (g = 0), heads 2-8 quantize x - q_p instead of
    x, so their codes and the audio move away from Mimi's. Same tensors as the split file."""
    report, dst, orig, _ = surgered["moshi", "residual"]
    split_report, split_dst, _, _ = surgered["moshi", "split"]
    assert report["tensors"] == split_report["tensors"]
    a, b = load_file(str(dst / WEIGHTS_FILE)), load_file(str(split_dst / WEIGHTS_FILE))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    m9 = load_mimi9(dst)
    assert m9.quantizer.arrangement == "residual"
    wav = mx.array(_wav(0.04, batch=2))
    codes8 = np.array(orig.encode(wav, num_codebooks=8))
    codes9 = m9.encode(wav)
    c9 = np.array(codes9)
    np.testing.assert_array_equal(c9[:, 1], codes8[:, 0])
    assert (c9[:, 2:] != codes8[:, 1:]).mean() > 0.1
    ref = np.array(orig.decode(mx.array(codes8)))
    snr = _snr(ref, np.array(m9.decode(codes9)))
    assert 0 < snr < 60, snr
    print(f"\nresidual surgery: {100 * (c9[:, 2:] != codes8[:, 1:]).mean():.0f}% of head 2-8 codes "
          f"differ; decode SNR vs Mimi {snr:.1f} dB")


# --- Mimi9 model: streaming, parity, round trip, gradients ------------------------------------
def test_streaming_equals_batch(surgered):
    _, dst, _, _ = surgered["transformers", "split"]
    m9, t9 = load_mimi9(dst), load_mimi9_torch(dst)
    wav = _wav(0.03)  # 720 samples = 15 frames
    codes = np.array(m9.encode(mx.array(wav)))
    audio = np.array(m9.decode(mx.array(codes)))
    for model, to, back in ((m9, mx.array, np.array), (t9, torch.from_numpy, lambda t: t.numpy())):
        model.reset_state()
        got_c, got_a = [], []
        for i in range(0, wav.shape[1], 100):  # chunks that do not align with frames (48)
            c = model.encode_step(to(wav[:, i:i + 100]), final=i + 100 >= wav.shape[1])
            got_c.append(back(c))
            got_a.append(back(model.decode_step(c)))
        np.testing.assert_array_equal(np.concatenate(got_c, 2), codes)
        compare(np.concatenate(got_a, 1), audio, atol=AUDIO_ATOL, name=f"{type(model).__module__}")


def test_mlx_torch_parity_with_open_gate(surgered):
    """MLX == torch_ref with head 0 in use: content codebook filled, gate 0.7, both arrangements."""
    for arr in ("split", "residual"):
        _, dst, _, _ = surgered["moshi", arr]
        m9, t9 = load_mimi9(dst), load_mimi9_torch(dst)
        rng = np.random.default_rng(3)
        book = rng.standard_normal(m9.quantizer.content.levels[0].codebook.embedding_sum.shape)
        m9.load_weights([("quantizer.content_gate", mx.array([0.7])),
                         ("quantizer.content.levels.0.codebook.embedding_sum",
                          mx.array(book.astype(np.float32))),
                         ("quantizer.content.levels.0.codebook.initialized", mx.ones((1,)))],
                        strict=False)
        sd = t9.state_dict()
        with torch.no_grad():
            sd["quantizer.content_gate"].fill_(0.7)
            sd["quantizer.content.levels.0.codebook.embedding_sum"].copy_(torch.from_numpy(book))
            sd["quantizer.content.levels.0.codebook.initialized"].fill_(1.0)
        wav = _wav(0.04, batch=2)
        codes = m9.encode(mx.array(wav))
        assert len(np.unique(np.array(codes[:, 0]))) > 1
        np.testing.assert_array_equal(np.array(codes), t9.encode(torch.from_numpy(wav)).numpy())
        compare(m9.decode(codes), t9.decode(torch.from_numpy(np.array(codes))), atol=AUDIO_ATOL,
                name=f"{arr} decode parity")


def test_to_torch_to_mlx_round_trip_is_exact(surgered, tmp_path):
    _, dst, _, _ = surgered["moshi", "split"]
    src = dst / WEIGHTS_FILE
    runner = CliRunner()
    for cmd, a, b in (("to-torch", src, tmp_path / "t.safetensors"),
                      ("to-mlx", tmp_path / "t.safetensors", tmp_path / "m.safetensors")):
        res = runner.invoke(cli, ["convert", cmd, str(a), str(b)])
        assert res.exit_code == 0, res.output
        assert "mimi9" in res.output
    before, after = load_file(str(src)), load_file(str(tmp_path / "m.safetensors"))
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert load_mimi9_torch(tmp_path / "t.safetensors").quantizer.arrangement == "split"


def test_training_forward_gradients_reach_every_group(surgered):
    _, dst, _, _ = surgered["moshi", "split"]
    m9 = load_mimi9(dst)
    m9.train()
    wav = mx.array(_wav(0.02, batch=2))  # 10 frames
    qwen = mx.array(np.random.default_rng(0).standard_normal((2, 3, 24)).astype(np.float32))
    durations = mx.array([[4, 3, 3], [5, 5, 0]], dtype=mx.int32)
    wavlm = mx.array(np.random.default_rng(1).standard_normal((2, 10, 20)).astype(np.float32))

    def loss(model):
        out = model(wav, qwen_hidden=qwen, durations=durations, wavlm_features=wavlm)
        return ((out.audio - wav[:, :out.audio.shape[1]]) ** 2).mean() + out.bridge.losses["total"]

    value, grads = nn.value_and_grad(m9, loss)(m9)
    assert np.isfinite(float(value))
    flat = dict(tree_flatten(grads))
    for name in ("quantizer.content_gate", "quantizer.content.in_proj.weight",
                 "quantizer.proj_qwen.weight", "quantizer.proj_wavlm.weight",
                 "quantizer.prosody.in_proj.weight", "quantizer.acoustic.out_proj.weight",
                 "encoder.conv_in.weight", "decoder.conv_out.weight"):
        assert float(mx.abs(flat[name]).sum()) > 0, name
    assert m9.quantizer.content.levels[0].codebook.is_initialized()  # k-means on the first batch


# --- report, errors, CLI -----------------------------------------------------------------------
def test_report_lists_every_tensor(sources, surgered):
    for fmt in ("moshi", "transformers"):
        report, dst, _, _ = surgered[fmt, "split"]
        saved = json.loads((dst / REPORT_FILE).read_text())
        assert saved["tensors"] == report["tensors"]
        params = load_file(str(dst / WEIGHTS_FILE))
        assert set(report["tensors"]) == set(params)
        assert all(list(params[k].shape) == v["shape"] for k, v in report["tensors"].items())
        path = sources[fmt][0]
        weights = path if path.is_file() else path / "model.safetensors"
        file_keys = set(load_file(str(weights)))
        fresh = {k for k, v in report["tensors"].items() if v["source"].startswith("fresh:")}
        assert fresh == {k for k in params if k.startswith(("quantizer.content", "quantizer.proj_"))}
        for k, v in report["tensors"].items():
            if k not in fresh:
                assert v["source"].split(" (")[0] in file_keys, (k, v)
        assert report["tensors"]["quantizer.prosody.levels.0.codebook.cluster_usage"]["source"] \
            .split(" (")[0] in file_keys
        assert report["dropped"] == {}


def test_too_few_codebooks_is_one_line_error(tmp_path):
    src = tmp_path / "mimi6.safetensors"
    mx.random.seed(0)
    save_mimi(src, build_mimi(MimiSpec.from_preset("mimi_tiny")))  # 1 + 5 codebooks
    with pytest.raises(CheckpointError, match=r"needs 1 semantic \+ at least 7 acoustic") as info:
        surgery(src, tmp_path / "out", echo=None)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_extra_codebooks_are_dropped_and_listed(tmp_path):
    src = tmp_path / "mimi10.safetensors"
    mx.random.seed(0)
    save_mimi(src, build_mimi(TINY.replace(total_codebooks=10)))
    report = surgery(src, tmp_path / "out", echo=None, **DIMS)
    assert sorted(report["dropped"]) == sorted(
        f"quantizer.rvq_rest.levels.{i}.codebook.{leaf} (MLX layout -> torch)"
        for i in (7, 8) for leaf in ("embedding_sum", "cluster_usage", "initialized"))


def test_cli_mimi_surgery(sources, tmp_path):
    folder = sources["transformers"][0]
    res = CliRunner().invoke(cli, ["convert", "mimi-surgery", "--src", str(folder), "--dst",
                                   str(tmp_path / "out"), "--seed", "3", "--qwen-dim", "24",
                                   "--wavlm-dim", "20"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / WEIGHTS_FILE).is_file() and (tmp_path / "out" / REPORT_FILE).is_file()
    assert "Mimi codebook 0 (rvq_first) -> head 1 (prosody)" in res.output
    assert json.loads((tmp_path / "out" / REPORT_FILE).read_text())["seed"] == 3
    bad = CliRunner().invoke(cli, ["convert", "mimi-surgery", "--src", str(tmp_path / "nope"),
                                   "--dst", str(tmp_path / "out2")])
    assert bad.exit_code == 2
    assert bad.output.strip().startswith("error: Mimi weights not found")
    assert len(bad.output.strip().splitlines()) == 1


def test_codes_errors_and_spec_round_trip(surgered, tmp_path):
    _, dst, _, _ = surgered["moshi", "split"]
    m9 = load_mimi9(dst)
    with pytest.raises(CodesError, match="got 10 codebooks"):
        m9.decode(mx.zeros((1, 10, 2), dtype=mx.int32))
    with pytest.raises(CodesError, match="out of range 0..63"):
        m9.decode(mx.full((1, 9, 2), 64, dtype=mx.int32))
    with pytest.raises(CodesError, match="must be integers"):
        m9.decode(mx.zeros((1, 9, 2)))
    with pytest.raises(CodesError, match=r"num_codebooks must be an int in 1..9"):
        m9.encode(mx.zeros((1, 96)), num_codebooks=10)
    assert m9.encode(mx.zeros((1, 96)), num_codebooks=3).shape == (1, 3, 2)
    spec = Mimi9Spec.from_preset("mimi9_tiny")
    assert Mimi9Spec.from_yaml(spec.to_yaml()) == spec == Mimi9Spec.from_dict(spec.to_dict())
    big = Mimi9Spec.from_preset("mimi9_202407")
    assert (big.bridge.vq_dim, big.bridge.content_size, big.bridge.qwen_dim, big.bridge.wavlm_dim,
            big.bridge.content_gate_init, big.bridge.arrangement) == (256, 2048, 1536, 1024, 0.0, "split")
    assert m9.spec == Mimi9Spec.for_mimi(TINY, **DIMS)

"""The ``bsq_vit`` task: MLX and torch_ref first-step losses agree (GAN on, SpecAugment on), a
tiny run whose loss falls and that reports entropy and usage and exports a loadable tokenizer
(the EMA weights), exact resume with EMA, the GAN warm-up, `eval bsq_vit`, recipe errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mlx.core as mx

import mlx_speech
from mlx_speech.data.loader import Batch
from mlx_speech.data.toy import write_toy_corpus
from mlx_speech.errors import SpecError
from mlx_speech.models.bsq_vit.train_spec import BSQViTTrainSpec
from mlx_speech.specs.train import TrainSpec
from mlx_speech.train.monitor import read_metrics
from mlx_speech.train.recipe import load_recipe, make_trainer

torch = pytest.importorskip("torch")

MODEL = {"preset": "bsq_vit_tiny", "discriminator": {"channels": 8, "layers": 2},
         "disc_start": 0, "spec_augment": {"time_masks": 1, "time_width": 3, "freq_masks": 1,
                                           "freq_width": 4}}
LOSSES = ("loss", "d_loss", "d_real", "d_fake", "l1", "l2", "adv", "quantizer", "commitment",
          "per_sample_entropy", "codebook_entropy")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return str(write_toy_corpus(tmp_path_factory.mktemp("toy"), n=8, sample_rate=16000,
                                seconds=(0.3, 0.5)))


def recipe(manifest, out, model=None, **over):
    d = {"task": "bsq_vit", "steps": 2, "out_dir": str(out), "compile": False, "seed": 1,
         "model": {**MODEL, **(model or {})},
         "data": {"sources": [{"kind": "manifest", "path": manifest}], "sample_rate": 16000,
                  "batch_size": 2, "crop_seconds": None, "prefetch": 2, "workers": 1},
         "optimizer": {"lr": 2e-3, "betas": [0.9, 0.99], "schedule": "constant", "grad_clip": None},
         "checkpoint": {"every": 100}, "monitor": {"progress": False, "log_every": 1}}
    d.update(over)
    return TrainSpec.from_dict(d)


def _records(path):
    return [r for r in read_metrics(path / "metrics.jsonl") if "loss" in r]


@pytest.mark.parametrize("conv_norm", ["batch", "layer"])
def test_mlx_and_torch_first_steps_agree(manifest, tmp_path, conv_norm):
    from convert.parity import copy_mlx_to_torch

    model = {"tokenizer": {"conv_norm": conv_norm}}
    m = make_trainer(recipe(manifest, tmp_path / "m", model), "mlx")
    t = make_trainer(recipe(manifest, tmp_path / "t", model), "torch")
    copy_mlx_to_torch(m.model, t.model)
    m.run()
    t.run()
    rm, rt = _records(tmp_path / "m"), _records(tmp_path / "t")
    assert len(rm) == len(rt) == 2
    a, b = rm[0], rt[0]  # the first step: same weights, crops and SpecAugment masks
    for k in LOSSES:
        assert abs(a[k] - b[k]) <= 1e-4 * max(abs(b[k]), 1.0), (k, a[k], b[k])
    assert abs(a["usage"] - b["usage"]) <= 2.0 / 512  # a bit at exactly 0 may differ


def test_tiny_run_loss_falls_reports_entropy_usage_and_exports_ema(manifest, tmp_path):
    tr = make_trainer(recipe(manifest, tmp_path / "run", steps=24, ema={"decay": 0.5},
                             model={"adv_weight": 0.0}), "mlx")
    out = tr.run()
    recs = _records(tmp_path / "run")
    assert {"per_sample_entropy", "codebook_entropy", "usage"} <= set(recs[0])
    assert all(0 < r["usage"] <= 1 for r in recs)
    l1 = [r["l1"] for r in recs]
    assert np.mean(l1[-4:]) < 0.8 * np.mean(l1[:4]), l1
    assert out["checkpoint"] is not None
    exported = tmp_path / "run" / "bsq_vit.safetensors"
    tok = mlx_speech.load(exported)
    ema = tr.weights(ema=True)
    from mlx_speech.weights.core import flatten_tree

    got = {k: np.array(v) for k, v in flatten_tree(tok.parameters()).items()}
    want = {k[len("generator."):]: v for k, v in ema.items() if k.startswith("generator.")}
    assert set(got) == set(want)
    assert all(np.allclose(got[k], want[k], atol=0, rtol=0) for k in got)
    raw = tr.weights()
    assert any(not np.array_equal(raw[f"generator.{k}"], want[k]) for k in want)

    # `mlx-speech eval bsq_vit` on the exported tokenizer: usage, entropy, bits per second
    from click.testing import CliRunner

    from cli import cli

    dst = tmp_path / "eval.json"
    res = CliRunner().invoke(cli, ["eval", "bsq_vit", "--weights", str(exported), "--manifest",
                                   manifest, "--max-items", "2", "--json", str(dst)])
    assert res.exit_code == 0, res.output
    rep = json.loads(dst.read_text())
    assert rep["bitrate_bps"] == pytest.approx(tok.spec.bitrate)
    assert len(rep["levels"]) == tok.num_codebooks and rep["vocoder"] == "griffin_lim"
    assert all(0 < lv["usage"] <= 1 and lv["entropy_bits"] >= 0 for lv in rep["levels"])
    assert 0 < rep["recon"]["token_mel_l1"] < 2 and np.isfinite(rep["recon"]["si_sdr_db"])
    # the vocoder alone on the input's own mel: a ceiling the tokenizer's round trip stays under
    assert rep["vocoder_only"]["mel_distance"] < rep["recon"]["mel_distance"]
    # the training checkpoint gives the raw (not EMA) tokenizer: a different but valid report
    res = CliRunner().invoke(cli, ["eval", "bsq_vit", "--weights", out["checkpoint"],
                                   "--manifest", manifest, "--max-items", "1"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["eval", "bsq_vit", "--weights", manifest, "--manifest", manifest])
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_resume_with_ema_is_exact(manifest, tmp_path):
    ema = {"decay": 0.9}
    straight = make_trainer(recipe(manifest, tmp_path / "a", steps=4, ema=ema), "mlx")
    straight.run()
    first = make_trainer(recipe(manifest, tmp_path / "b", steps=2, ema=ema,
                                checkpoint={"every": 2}), "mlx")
    first.run()
    resumed = make_trainer(recipe(manifest, tmp_path / "b", steps=4, ema=ema), "mlx")
    out = resumed.run()
    assert out["resumed_from"] is not None
    for kind in (False, True):
        a, b = straight.weights(ema=kind), resumed.weights(ema=kind)
        assert set(a) == set(b)
        assert all(np.array_equal(a[k], b[k]) for k in a), kind
    # BatchNorm running statistics are buffers and resume with the weights
    assert any(k.endswith("running_mean") for k in straight.weights())


def test_gan_warm_up_and_spec_augment_inputs():
    from mlx_speech.train.bsq_vit_data import BSQViTTaskBase

    task = BSQViTTaskBase({**MODEL, "disc_start": 3})
    t = task.tokenizer
    wav = np.random.default_rng(0).standard_normal((2, 3 * t.window_samples)).astype(np.float32)
    batch = Batch(wav=wav, lengths=np.array([wav.shape[1], t.window_samples // 2]), items=[None, None],
                  epoch=0, index=0)
    rngs = lambda: [np.random.default_rng([5, i]) for i in range(2)]  # noqa: E731
    task.step = 2
    a = task.prepare(batch, rngs(), train=True)
    assert a["gan_scale"].tolist() == [0.0, 0.0]
    task.step = 3
    b = task.prepare(batch, rngs(), train=True)
    assert b["gan_scale"].tolist() == [1.0, 1.0]
    assert np.array_equal(a["wav"], b["wav"]) and np.array_equal(a["time_keep"], b["time_keep"])
    assert a["wav"].shape == (2, t.window_samples)
    assert a["time_keep"].shape == (2, t.context_frames * t.patch_time)
    assert a["time_keep"].min() == 0 or a["freq_keep"].min() == 0
    start = int(np.flatnonzero(np.isin(wav[0], a["wav"][0, :8]))[0])
    assert start % t.frame_size == 0  # crops start on a codec frame
    assert np.array_equal(a["wav"][1, t.window_samples // 2:], np.zeros(t.window_samples // 2))
    v = task.prepare(batch, rngs(), train=False)
    assert v["time_keep"].min() == 1 and v["freq_keep"].min() == 1 and v["gan_scale"].max() == 0


def test_checkpointed_blocks_train_the_same(manifest, tmp_path):
    plain = make_trainer(recipe(manifest, tmp_path / "p", model={"tokenizer": {"checkpoint": False}}), "mlx")
    ckpt = make_trainer(recipe(manifest, tmp_path / "c", model={"tokenizer": {"checkpoint": True}}), "mlx")
    plain.run()
    ckpt.run()
    a, b = _records(tmp_path / "p"), _records(tmp_path / "c")
    # not bit-identical: the recomputed sub-blocks round differently inside the step's graph.
    # After 2 steps the quantizer term (a difference of entropies) moved 1e-6 to 2e-6 between
    # the two, depending on the activation kernels; a real difference would be far larger.
    for k in ("loss", "l1", "quantizer"):
        assert a[-1][k] == pytest.approx(b[-1][k], rel=1e-5, abs=5e-6), k


def test_recipe_errors_and_shipped_recipes(manifest, tmp_path):
    with pytest.raises(SpecError, match="unknown key 'l3_weight'"):
        BSQViTTrainSpec._build({"l3_weight": 1.0}, strict=True, where="model")
    with pytest.raises(SpecError, match="disc_start must be >= 0"):
        BSQViTTrainSpec._build({"disc_start": -1}, strict=True, where="model")
    with pytest.raises(SpecError, match="patch_freq"):
        BSQViTTrainSpec._build({"tokenizer": {"patch_freq": 7}}, strict=True, where="model")
    from importlib import resources

    for name, bits in (("bsq_vit_b18.yaml", 18), ("bsq_vit_b36.yaml", 36)):
        spec = load_recipe(resources.files("mlx_speech.configs") / name)
        tok = BSQViTTrainSpec._build(spec.model, strict=True, where="model").tokenizer_spec()
        assert spec.task == "bsq_vit" and tok.bits == bits and spec.ema.enabled
        assert tok.bitrate == 50 * bits
    # the vocoder recipe trains a HiFi-GAN on the tokenizer's own mel
    from mlx_speech.models.hifigan.train_spec import HiFiGANTrainSpec

    voc = load_recipe(resources.files("mlx_speech.configs") / "hifigan_bsq16k_cpu.yaml")
    hs = HiFiGANTrainSpec._build(voc.model, strict=True, where="model")
    tok = BSQViTTrainSpec._build({}, strict=True, where="model").tokenizer_spec()
    assert hs.mel_spec() == tok.mel and hs.generator_spec().hop_length == tok.mel.hop_length


def test_vocoder_weights_join_the_export(manifest, tmp_path):
    from mlx_speech.models.hifigan.model import HiFiGANGenerator
    from mlx_speech.models.hifigan.spec import HiFiGANSpec
    from mlx_speech.weights.mlx import save_mlx_model

    g = HiFiGANSpec(n_mels=32, upsample_rates=[5, 4, 8], upsample_kernel_sizes=[11, 8, 16],
                    upsample_initial_channel=16, resblock="2", resblock_kernel_sizes=[3],
                    resblock_dilation_sizes=[[1, 2]])
    gen_file = tmp_path / "hifigan.safetensors"
    save_mlx_model(gen_file, HiFiGANGenerator(g), model="hifigan", spec=g)
    tr = make_trainer(recipe(manifest, tmp_path / "v", steps=1,
                             model={"vocoder_weights": str(gen_file)}), "mlx")
    tr.run()
    tok = mlx_speech.load(tmp_path / "v" / "bsq_vit.safetensors")
    assert tok.spec.vocoder.kind == "hifigan"
    codes = tok.encode(mx.array(np.zeros((1, 1600), dtype=np.float32)))
    assert tok.decode(codes).shape == (1, codes.shape[2] * tok.frame_size)
    bad = HiFiGANSpec(n_mels=80, upsample_rates=[5, 4, 8], upsample_kernel_sizes=[11, 8, 16],
                      upsample_initial_channel=16, resblock="2", resblock_kernel_sizes=[3],
                      resblock_dilation_sizes=[[1, 2]])
    save_mlx_model(gen_file, HiFiGANGenerator(bad), model="hifigan", spec=bad)
    from mlx_speech.errors import CheckpointError
    from mlx_speech.models.bsq_vit.load import with_vocoder

    with pytest.raises(CheckpointError, match="takes 80 mels"):
        with_vocoder(tok, gen_file)


def test_batchnorm_buffers_train_compiled(manifest, tmp_path):
    """BatchNorm declares GRAPH_BUFFERS: the compiled step returns its running statistics, and
    three steps give what the uncompiled trainer gives."""
    runs = {}
    for compiled in (False, True):
        tr = make_trainer(recipe(manifest, tmp_path / f"c{compiled}", steps=3, compile=compiled), "mlx")
        assert tr.compiled is compiled and tr.buffers
        tr.run()
        runs[compiled] = tr.weights()
    a, b = runs[False], runs[True]
    stats = [k for k in a if k.endswith(("running_mean", "running_var"))]
    assert stats and any(not np.allclose(a[k], 0.0) for k in stats if k.endswith("running_mean"))
    for k in a:
        assert np.allclose(a[k], b[k], rtol=1e-4, atol=1e-5), k


def test_only_declared_buffers_compile():
    import mlx.nn as nn

    from mlx_speech.layers.norms import BatchNorm
    from mlx_speech.quantize.vq import VectorQuantizer
    from mlx_speech.train.trainer import graph_buffers

    assert graph_buffers(nn.Sequential(nn.Linear(4, 4), BatchNorm(dim=4)))
    frozen = nn.Linear(4, 4)
    frozen.freeze()
    assert not graph_buffers(nn.Sequential(frozen, BatchNorm(dim=4)))
    from mlx_speech.specs.quantize import EMACodebookSpec

    vq = VectorQuantizer(dim=4, codebook_size=8, ema=EMACodebookSpec())
    assert not graph_buffers(vq)  # EMA codebook statistics: not declared, so uncompiled


def test_init_from_weights_and_mismatch(manifest, tmp_path):
    from mlx_speech.weights.core import flatten_tree

    first = make_trainer(recipe(manifest, tmp_path / "a", steps=1), "mlx")
    first.run()
    exported = str(tmp_path / "a" / "bsq_vit.safetensors")
    import torch_ref

    srcs = {"mlx": {k: np.array(v) for k, v in
                    flatten_tree(mlx_speech.load(exported).parameters()).items()},
            "torch": {k: v.detach().numpy() for k, v in
                      torch_ref.load(exported).named_parameters()}}  # torch layouts, as weights()
    for backend, src in srcs.items():
        tr = make_trainer(recipe(manifest, tmp_path / f"b_{backend}", model={"init": exported}),
                          backend)
        got = tr.weights()
        assert all(np.array_equal(got[f"generator.{k}"], v) for k, v in src.items()), backend
    with pytest.raises(SpecError, match="tokenizer spec differs"):
        make_trainer(recipe(manifest, tmp_path / "c", model={"init": exported,
                                                             "tokenizer": {"bits": 27}}), "mlx")

"""The ``dac`` task: MLX and torch_ref first-step losses agree (GAN + semantic), a tiny run whose
losses fall and that reports per-level usage and exports a loadable codec, HuBERT-cluster
targets, exact resume, recipe errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mlx.core as mx
from mlx.utils import tree_flatten

import mlx_speech
from mlx_speech.data.toy import write_toy_corpus
from mlx_speech.errors import SpecError
from mlx_speech.models.dac.train_spec import DACTrainSpec
from mlx_speech.specs.train import TrainSpec
from mlx_speech.train.dac_data import fit_kmeans, nearest_centroid
from mlx_speech.train.monitor import read_metrics
from mlx_speech.train.recipe import make_trainer

torch = pytest.importorskip("torch")

# A random WavLM teacher (conv stride 32: 500 Hz at 16 kHz, so a 400 Hz codec sees it)
WAVLM = dict(model_type="wavlm", hidden_size=20, num_hidden_layers=2, num_attention_heads=2,
             intermediate_size=40, conv_dim=[16, 16], conv_stride=[8, 4], conv_kernel=[10, 4],
             num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4, num_buckets=16,
             max_bucket_distance=40)
CODEC = {"preset": "dac_tiny", "codec": {"causal": True, "transformer_layers": 2,
                                         "transformer_heads": 2, "transformer_context": 16,
                                         "quantizer_dropout": 0.5}}
DISC = {"rates": [], "periods": [2, 3], "fft_sizes": [256, 128], "mpd_channels": [4, 8, 8],
        "mrd_channels": 4}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return str(write_toy_corpus(tmp_path_factory.mktemp("toy"), n=8, sample_rate=16000,
                                seconds=(0.3, 0.5)))


def recipe(manifest, out, semantic=None, **over):
    model = {**CODEC, "discriminator": DISC, "segment_frames": 32}
    if semantic:
        model["semantic"] = {"teacher_spec": WAVLM, "layer": 1, "cache_dir": str(out.parent / "cache"),
                             **semantic}
    d = {"task": "dac", "steps": 2, "out_dir": str(out), "compile": False, "seed": 1,
         "model": model,
         "data": {"sources": [{"kind": "manifest", "path": manifest}], "sample_rate": 16000,
                  "batch_size": 2, "crop_seconds": None, "prefetch": 2, "workers": 1},
         "optimizer": {"lr": 2e-3, "betas": [0.8, 0.99], "schedule": "constant", "grad_clip": None},
         "checkpoint": {"every": 100}, "monitor": {"progress": False, "log_every": 1}}
    d.update(over)
    return TrainSpec.from_dict(d)


def _records(path):
    return [r for r in read_metrics(path / "metrics.jsonl") if "loss" in r]


@pytest.mark.parametrize("mode", ["wavlm", "hubert_clusters"])
def test_mlx_and_torch_first_steps_agree(manifest, tmp_path, mode):
    from convert.parity import copy_mlx_to_torch

    sem = {"mode": mode, "clusters": 4, "kmeans_items": 4}
    m = make_trainer(recipe(manifest, tmp_path / "m", semantic=sem), "mlx")
    t = make_trainer(recipe(manifest, tmp_path / "t", semantic=sem), "torch")
    copy_mlx_to_torch(m.model, t.model)
    m.run()
    t.run()
    rm, rt = _records(tmp_path / "m"), _records(tmp_path / "t")
    assert len(rm) == len(rt) == 2
    for a, b in zip(rm[:1], rt[:1]):  # the first step: same weights, inputs and dropout draws
        for k in ("loss", "d_loss", "mel", "adv", "fm", "commitment", "codebook", "semantic"):
            assert abs(a[k] - b[k]) <= 1e-4 * max(abs(b[k]), 1e-3), (k, a[k], b[k])
        for k, size in (("usage_0", 64), ("usage_3", 32)):  # a near-tie may pick another code
            assert abs(a[k] - b[k]) <= 1.0 / size + 1e-9, (k, a[k], b[k])


def test_tiny_run_losses_fall_reports_usage_and_exports(manifest, tmp_path):
    tr = make_trainer(recipe(manifest, tmp_path / "run", steps=16, semantic={"mode": "wavlm"},
                             optimizer={"lr": 3e-3, "betas": [0.8, 0.99], "schedule": "constant",
                                        "grad_clip": None}), "mlx")
    out = tr.run()
    recs = _records(tmp_path / "run")
    first, last = recs[0], recs[-1]
    assert {f"usage_{i}" for i in range(4)} <= set(first)
    assert all(0 < r["usage_0"] <= 1 for r in recs)
    mel = [r["mel"] for r in recs]
    assert np.mean(mel[-3:]) < 0.9 * np.mean(mel[:3]), mel
    assert last["semantic"] < first["semantic"]
    assert out["checkpoint"] is not None
    codec = mlx_speech.load(tmp_path / "run" / "dac.safetensors")
    wav = mx.array(np.random.default_rng(0).standard_normal((1, 400)).astype(np.float32) * 0.1)
    tr._bind(tr.params)
    tr.model.eval()
    ref = tr.model.generator.codec
    assert (np.array(codec.encode(wav)) == np.array(ref.encode(wav))).all()

    # `mlx-speech eval dac` on the training checkpoint and on the exported codec: same report
    from click.testing import CliRunner

    from cli import cli

    reports = []
    for weights in (out["checkpoint"], str(tmp_path / "run" / "dac.safetensors")):
        dst = tmp_path / f"eval{len(reports)}.json"
        res = CliRunner().invoke(cli, ["eval", "dac", "--weights", weights, "--manifest", manifest,
                                       "--max-items", "2", "--json", str(dst)])
        assert res.exit_code == 0, res.output
        assert "kbps" in res.output and "PESQ-WB" in res.output
        reports.append(json.loads(dst.read_text()))
    a, b = reports
    assert a["levels"] == b["levels"] and a["recon"] == b["recon"]
    assert len(a["levels"]) == 4 and a["bitrate_bps"] == pytest.approx(400 * (6 + 5 * 3))
    assert np.isfinite(a["recon"]["snr_db"]) and a["recon"]["mel_distance"] > 0
    res = CliRunner().invoke(cli, ["eval", "dac", "--weights", manifest, "--manifest", manifest])
    assert res.exit_code == 2 and "Traceback" not in res.output


def test_resume_is_exact(manifest, tmp_path):
    straight = make_trainer(recipe(manifest, tmp_path / "a", steps=4), "mlx")
    straight.run()
    first = make_trainer(recipe(manifest, tmp_path / "b", steps=2, checkpoint={"every": 2}), "mlx")
    first.run()
    resumed = make_trainer(recipe(manifest, tmp_path / "b", steps=4), "mlx")
    out = resumed.run()
    assert out["resumed_from"] is not None
    a, b = straight.weights(), resumed.weights()
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_kmeans_targets_are_seeded_and_nearest():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(c, 0.1, (50, 3)) for c in (-2.0, 0.0, 2.0)]).astype(np.float32)
    c1 = fit_kmeans(x, 3, iters=10, seed=4)
    assert np.array_equal(c1, fit_kmeans(x, 3, iters=10, seed=4))
    ids = nearest_centroid(x, c1)
    assert len(set(ids[:50])) == len(set(ids[50:100])) == len(set(ids[100:])) == 1
    assert len(set(ids)) == 3


def test_recipe_errors(manifest, tmp_path):
    with pytest.raises(SpecError, match="teacher"):
        DACTrainSpec._build({"semantic": {"mode": "wavlm"}}, strict=True, where="model")
    with pytest.raises(SpecError, match="segment_frames"):
        DACTrainSpec._build({"segment_frames": 0}, strict=True, where="model")
    with pytest.raises(SpecError, match="crop_seconds"):
        spec = recipe(manifest, tmp_path / "d", semantic={"mode": "wavlm"})
        spec = spec.replace(data={**spec.data.to_dict(), "crop_seconds": 0.2})
        make_trainer(spec, "mlx").run()
    with pytest.raises(SpecError, match="sample_rate"):
        spec = recipe(manifest, tmp_path / "e")
        make_trainer(spec.replace(data={**spec.data.to_dict(), "sample_rate": 22050}), "mlx").run()


def test_shipped_recipes_parse():
    from importlib.resources import files

    for name in ("dac_hybrid_50hz.yaml", "dac_hybrid50_cpu.yaml"):
        spec = TrainSpec.from_yaml((files("mlx_speech.configs") / name).read_text())
        assert spec.task == "dac"
        DACTrainSpec._build(spec.model, strict=True, where="model")


def test_init_from_weights_and_mismatch(manifest, tmp_path):
    """``model.init`` starts both frameworks from a codec file; another structure is refused."""
    from mlx_speech.models.dac.model import DACModel
    from mlx_speech.models.dac.train_spec import DACTrainSpec as S
    from mlx_speech.train.tasks_dac import DACTask
    from mlx_speech.weights.mlx import save_mlx_model
    from torch_ref.train.tasks_dac import DACTask as TorchDACTask

    spec = recipe(manifest, tmp_path / "i")
    src = DACModel(S._build(spec.model, strict=True, where="m").codec_spec())
    path = tmp_path / "src.safetensors"
    save_mlx_model(path, src, model="dac", spec=src.spec)
    model = {**spec.model, "init": str(path)}
    m = DACTask(model).build().generator.codec
    ref = dict(tree_flatten(src.parameters()))
    assert all(np.array_equal(np.array(v), np.array(ref[k])) for k, v in tree_flatten(m.parameters()))
    t = TorchDACTask(model).build().generator.codec
    w = t.state_dict()["encoder.block.0.weight_v"].numpy()
    assert np.array_equal(w, np.array(src.encoder.block[0].weight_v).transpose(0, 2, 1))
    other = DACModel(src.spec.replace(decoder_dim=16))
    save_mlx_model(path, other, model="dac", spec=other.spec)
    for task in (DACTask, TorchDACTask):
        with pytest.raises(SpecError, match="differs from the recipe"):
            task(model).build()

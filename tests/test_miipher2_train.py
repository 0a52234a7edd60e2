"""The Miipher-2 tasks: MLX and torch_ref first-step losses agree for each stage; the tiny
adapter run's loss falls while the backbone and the vocoder stay exactly as built; the three
stages chain through their exports (``init``); recipe and init errors are clear."""

from __future__ import annotations

import numpy as np
import pytest

import mlx_speech
from mlx_speech.data.toy import write_toy_corpus
from mlx_speech.errors import CheckpointError, SpecError
from mlx_speech.specs.train import TrainSpec
from mlx_speech.train.monitor import read_metrics
from mlx_speech.train.recipe import make_trainer

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# noise and gain only: fast, deterministic, no external tools (the full chain is tested in
# tests/test_data_degrade.py)
DEGRADE = {"noise_prob": 1.0, "snr_db": [0.0, 10.0], "noise_kinds": ["white", "pink", "babble"],
           "reverb_prob": 0.0, "band_prob": 0.5, "band_rates": [8000], "codec_prob": 0.0,
           "clip_prob": 0.0, "gain_prob": 0.5, "packet_loss_prob": 0.0}
ADAPTER_LOSSES = ("loss", "l1", "l2", "sc")
VOCODER_LOSSES = ("loss", "d_loss", "mel_l1", "stft_sc", "stft_mag", "adv", "fm")
DISC = {"periods": [2, 3], "mpd_channels": [8, 16, 16], "msd_scales": 1,
        "msd_channels": [8, 16, 16, 16, 16, 16, 16], "msd_groups": [1, 4, 4, 4, 4, 4, 1]}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return str(write_toy_corpus(tmp_path_factory.mktemp("toy"), n=8, sample_rate=16000,
                                seconds=(0.8, 1.2)))


def recipe(manifest, out, task="miipher2_adapters", model=None, **over):
    base = {"variant": "tiny", "degrade": DEGRADE, "babble_items": 4}
    if task == "miipher2_adapters":
        base["segment_seconds"] = 0.6
    else:
        base.update(segment_frames=12, discriminator=DISC,
                    stft_resolutions=[[256, 64, 256], [512, 128, 512]])
    d = {"task": task, "steps": 2, "out_dir": str(out), "compile": False, "seed": 1,
         "model": {**base, **(model or {})},
         "data": {"sources": [{"kind": "manifest", "path": manifest}], "sample_rate": 16000,
                  "batch_size": 2, "crop_seconds": None, "prefetch": 2, "workers": 1},
         "optimizer": {"lr": 3e-3, "betas": [0.9, 0.99], "schedule": "constant",
                       "grad_clip": None},
         "checkpoint": {"every": 100}, "monitor": {"progress": False, "log_every": 1}}
    d.update(over)
    return TrainSpec.from_dict(d)


def _records(path):
    return [r for r in read_metrics(path / "metrics.jsonl") if "loss" in r]


def _perturb(trainer) -> None:
    """Untrained adapters add zeros; give them weights so stage-3 features differ."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    rng = np.random.default_rng(3)
    gen = getattr(trainer.model, "generator", trainer.model)
    for a in gen.adapters:
        a.up.weight = mx.array(rng.standard_normal(a.up.weight.shape).astype(np.float32) * 0.1)
    trainer.params.update(dict(tree_flatten(trainer.model.parameters())))


@pytest.mark.parametrize("task, model, names", [
    ("miipher2_adapters", None, ADAPTER_LOSSES),
    ("miipher2_vocoder", {"features": "clean"}, VOCODER_LOSSES),
    ("miipher2_vocoder", {"features": "restored"}, VOCODER_LOSSES),
], ids=["adapters", "vocoder_clean", "vocoder_restored"])
def test_mlx_and_torch_first_steps_agree(manifest, tmp_path, task, model, names):
    from convert.parity import copy_mlx_to_torch

    m = make_trainer(recipe(manifest, tmp_path / "m", task, model), "mlx")
    t = make_trainer(recipe(manifest, tmp_path / "t", task, model), "torch")
    _perturb(m)
    copy_mlx_to_torch(m.model, t.model)
    m.run()
    t.run()
    rm, rt = _records(tmp_path / "m"), _records(tmp_path / "t")
    assert len(rm) == len(rt) == 2
    a, b = rm[0], rt[0]
    for k in names:
        assert abs(a[k] - b[k]) <= 1e-4 * max(abs(b[k]), 1.0), (k, a[k], b[k])


def test_tiny_adapter_run_loss_falls_and_only_adapters_change(manifest, tmp_path):
    easy = {**DEGRADE, "noise_kinds": ["white"], "snr_db": [5.0, 5.0], "band_prob": 0.0,
            "gain_prob": 0.0}
    tr = make_trainer(recipe(manifest, tmp_path / "run", steps=40, model={"degrade": easy},
                             optimizer={"lr": 1e-2, "betas": [0.9, 0.99],
                                        "schedule": "constant", "grad_clip": None}), "mlx")
    before = {k: np.array(v) for k, v in tr.params.items()}
    out = tr.run()
    after = tr.weights()
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert changed and all(k.startswith("adapters.") for k in changed), sorted(changed)[:5]
    assert any(k.startswith("backbone.") for k in before)
    losses = [r["loss"] for r in _records(tmp_path / "run")]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    assert out["checkpoint"] is not None
    exported = mlx_speech.load(tmp_path / "run" / "miipher2.safetensors")
    assert exported.spec.layer == 2


def test_stages_chain_through_exports(manifest, tmp_path):
    """Stage 1 -> stage 2 (vocoder on clean features) -> stage 3 (on restored features), each
    started from the previous export; only the vocoder changes in stages 2 and 3; the final
    export restores audio through the CLI."""
    from mlx_speech.weights.core import flatten_tree

    make_trainer(recipe(manifest, tmp_path / "s1"), "mlx").run()
    s1 = tmp_path / "s1" / "miipher2.safetensors"
    v = make_trainer(recipe(manifest, tmp_path / "s2", "miipher2_vocoder",
                            {"features": "clean", "init": str(s1)}), "mlx")
    v.run()
    s2 = tmp_path / "s2" / "miipher2.safetensors"
    t = make_trainer(recipe(manifest, tmp_path / "s3", "miipher2_vocoder",
                            {"features": "restored", "init": str(s2)}), "torch")
    t.run()
    a = {k: np.array(x) for k, x in flatten_tree(mlx_speech.load(s1).parameters()).items()}
    b = {k: np.array(x) for k, x in flatten_tree(mlx_speech.load(s2).parameters()).items()}
    c = {k: np.array(x) for k, x in
         flatten_tree(mlx_speech.load(tmp_path / "s3" / "miipher2.safetensors").parameters()).items()}
    for k in a:
        same_ab, same_bc = np.array_equal(a[k], b[k]), np.array_equal(b[k], c[k])
        if k.startswith("vocoder."):
            continue
        assert same_ab and same_bc, k
    assert any(not np.array_equal(a[k], b[k]) for k in a if k.startswith("vocoder."))

    import soundfile as sf
    from click.testing import CliRunner

    from cli import cli
    from mlx_speech.audio.synth import speechlike

    sf.write(tmp_path / "in.wav", np.asarray(speechlike(16000, 2.0, seed=1), np.float32) * 0.5,
             16000)
    res = CliRunner().invoke(cli, ["restore", str(tmp_path / "in.wav"), "-o",
                                   str(tmp_path / "out.wav"), "--weights",
                                   str(tmp_path / "s3" / "miipher2.safetensors")])
    assert res.exit_code == 0, res.output


def test_recipe_and_init_errors(manifest, tmp_path):
    with pytest.raises(SpecError, match="unknown key"):
        make_trainer(recipe(manifest, tmp_path / "x", model={"degrade": {"noise_probb": 1.0}}),
                     "mlx")
    with pytest.raises(SpecError, match="not both"):
        make_trainer(recipe(manifest, tmp_path / "x", model={"init": "a", "restorer": {"backbone_path": "b"}}),
                     "mlx")
    with pytest.raises(SpecError, match="mel_preset"):
        make_trainer(recipe(manifest, tmp_path / "x", "miipher2_vocoder",
                            {"mel_preset": "speech_24k"}), "mlx")
    bad = recipe(manifest, tmp_path / "x", data={
        "sources": [{"kind": "manifest", "path": manifest}], "sample_rate": 24000,
        "batch_size": 2, "crop_seconds": None})
    with pytest.raises(SpecError, match="output rate"):
        make_trainer(bad, "mlx").run()
    make_trainer(recipe(manifest, tmp_path / "s1"), "mlx").run()
    other = recipe(manifest, tmp_path / "y", model={
        "init": str(tmp_path / "s1" / "miipher2.safetensors"),
        "restorer": {"adapter_bottleneck": 8}})
    with pytest.raises(CheckpointError, match="spec differs"):
        make_trainer(other, "mlx").run()


@pytest.mark.upstream
@pytest.mark.parametrize("backend", ["mlx", "torch"])
def test_backbone_from_a_transformers_folder(manifest, tmp_path, backend):
    """``restorer.backbone_path``: the run's backbone is the folder's (layers past L dropped)
    and stays so; the export holds it."""
    transformers = pytest.importorskip("transformers")
    from mlx_speech.models.miipher2.load import backbone_config_for, read_backbone
    from mlx_speech.models.miipher2.spec import Miipher2Spec
    from mlx_speech.weights.core import flatten_tree

    torch.manual_seed(0)
    cfg = transformers.WavLMConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                   intermediate_size=64, conv_dim=[32] * 7,
                                   num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    transformers.WavLMModel(cfg).save_pretrained(tmp_path / "wavlm")
    voc = {**Miipher2Spec.from_preset("tiny").vocoder}
    restorer = {"backbone": backbone_config_for(tmp_path / "wavlm"),
                "backbone_path": str(tmp_path / "wavlm"), "layer": 2, "vocoder": voc}
    tr = make_trainer(recipe(manifest, tmp_path / "run", model={"restorer": restorer}), backend)
    tr.run()
    got = {k: np.array(v) for k, v in
           flatten_tree(mlx_speech.load(tmp_path / "run" / "miipher2.safetensors")
                        .backbone.parameters()).items()}
    want = read_backbone(tmp_path / "wavlm", Miipher2Spec.from_preset("tiny").replace(**restorer))
    assert set(got) == set(want) and not any(k.startswith("encoder.layers.2.") for k in got)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=1e-7, err_msg=k)

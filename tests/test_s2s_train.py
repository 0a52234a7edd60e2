"""The ``s2s`` task: MLX and torch_ref first-step losses agree; a tiny model overfits 10
synthetic code pairs written straight into the codes cache (the loss falls and greedy
generation reproduces the targets) and exports a tagged model; the real path (pair manifest ->
random-init tiny Mimi -> codes cache, coded once); pair manifest and recipe errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

import mlx.core as mx

import mlx_speech
from mlx_speech.data.manifest import DataError
from mlx_speech.errors import CheckpointError, SpecError, UserError
from mlx_speech.specs.train import TrainSpec
from mlx_speech.train.monitor import read_metrics
from mlx_speech.train.recipe import make_trainer
from mlx_speech.train.s2s_data import CodesCache, read_pairs

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

K, V, N = 2, 16, 10


def target_of(codes_in):
    """The output of a pair: a fixed function of the input frame (codebooks swapped, values
    mapped), so a model can learn it and must attend to the right input frame."""
    return np.stack([(7 * codes_in[1] + 3) % V, (codes_in[0] + codes_in[1]) % V]).astype(np.int32)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """10 pairs of tiny audio files whose codes are written into the cache directly (no codec
    runs: the codec file is a stand-in that is only hashed)."""
    root = tmp_path_factory.mktemp("s2s")
    codec = root / "codec.bin"
    codec.write_bytes(b"stand-in codec weights")
    cache = CodesCache(root / "cache", codec="mimi", weights=str(codec), num_codebooks=K)
    rng = np.random.default_rng(0)
    lines, pairs = [], []
    for i in range(N):
        src, dst = root / f"in{i}.wav", root / f"out{i}.wav"
        sf.write(src, np.zeros(480 + i, np.float32), 24000)
        sf.write(dst, np.zeros(480 + i, np.float32), 24000)
        frames = int(rng.integers(8, 13))
        ci = rng.integers(0, V, (K, frames)).astype(np.int32)
        cache.write(str(src), ci, 0)
        cache.write(str(dst), target_of(ci), 0)
        pairs.append((ci, target_of(ci)))
        lines.append(json.dumps({"path": src.name, "target": dst.name, "speaker": i % 2}))
    manifest = root / "pairs.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return root, str(manifest), str(codec), pairs


def recipe(synthetic, out, model=None, **over):
    root, manifest, codec, _ = synthetic
    m = {"preset": "s2s_tiny", "arch": {"codec_weights": codec, "num_speakers": 2},
         "cache_dir": str(root / "cache"), "max_in_frames": 12, "max_out_frames": 12,
         "codebook_weights": [1.0, 0.5]}
    for k, v in (model or {}).items():
        m[k] = {**m[k], **v} if isinstance(v, dict) else v
    d = {"task": "s2s", "steps": 2, "out_dir": str(out), "compile": False, "seed": 1,
         "model": m,
         "data": {"sources": [{"kind": "manifest", "path": manifest}], "sample_rate": 24000,
                  "batch_size": 2, "crop_seconds": None, "prefetch": 2, "workers": 1},
         "optimizer": {"lr": 2e-3, "betas": [0.9, 0.99], "schedule": "constant", "grad_clip": None},
         "checkpoint": {"every": 1000}, "monitor": {"progress": False, "log_every": 1}}
    d.update(over)
    return TrainSpec.from_dict(d)


def _records(path):
    return [r for r in read_metrics(path / "metrics.jsonl") if "loss" in r]


@pytest.mark.parametrize("pattern", ["delay", "parallel"])
def test_mlx_and_torch_first_step_losses_agree(synthetic, tmp_path, pattern):
    from convert.parity import copy_mlx_to_torch

    model = {"arch": {"pattern": pattern, "embed": "concat" if pattern == "parallel" else "sum"}}
    m = make_trainer(recipe(synthetic, tmp_path / "m", model), "mlx")
    t = make_trainer(recipe(synthetic, tmp_path / "t", model), "torch")
    copy_mlx_to_torch(m.model, t.model)
    m.run()
    t.run()
    a, b = _records(tmp_path / "m")[0], _records(tmp_path / "t")[0]
    print(f"first step {pattern}: mlx {a['loss']:.7f} torch {b['loss']:.7f}")
    for k in ("loss", "ce", "ce_0", "ce_1", "acc"):
        assert abs(a[k] - b[k]) <= 1e-4 * max(abs(b[k]), 1.0), (k, a[k], b[k])


def test_tiny_model_overfits_synthetic_pairs_and_exports(synthetic, tmp_path):
    _, _, _, pairs = synthetic
    spec = recipe(synthetic, tmp_path / "run", steps=100, compile=True,
                  data={**recipe(synthetic, tmp_path).data.to_dict(), "batch_size": N},
                  model={"arch": {"dim": 64, "num_heads": 4, "ffn_dim": 128}},
                  optimizer={"lr": 1e-2, "betas": [0.9, 0.98], "schedule": "cosine",
                             "warmup_steps": 10, "min_lr_ratio": 0.1, "grad_clip": 1.0,
                             "weight_decay": 0.0},
                  monitor={"progress": False, "log_every": 10})
    tr = make_trainer(spec, "mlx")
    out = tr.run()
    assert out["pairs"] == N and out["skipped"] == 0
    loss = [r["loss"] for r in _records(tmp_path / "run")]
    assert loss[-1] < 0.2 * loss[0], loss
    model = mlx_speech.load(tmp_path / "run" / "s2s.safetensors")  # the exported weights
    hits = total = 0
    for i, (ci, co) in enumerate(pairs):
        got = np.array(model.generate(ci[None], co.shape[1], speaker=i % 2))[0]
        hits += int((got == co).sum())
        total += co.size
    print(f"overfit: loss {loss[0]:.3f} -> {loss[-1]:.4f}, greedy codes {hits}/{total}")
    assert hits / total >= 0.9, hits / total
    assert model.spec.codec_weights == synthetic[2]  # absolute path of the codec


def _speech(path, seconds, seed):
    from mlx_speech.audio.synth import speechlike

    sf.write(path, 0.5 * speechlike(sr=24000, seconds=seconds, seed=seed), 24000)


def test_real_codec_path_codes_once(tmp_path, monkeypatch):
    from mlx_speech.models.mimi.model import build_mimi
    from mlx_speech.models.mimi.spec import MimiSpec
    from mlx_speech.pipelines.codec import encode_wav, load_codec
    from mlx_speech.weights.mlx import save_mlx_model

    mx.random.seed(0)
    mimi = build_mimi(MimiSpec.from_preset("mimi_tiny", num_codebooks=4))
    codec = tmp_path / "mimi_tiny.safetensors"
    save_mlx_model(codec, mimi, model="mimi", spec=mimi.spec)
    lines = []
    for i in range(3):
        _speech(tmp_path / f"a{i}.wav", 0.04 + 0.01 * i, i)
        _speech(tmp_path / f"b{i}.wav", 0.05, 10 + i)
        lines.append(json.dumps({"path": f"a{i}.wav", "target": f"b{i}.wav"}))
    (tmp_path / "pairs.jsonl").write_text("\n".join(lines))
    spec = TrainSpec.from_dict({
        "task": "s2s", "steps": 2, "out_dir": str(tmp_path / "run"), "compile": False,
        "model": {"preset": "s2s_tiny", "arch": {"codec_weights": str(codec), "codebook_size": 64},
                  "max_in_frames": 32, "max_out_frames": 32},
        "data": {"sources": [{"kind": "manifest", "path": str(tmp_path / "pairs.jsonl")}],
                 "val_fraction": 0.3, "sample_rate": 24000, "batch_size": 2, "crop_seconds": 0.02,
                 "workers": 1},
        "monitor": {"progress": False, "log_every": 1}})
    out = make_trainer(spec, "mlx").run()
    assert np.isfinite(out["loss"]) and np.isfinite(out["val_loss"]) and out["pairs"] == 2
    cache = CodesCache(tmp_path / "run" / "codes", codec="mimi", weights=str(codec), num_codebooks=2)
    assert out["codes_cache"] == str(cache.dir)
    model = load_codec("mimi", codec, num_codebooks=2)
    from mlx_speech.pipelines.codec import read_audio

    want = encode_wav(model, read_audio(tmp_path / "a1.wav", model.sample_rate))[0]
    np.testing.assert_array_equal(cache.read(str(tmp_path / "a1.wav")), want)  # codec encode's codes
    # a second run codes nothing again (the torch trainer reads the MLX cache too)
    import mlx_speech.train.s2s_encode as enc

    monkeypatch.setattr(enc, "encode_into_cache", lambda *a, **k: pytest.fail("re-encoded"))
    out = make_trainer(spec.replace(out_dir=str(tmp_path / "run2"), model={
        **spec.model, "cache_dir": str(tmp_path / "run" / "codes")}), "torch").run()
    assert np.isfinite(out["loss"])


def test_pair_manifest_and_recipe_errors(synthetic, tmp_path):
    root, manifest, codec, _ = synthetic
    bad = tmp_path / "bad.jsonl"
    for line, msg in (('{"path": "in0.wav"}', "'target'"),
                      ('{"path": "in0.wav", "target": "out0.wav", "voice": 1}', "unknown key 'voice'"),
                      ('{"path": "in0.wav", "target": "out0.wav", "speaker": -1}', "integer id"),
                      ("not json", "invalid JSON")):
        bad.write_text(line + "\n")
        with pytest.raises(DataError, match=msg):
            read_pairs(bad)
    base = recipe(synthetic, tmp_path / "x")
    cases = [
        (dict(model={"arch": {"num_speakers": 1}}), DataError, "speaker 1 is out of range"),
        (dict(model={"arch": {"codec_weights": str(tmp_path / "nope.bin")}}), CheckpointError,
         "codec weights not found"),
        (dict(model={"arch": {"codec_weights": None}}), SpecError, "codec_weights is not set"),
        (dict(model={"max_out_frames": 4}), DataError, "no training pair fits"),
        (dict(data={**base.data.to_dict(), "sources": [{"kind": "folder", "path": str(root)}]}),
         SpecError, "pair manifests"),
    ]
    for over, err, msg in cases:
        with pytest.raises(err, match=msg) as info:
            make_trainer(recipe(synthetic, tmp_path / "x", **over), "mlx")
        assert isinstance(info.value, UserError) and "\n" not in str(info.value)
    with pytest.raises(SpecError, match="codebook_weights has 3 entries"):
        make_trainer(recipe(synthetic, tmp_path / "x", model={"codebook_weights": [1.0] * 3}), "mlx")


def test_shipped_recipes_and_targets():
    from importlib import resources

    from mlx_speech.models.s2s.spec import S2SSpec
    from mlx_speech.registry import targets
    from mlx_speech.train.recipe import load_recipe
    from mlx_speech.train.s2s_data import S2STaskBase

    for target, name in (("s2s", "s2s_base.yaml"), ("s2s_tiny", "s2s_tiny.yaml")):
        assert targets()[target].recipe == name and targets()[target].task == "s2s"
        spec = load_recipe(resources.files("mlx_speech.configs") / name)
        task = S2STaskBase(spec.model)
        assert task.arch.codec == "mimi" and task.arch.codebook_size == 2048
        assert abs(sum(task.codebook_weights) - 1.0) < 1e-6
    assert S2STaskBase(load_recipe(resources.files("mlx_speech.configs") / "s2s_base.yaml")
                       .model).arch.replace(dropout=0.0, codec_weights=None) == \
        S2SSpec.from_preset("s2s_base")


@pytest.mark.parametrize("backend", ["mlx", "torch"])
def test_init_from_a_tagged_file(synthetic, tmp_path, backend):
    from mlx_speech.models.s2s.encdec import S2SModel
    from mlx_speech.train.s2s_data import S2STaskBase
    from mlx_speech.weights.mlx import mlx_to_numpy, mlx_to_torch_state, save_mlx_model

    task_spec = recipe(synthetic, tmp_path / "a").model
    arch = S2STaskBase(task_spec).arch.replace(codec_weights="elsewhere.bin")  # path may differ
    src = S2SModel(arch)
    save_mlx_model(tmp_path / "init.safetensors", src, model="s2s", spec=arch)
    tr = make_trainer(recipe(synthetic, tmp_path / "b", model={"init": str(tmp_path / "init.safetensors")}),
                      backend)
    if backend == "mlx":
        want, got = mlx_to_numpy(src), tr.weights()
    else:  # torch layouts (convolutions differ)
        want = mlx_to_torch_state(src)
        got = {k: v.detach().cpu().numpy() for k, v in tr.model.state_dict().items()}
    assert set(got) == set(want) and all(np.array_equal(got[k], want[k]) for k in want)
    other = arch.replace(dim=64)
    save_mlx_model(tmp_path / "other.safetensors", S2SModel(other), model="s2s", spec=other)
    with pytest.raises(SpecError, match="spec differs"):
        make_trainer(recipe(synthetic, tmp_path / "c", model={"init": str(tmp_path / "other.safetensors")}),
                     backend)

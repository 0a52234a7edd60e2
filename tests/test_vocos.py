"""Vocos-style vocoder: the inverse-STFT head against an independent numpy inverse STFT, MLX vs
torch_ref parity, training through the ``hifigan`` task (first-step losses of both trainers,
the mel-only warm-up, ``init`` and ``mel_dir``), export and use by ``synth``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import mlx.core as mx
from mlx.utils import tree_flatten

from convert.parity import build_pair, compare
from mlx_speech.data.toy import write_toy_corpus
from mlx_speech.data.manifest import DataError
from mlx_speech.errors import CheckpointError, SpecError
from mlx_speech.models.hifigan.train_spec import HiFiGANDiscriminatorSpec
from mlx_speech.models.vocos.model import VocosGenerator
from mlx_speech.models.vocos.spec import VocosSpec, hann, synthesis_basis
from mlx_speech.specs.train import TrainSpec
from mlx_speech.train.monitor import read_metrics
from mlx_speech.train.recipe import make_trainer

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = VocosSpec.from_preset("tiny")
TINY_DISC = HiFiGANDiscriminatorSpec.from_preset("tiny").to_dict()


def numpy_istft_same(spec: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Reference: per-frame irfft * window, overlap-add, / summed squared window, trim
    ``(n_fft - hop) / 2`` at each end (Vocos' "same" padding). ``spec (T, n_fft/2+1)`` complex."""
    T = spec.shape[0]
    w = hann(n_fft)
    out = np.zeros((T - 1) * hop + n_fft)
    env = np.zeros_like(out)
    for t in range(T):
        out[t * hop:t * hop + n_fft] += np.fft.irfft(spec[t], n=n_fft) * w
        env[t * hop:t * hop + n_fft] += w ** 2
    pad = (n_fft - hop) // 2
    return out[pad:pad + T * hop] / env[pad:pad + T * hop]


def test_synthesis_basis_is_windowed_irfft():
    r = np.random.default_rng(0)
    S = r.standard_normal((5, 33)) + 1j * r.standard_normal((5, 33))
    got = np.concatenate([S.real, S.imag], axis=1) @ synthesis_basis(64).astype(np.float64)
    np.testing.assert_allclose(got, np.fft.irfft(S, n=64) * hann(64), atol=1e-6)


@pytest.mark.parametrize("n_fft,hop", [(1024, 256), (64, 16), (48, 24)])
def test_head_equals_numpy_inverse_stft(n_fft, hop):
    r = np.random.default_rng(1)
    T = 9
    h = r.standard_normal((1, T, n_fft + 2)).astype(np.float32) * 0.5
    # The head's projection set to the identity, so ``h`` is its (log-magnitude, phase) output.
    ident = VocosSpec(n_mels=8, dim=n_fft + 2, intermediate_dim=8, num_layers=1, n_fft=n_fft, hop_length=hop)
    from mlx_speech.models.vocos.model import ISTFTHead

    head = ISTFTHead(ident)
    head.out.weight = mx.eye(n_fft + 2)
    head.out.bias = mx.zeros((n_fft + 2,))
    wav = np.array(head(mx.array(h)))[0]
    n_bins = n_fft // 2 + 1
    mag = np.exp(np.minimum(h[0, :, :n_bins], ident.max_log_magnitude))
    ref = numpy_istft_same(mag * np.exp(1j * h[0, :, n_bins:]), n_fft, hop)
    assert wav.shape == (T * hop,)
    np.testing.assert_allclose(wav, ref, atol=2e-5 * np.abs(ref).max())


def test_mlx_matches_torch_and_lengths():
    from torch_ref.models.vocos.model import VocosGenerator as TorchVocos

    def randomize(m):  # non-trivial layer scales and biases
        r = np.random.default_rng(3)
        for blk in m.backbone.convnext:
            blk.gamma = mx.array(r.uniform(0.5, 1.5, blk.gamma.shape).astype(np.float32))
            blk.pwconv2.bias = mx.array(r.normal(0, 0.1, blk.pwconv2.bias.shape).astype(np.float32))

    m, t = build_pair(VocosGenerator, TorchVocos, spec=TINY, randomize=randomize)
    mel = np.random.default_rng(2).standard_normal((2, 23, 80)).astype(np.float32)
    y = m(mx.array(mel))
    assert y.shape == (2, 23 * 256)
    with torch.no_grad():
        compare(y, t(torch.from_numpy(mel)), atol=1e-5, name="vocos")
    assert sorted(t.state_dict()) == sorted(k for k, _ in tree_flatten(m.parameters()))
    with pytest.raises(ValueError, match="mel"):
        m(mx.zeros((1, 5, 40)))
    with pytest.raises(SpecError, match="multiple of hop"):
        VocosSpec(n_fft=1000, hop_length=256).validate()


# --- training through the hifigan task ----------------------------------------------------------
@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return str(write_toy_corpus(tmp_path_factory.mktemp("toy"), n=8, sample_rate=22050, seconds=(0.3, 0.5)))


def recipe(manifest, out, model=None, data=None, **over):
    d = {"task": "hifigan", "steps": 2, "out_dir": str(out), "compile": False, "seed": 1,
         "model": {"kind": "vocos", "variant": "tiny", "discriminator": TINY_DISC, "segment_size": 2048,
                   **(model or {})},
         "data": {"sources": [{"kind": "manifest", "path": manifest}], "sample_rate": 22050,
                  "batch_size": 2, "crop_seconds": 0.2, "prefetch": 2, "workers": 1, **(data or {})},
         "optimizer": {"lr": 2e-3, "betas": [0.8, 0.99], "schedule": "constant", "grad_clip": None},
         "checkpoint": {"every": 100}, "monitor": {"progress": False, "log_every": 1}}
    d.update(over)
    return TrainSpec.from_dict(d)


def _metrics(out):
    return [r for r in read_metrics(out / "metrics.jsonl") if "loss" in r]


@pytest.mark.parametrize("disc_start", [0, 5])
def test_mlx_and_torch_first_steps_agree(manifest, tmp_path, disc_start):
    from convert.parity import copy_mlx_to_torch

    model = {"disc_start": disc_start}
    m = make_trainer(recipe(manifest, tmp_path / "m", model), "mlx")
    t = make_trainer(recipe(manifest, tmp_path / "t", model), "torch")
    copy_mlx_to_torch(m.model, t.model)
    m.run()
    t.run()
    keys = ("loss", "mel_l1") if disc_start else ("loss", "d_loss", "mel_l1", "adv", "fm")
    for a, b in zip(_metrics(tmp_path / "m"), _metrics(tmp_path / "t")):
        for k in keys:
            assert abs(a[k] - b[k]) <= 1e-4 * abs(b[k]), (k, a[k], b[k])


@pytest.mark.parametrize("backend", ["mlx", "torch"])
def test_warm_up_trains_the_generator_alone_then_the_gan(manifest, tmp_path, backend):
    spec = recipe(manifest, tmp_path / "run", {"disc_start": 3}, steps=5,
                  optimizer={"lr": 2e-3, "betas": [0.8, 0.99], "schedule": "constant", "grad_clip": None,
                             "weight_decay": 0.0})
    tr = make_trainer(spec, backend)
    w0 = tr.weights()
    spec3 = recipe(manifest, tmp_path / "run3", {"disc_start": 3}, steps=3,
                   optimizer=spec.optimizer.to_dict())
    tr3 = make_trainer(spec3, backend)
    tr3.run()
    w3 = tr3.weights()
    disc = [k for k in w0 if ".discriminator." in f".{k}" or k.startswith("discriminator.")]
    gen = [k for k in w0 if k.startswith("generator.")]
    assert disc and gen
    assert all(np.array_equal(w0[k], w3[k]) for k in disc)  # D untouched during the warm-up
    assert any(not np.array_equal(w0[k], w3[k]) for k in gen)
    recs = _metrics(tmp_path / "run3")
    assert all(r["d_loss"] == 0.0 and "adv" not in r for r in recs)
    tr.run()
    w5 = tr.weights()
    assert any(not np.array_equal(w0[k], w5[k]) for k in disc)  # GAN from step 3 on
    assert "adv" in _metrics(tmp_path / "run")[-1]


def _export(ckpt, dst):
    from click.testing import CliRunner

    from cli import cli

    res = CliRunner().invoke(cli, ["convert", "hifigan-generator", str(ckpt), str(dst)])
    assert res.exit_code == 0, res.output
    assert "vocos generator" in res.output


def test_export_init_and_synth(manifest, tmp_path):
    from mlx_speech.pipelines.synth import Synthesizer
    from mlx_speech.weights.mlx import load_mlx_model

    out = make_trainer(recipe(manifest, tmp_path / "a", steps=2), "torch").run()
    gen_path = tmp_path / "vocos.safetensors"
    _export(out["checkpoint"], gen_path)
    gen, spec = load_mlx_model(gen_path)
    assert type(gen).__name__ == "VocosGenerator" and spec == TINY

    # init: both trainers start from the file's generator
    for backend in ("mlx", "torch"):
        tr = make_trainer(recipe(manifest, tmp_path / f"init_{backend}", {"init": str(gen_path)}, steps=1), backend)
        w = tr.weights()
        ref = {k: np.array(v) for k, v in tree_flatten(gen.parameters())}
        for k, v in ref.items():
            got = w[f"generator.{k}"]
            np.testing.assert_allclose(got if got.shape == v.shape else np.moveaxis(got, 1, 2), v, atol=0)
    with pytest.raises(CheckpointError, match="differs"):
        make_trainer(recipe(manifest, tmp_path / "bad", {"init": str(gen_path),
                                                        "generator": {"dim": 16}}), "mlx")

    # synth: the exported file is a drop-in neural vocoder
    mel = mx.array(np.random.default_rng(0).standard_normal((1, 6, 80)).astype(np.float32))
    syn = Synthesizer("en_slt", vocoder="neural", vocoder_path=gen_path)
    np.testing.assert_allclose(syn.vocode(mel), np.array(gen(mel))[0], atol=1e-6)


def test_export_averages_several_checkpoints(manifest, tmp_path):
    """Several checkpoints -> one file holding the mean of their generators' weights; a
    checkpoint of another generator is refused in one line."""
    from click.testing import CliRunner

    from cli import cli
    from mlx_speech.weights.mlx import load_mlx_model

    ckpts = [make_trainer(recipe(manifest, tmp_path / f"r{i}", steps=1 + i), "torch").run()["checkpoint"]
             for i in range(3)]
    singles = []
    for i, c in enumerate(ckpts):
        _export(c, tmp_path / f"g{i}.safetensors")
        gen, _ = load_mlx_model(tmp_path / f"g{i}.safetensors")
        singles.append({k: np.array(v) for k, v in tree_flatten(gen.parameters())})
    res = CliRunner().invoke(cli, ["convert", "hifigan-generator", *map(str, ckpts), str(tmp_path / "avg.safetensors")])
    assert res.exit_code == 0 and "average of 3 checkpoints" in res.output, res.output
    avg, spec = load_mlx_model(tmp_path / "avg.safetensors")
    assert spec == TINY
    got = {k: np.array(v) for k, v in tree_flatten(avg.parameters())}
    assert set(got) == set(singles[0])
    assert any(not np.array_equal(singles[0][k], singles[2][k]) for k in got)
    for k, v in got.items():
        np.testing.assert_allclose(v, (singles[0][k] + singles[1][k] + singles[2][k]) / 3, rtol=1e-6, atol=1e-7)

    other = make_trainer(recipe(manifest, tmp_path / "other", {"generator": {"dim": 16}}, steps=1), "torch").run()
    dst = tmp_path / "bad.safetensors"
    res = CliRunner().invoke(cli, ["convert", "hifigan-generator", ckpts[0], other["checkpoint"], str(dst)])
    assert res.exit_code == 2 and "differs" in res.output and len(res.output.strip().splitlines()) == 1
    assert not dst.exists()


def test_export_half_precision(manifest, tmp_path):
    """--half stores float16 (about half the file); the loaders compute in float32 and the
    output moves by the rounding of the weights only."""
    from click.testing import CliRunner
    from safetensors.numpy import load_file

    from cli import cli
    from mlx_speech.weights.mlx import load_mlx_model

    ckpt = make_trainer(recipe(manifest, tmp_path / "r", steps=1), "torch").run()["checkpoint"]
    _export(ckpt, tmp_path / "f32.safetensors")
    res = CliRunner().invoke(cli, ["convert", "hifigan-generator", "--half", str(ckpt), str(tmp_path / "f16.safetensors")])
    assert res.exit_code == 0 and "float16" in res.output, res.output
    assert {v.dtype for v in load_file(tmp_path / "f16.safetensors").values()} == {np.dtype(np.float16)}
    assert (tmp_path / "f16.safetensors").stat().st_size < 0.6 * (tmp_path / "f32.safetensors").stat().st_size
    g32, _ = load_mlx_model(tmp_path / "f32.safetensors")
    g16, _ = load_mlx_model(tmp_path / "f16.safetensors")
    assert all(v.dtype == mx.float32 for _, v in tree_flatten(g16.parameters()))
    mel = mx.array(np.random.default_rng(1).standard_normal((1, 20, 80)).astype(np.float32))
    a, b = np.array(g32(mel)), np.array(g16(mel))
    assert 0 < np.abs(a - b).max() < 2e-3 * np.abs(a).max() + 1e-6


def test_mel_dir_reads_stored_mels_on_the_frame_grid(manifest, tmp_path):
    """Stored mels made from the audio itself give the same inputs as the task's own front end."""
    from mlx_speech.audio.io import load
    from mlx_speech.audio.spectral import log_mel
    from mlx_speech.data.manifest import read_manifest
    from mlx_speech.specs.audio import MelSpec

    mel_dir = tmp_path / "mels"
    mel_dir.mkdir()
    m = MelSpec.from_preset("hifigan_22k")
    for it in read_manifest(manifest):
        wav, _ = load(it.path, sr=22050)
        np.save(mel_dir / f"{Path(it.path).stem}.npy",
                np.array(log_mel(mx.array(wav[None]), **m.mel_kwargs(), floor=m.log_floor)[0]))
    spec = recipe(manifest, tmp_path / "run", {"mel_dir": str(mel_dir)}, data={"crop_seconds": None})
    tr = make_trainer(spec, "mlx")
    task = tr.task
    from mlx_speech.data.loader import Batch

    items = read_manifest(manifest)[:2]
    wavs = [load(it.path, sr=22050)[0] for it in items]
    n = max(len(w) for w in wavs)
    b = Batch(wav=np.stack([np.pad(w, (0, n - len(w))) for w in wavs]).astype(np.float32),
              lengths=np.array([len(w) for w in wavs], np.int32), items=items, epoch=0, index=0)
    x = task.prepare(b, [np.random.default_rng(i) for i in range(2)], train=True)
    assert x["wav"].shape == (2, 2048) and x["mel"].shape == (2, 8, 80)
    own = np.array(log_mel(mx.array(x["wav"]), **m.mel_kwargs(), floor=m.log_floor))[:, :-1]
    # interior frames see the same samples (the edges differ by the crop's padding)
    np.testing.assert_allclose(x["mel"][:, 2:-2], own[:, 2:-2], atol=2e-3)
    tr.run()
    with pytest.raises(SpecError, match="compile: false"):
        make_trainer(recipe(manifest, tmp_path / "r3", {"disc_start": 2}, compile=True), "mlx").run()
    with pytest.raises(SpecError, match="crop_seconds"):
        make_trainer(recipe(manifest, tmp_path / "r2", {"mel_dir": str(mel_dir)}), "mlx").run()
    (mel_dir / f"{Path(items[0].path).stem}.npy").unlink()
    with pytest.raises(DataError, match="no mel"):
        task.prepare(b, [np.random.default_rng(i) for i in range(2)], train=True)


def test_tts_gta_mels_fit_the_corpus_audio(tmp_path):
    """``data tts-gta``: one mel per utterance, on the audio's frame grid, near its real mel."""
    import shutil

    if shutil.which("festival") is None:
        pytest.skip("festival not installed")
    from click.testing import CliRunner

    from cli import cli
    from mlx_speech.audio.io import load
    from mlx_speech.data.manifest import read_manifest
    from mlx_speech.train.tts_features import single_voice_corpus

    single_voice_corpus(tmp_path / "c", sentences=["The cat is on the mat.", "Please close the door."],
                        workers=1, progress=False)
    res = CliRunner().invoke(cli, ["data", "tts-gta", "--manifest", str(tmp_path / "c" / "manifest.jsonl"),
                                   "-o", str(tmp_path / "gta"), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["items"] == 2 and summary["mel_l1_vs_audio"] < 1.0
    for it in read_manifest(tmp_path / "c" / "manifest.jsonl"):
        wav, _ = load(it.path, sr=22050)
        mel = np.load(tmp_path / "gta" / f"{Path(it.path).stem}.npy")
        assert mel.shape == (len(wav) // 256 + 1, 80) and np.isfinite(mel).all()
    res = CliRunner().invoke(cli, ["data", "tts-gta", "--manifest", str(tmp_path / "nope.jsonl"), "-o", "x"])
    assert res.exit_code == 2 and "manifest not found" in res.output


@pytest.mark.parametrize("name", ["vocos_slt_cpu.yaml", "vocos_slt_gta_cpu.yaml", "vocos_slt_mel_cpu.yaml",
                                  "vocos_nsk_mel_cpu.yaml", "tts_hi_nsk.yaml",
                                  "tts_te_nsk.yaml"])
def test_shipped_voice_recipes_parse(name):
    from mlx_speech.registry import get_task
    from mlx_speech.train.targets import recipe_path

    spec = TrainSpec.from_yaml(recipe_path(name))
    task = get_task(spec.task, "mlx")(spec.model)
    if spec.task == "hifigan":
        assert task.spec.kind == "vocos" and task.spec.generator_spec() == VocosSpec.from_preset("small")
        if name in ("vocos_slt_mel_cpu.yaml", "vocos_nsk_mel_cpu.yaml"):  # mel-only from start to end
            assert task.spec.disc_start > spec.steps
    else:
        assert task.spec.language in ("hi", "te") and task.spec.alignment == "learned"

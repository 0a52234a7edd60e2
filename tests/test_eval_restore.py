"""Restoration evaluation: DNSMOS, speaker similarity and alignment (mlx_speech.audio.quality),
pair scoring and the manifest report (mlx_speech.eval.restore), and `mlx-speech eval restore`'s
bad-input paths. The model side is plain callables (and stand-in modules for the Miipher-2
loader, pipeline and degrader), so no model is built."""

import json
import sys

import mlx_speech  # noqa: F401
import numpy as np
import pytest
from click.testing import CliRunner

from mlx_speech import registry
from mlx_speech.audio import quality
from mlx_speech.audio.io import resample, save
from mlx_speech.audio.synth import speechlike
from mlx_speech.errors import AudioError, MissingDependencyError, SpecError
from mlx_speech.eval import restore

SR = 16000
FAST = ("pesq", "stoi", "si_sdr")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """The metric packages must work offline: any connection attempt fails the test."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="module")
def clean():
    return speechlike(SR, 2.0, seed=0).astype(np.float64)


def _noise_at(x, snr_db, seed=0):
    n = np.random.default_rng(seed).standard_normal(x.shape)
    return x + n * np.sqrt(np.sum(x**2) / np.sum(n**2) / 10 ** (snr_db / 10))


def _delay(x, lag):
    if lag > 0:
        return np.concatenate([np.zeros(lag), x[:-lag]])
    return np.concatenate([x[-lag:], np.zeros(-lag)])


@pytest.mark.parametrize("lag", [0, 37, -120, 800])
def test_align_finds_a_known_lag(clean, lag):
    est = _noise_at(_delay(clean, lag) if lag else clean, 10.0, seed=1)
    r, e, found = quality.align(clean, est, 1000)
    assert found == lag and r.shape == e.shape == (clean.size - abs(lag),)
    assert np.corrcoef(r, e)[0, 1] > 0.9
    _, trimmed, none = quality.align(clean, est[:-50], 0)
    assert none == 0 and trimmed.size == clean.size - 50
    assert quality.align(np.zeros(300), np.zeros(200), 50)[2] == 0  # a tie keeps the pair as it is
    with pytest.raises(AudioError, match="max_lag"):
        quality.align(clean, est, -1)
    with pytest.raises(AudioError, match="1-D"):
        quality.align(np.stack([clean, clean]), est, 10)


def test_score_pair_identical_noisy_and_shifted(clean):
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    pytest.importorskip("resemblyzer")
    metrics = (*FAST, "sim")
    same = restore.score_pair(clean, clean, SR, metrics)
    assert same["lag"] == 0 and same["pesq_wb"] > 4.4 and same["stoi"] > 0.999
    assert same["si_sdr_db"] > 100 and same["speaker_sim"] > 0.999
    noisy = restore.score_pair(clean, _noise_at(clean, 0.0), SR, metrics)
    assert noisy["pesq_wb"] < 2.0 and noisy["stoi"] < 0.95 and noisy["speaker_sim"] < 0.9
    assert abs(noisy["si_sdr_db"]) < 0.5
    late = restore.score_pair(clean, _delay(clean, 480), SR, FAST)  # 30 ms late: aligned first
    assert late["lag"] == 480 and late["pesq_wb"] > 4.4 and late["si_sdr_db"] > 100
    unaligned = restore.score_pair(clean, _delay(clean, 480), SR, FAST, max_shift=0.0)
    assert unaligned["lag"] == 0 and unaligned["si_sdr_db"] < 0
    silent = restore.score_pair(clean, np.zeros_like(clean), SR, ("pesq", "si_sdr"))
    assert silent["pesq_wb"] is None and silent["si_sdr_db"] is not None  # unscorable -> None


def test_dnsmos_in_range_and_lower_for_noisy_speech(clean):
    pytest.importorskip("speechmos")
    good = quality.dnsmos(clean, SR)
    bad = quality.dnsmos(_noise_at(clean, 0.0), SR)
    assert set(good) == {"ovrl", "sig", "bak", "p808"}
    for scores in (good, bad):
        assert all(np.isfinite(v) and 1.0 <= v <= 5.0 for v in scores.values()), scores
    assert bad["ovrl"] < good["ovrl"] - 0.3 and bad["bak"] < good["bak"] - 0.5
    at_24k = quality.dnsmos(resample(clean.astype(np.float32), SR, 24000), 24000)
    assert at_24k["ovrl"] == pytest.approx(good["ovrl"], abs=0.1)  # resampled to 16 kHz
    with pytest.raises(AudioError, match="silent"):
        quality.dnsmos(np.zeros(SR), SR)


def test_speaker_similarity(clean):
    pytest.importorskip("resemblyzer")
    assert quality.speaker_similarity(clean, clean, SR) == pytest.approx(1.0, abs=1e-4)
    assert quality.speaker_similarity(clean, 0.1 * clean, SR) == pytest.approx(1.0, abs=1e-3)
    assert quality.speaker_similarity(clean, _noise_at(clean, 0.0), SR) < 0.9
    with pytest.raises(AudioError, match="estimate is silent"):
        quality.speaker_similarity(clean, np.zeros(SR), SR)
    with pytest.raises(AudioError, match="NaN"):
        quality.speaker_similarity(clean, np.full(SR, np.nan), SR)


def test_missing_packages_name_what_to_install(monkeypatch, tmp_path, clean):
    monkeypatch.setitem(sys.modules, "speechmos", None)
    monkeypatch.setitem(sys.modules, "speechmos.dnsmos", None)
    monkeypatch.setitem(sys.modules, "resemblyzer", None)
    with pytest.raises(MissingDependencyError, match=r"'speechmos' .*: pip install speechmos onnxruntime$"):
        quality.dnsmos(clean, SR)
    with pytest.raises(MissingDependencyError, match="pip install --no-deps resemblyzer webrtcvad-wheels"):
        quality.speaker_similarity(clean, clean, SR)
    with pytest.raises(MissingDependencyError, match="sim needs the 'resemblyzer' package"):
        restore.check_available(("si_sdr", "sim"))
    (tmp_path / "uses_vad.py").write_text("import webrtcvad\n")  # a dependency of the module missing
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "webrtcvad", None)
    with pytest.raises(MissingDependencyError) as err:
        quality.require("uses_vad", "speaker_similarity")
    assert "\n" not in str(err.value) and str(err.value).endswith("pip install webrtcvad-wheels")


def test_parse_metrics():
    assert restore.parse_metrics("sim, pesq,pesq") == ("pesq", "sim")
    assert restore.parse_metrics(["stoi"]) == ("stoi",)
    for bad, needle in (("pesq,mosnet", "unknown metric 'mosnet'"), (" , ", "no metric given")):
        with pytest.raises(SpecError, match=needle):
            restore.parse_metrics(bad)


def _corpus(tmp_path, n=2, *, degraded=False):
    """n clean utterances (and noisy copies when ``degraded``) with a JSONL manifest."""
    lines = []
    for i in range(n):
        wav = speechlike(SR, 1.5, f0=110 + 30 * i, seed=i)
        save(tmp_path / f"c{i}.wav", wav, SR)
        line = {"path": f"c{i}.wav"}
        if degraded:
            save(tmp_path / f"d{i}.wav", _noise_at(wav, 5.0, seed=i).clip(-1, 1), SR)
            line["degraded"] = f"d{i}.wav"
        lines.append(json.dumps(line))
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def _noisy_degrade(wav, index):
    return _noise_at(wav, 5.0, seed=index)


def _identity(wav, sr):
    return wav, sr


def test_evaluate_items_identity_restore_scores_like_degraded(tmp_path):
    pytest.importorskip("speechmos")
    pytest.importorskip("resemblyzer")
    from mlx_speech.data.manifest import read_manifest

    items = read_manifest(_corpus(tmp_path, 1))
    rep = restore.evaluate_items(items, _identity, _noisy_degrade, SR, per_item=True)
    assert rep["items"] == 1 and rep["metrics"] == list(restore.METRICS)
    assert rep["restored"] == rep["degraded"] and set(rep["delta"].values()) == {0.0}
    assert set(rep["degraded"]) == {c for m in restore.METRICS for c in restore.COLUMNS[m]}
    assert rep["unscored"] == {"degraded": {}, "restored": {}}
    row = rep["rows"][0]
    assert row["path"] == items[0].path and row["degraded"]["lag"] == 0
    assert 1.0 <= row["degraded"]["dnsmos_ovrl"] <= 5.0 and row["degraded"]["pesq_wb"] < 3.5


def test_evaluate_items_resamples_and_aligns_the_output(tmp_path):
    pytest.importorskip("pesq")
    from mlx_speech.data.manifest import read_manifest

    items = read_manifest(_corpus(tmp_path, 2, degraded=True))
    assert items[0].degraded == str(tmp_path / "d0.wav")

    def late_24k(wav, sr):  # a "model" at 24 kHz whose output is 20 ms late
        return np.concatenate([np.zeros(480), resample(wav, sr, 24000)]), 24000

    base = restore.evaluate_items(items, _identity, None, SR, metrics=FAST)
    rep = restore.evaluate_items(items, late_24k, None, SR, metrics=FAST, per_item=True)
    assert [r["restored"]["lag"] for r in rep["rows"]] == [320, 320]
    for c in ("pesq_wb", "stoi"):
        assert rep["restored"][c] == pytest.approx(base["restored"][c], abs=0.1)
    assert rep["restored"]["si_sdr_db"] == pytest.approx(base["restored"]["si_sdr_db"], abs=0.5)

    def oracle(wav, sr):  # "restores" to the clean utterance of the same row
        return speechlike(SR, 1.5, f0=110 + 30 * oracle.i, seed=oracle.i), SR
    oracle.i = 0
    better = restore.evaluate_items(items[:1], oracle, None, SR, metrics=FAST)
    assert better["delta"]["pesq_wb"] > 1.0 and better["delta"]["si_sdr_db"] > 20
    table = restore.format_table(better)
    assert "PESQ-WB" in table and "SI-SDR (dB)" in table and "+" in table.splitlines()[2]


def test_evaluate_items_bad_input(tmp_path):
    from mlx_speech.data.manifest import read_manifest

    items = read_manifest(_corpus(tmp_path, 1))
    with pytest.raises(AudioError, match="no 'degraded' file"):
        restore.evaluate_items(items, _identity, None, SR, metrics=("si_sdr",))
    with pytest.raises(AudioError, match="restored audio is not finite"):
        restore.evaluate_items(items, lambda w, sr: (w * np.nan, sr), _noisy_degrade, SR, metrics=("si_sdr",))
    with pytest.raises(AudioError, match="restored audio is empty"):
        restore.evaluate_items(items, lambda w, sr: (w[:0], sr), _noisy_degrade, SR, metrics=("si_sdr",))
    with pytest.raises(AudioError, match="no utterances"):
        restore.evaluate_items([], _identity, None, SR)
    (tmp_path / "c0.wav").write_bytes(b"RIFF-not-really")
    with pytest.raises(AudioError, match="c0.wav"):
        restore.evaluate_items(items, _identity, _noisy_degrade, SR, metrics=("si_sdr",))


# --- `mlx-speech eval restore` ------------------------------------------------------------------
@pytest.fixture
def cli_restore(monkeypatch):
    """Run `mlx-speech eval restore ARGS` through the real CLI group (the command is listed as
    the miipher2 family will register it); returns the click result."""
    from cli import cli

    evals = registry.evals()
    monkeypatch.setattr(registry, "evals", lambda: evals | {"restore": "mlx_speech.eval.restore:command"})
    return lambda *args: CliRunner().invoke(cli, ["eval", "restore", *map(str, args)])


def _one_line_error(res, needle):
    assert res.exit_code == 2, res.output
    assert needle in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_cli_bad_input_is_one_line_exit_2(tmp_path, cli_restore):
    manifest = _corpus(tmp_path, 1)
    w = tmp_path / "none.safetensors"
    _one_line_error(cli_restore("--weights", w, "--manifest", tmp_path / "no.jsonl"), "manifest not found")
    (tmp_path / "empty.jsonl").write_text("\n")
    _one_line_error(cli_restore("--weights", w, "--manifest", tmp_path / "empty.jsonl"), "has no items")
    _one_line_error(cli_restore("--weights", w, "--manifest", manifest, "--metrics", "pesq,utmos"),
                    "unknown metric 'utmos'")
    _one_line_error(cli_restore("--weights", w, "--manifest", manifest, "--metrics", "si_sdr",
                                "--json", tmp_path / "no" / "r.json"), "does not exist")
    _one_line_error(cli_restore("--weights", w, "--manifest", manifest, "--metrics", "si_sdr",
                                "--degrade-config", tmp_path / "no.yaml"), "degradation config not found")
    (tmp_path / "c0.wav").write_bytes(b"RIFF" + bytes(40))
    _one_line_error(cli_restore("--weights", w, "--manifest", manifest, "--metrics", "si_sdr"), "c0.wav")


def test_cli_end_to_end_with_a_tiny_restorer(tmp_path, cli_restore):
    """A random tiny Miipher-2 file, the real degrader (noise only, for speed) and restore
    path: one report per seed (the same seed gives the same degradations), written as JSON."""
    pytest.importorskip("pesq")
    import mlx.core as mx

    from mlx_speech.models.miipher2.model import Miipher2Model
    from mlx_speech.models.miipher2.spec import Miipher2Spec
    from mlx_speech.weights.mlx import save_mlx_model

    mx.random.seed(0)
    model = Miipher2Model(Miipher2Spec.from_preset("tiny"))
    save_mlx_model(tmp_path / "w.safetensors", model, model="miipher2", spec=model.spec)
    (tmp_path / "deg.yaml").write_text(
        "noise_prob: 1.0\nsnr_db: [5.0, 5.0]\nnoise_kinds: [white]\nreverb_prob: 0.0\n"
        "band_prob: 0.0\ncodec_prob: 0.0\nclip_prob: 0.0\ngain_prob: 0.0\npacket_loss_prob: 0.0\n")
    manifest = _corpus(tmp_path, 2)
    reports = []
    for seed in (3, 3, 4):
        out = tmp_path / f"r{seed}_{len(reports)}.json"
        res = cli_restore("--weights", tmp_path / "w.safetensors", "--manifest", manifest,
                          "--metrics", "pesq,si_sdr", "--seed", seed, "--max-items", 2,
                          "--degrade-config", tmp_path / "deg.yaml", "--json-out", out)
        assert res.exit_code == 0, res.output
        assert "PESQ-WB" in res.output
        reports.append(json.loads(out.read_text()))
    rep = reports[0]
    assert rep["seed"] == 3 and rep["sample_rate"] == 16000 and rep["items"] == 2
    assert rep["degraded"]["si_sdr_db"] == pytest.approx(5.0, abs=0.5)
    assert reports[1] == rep and reports[2]["degraded"] != rep["degraded"]
    # an untrained restorer: its output is not the clean speech
    assert rep["restored"]["si_sdr_db"] < rep["degraded"]["si_sdr_db"]

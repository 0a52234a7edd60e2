"""``mimi9`` distillation task: a tiny end-to-end run (generated corpus, random tiny model and
teachers), MLX == torch_ref on the first step, parameter groups, bad paths, resume, eval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mlx_lm")
torch = pytest.importorskip("torch")

from mlx_speech.data.manifest import DataError  # noqa: E402
from mlx_speech.errors import CheckpointError, SpecError, UserError  # noqa: E402
from mlx_speech.models.mimi9.train_spec import QwenTeacherSpec, WavLMTeacherSpec  # noqa: E402
from mlx_speech.specs.train import TrainSpec  # noqa: E402
from mlx_speech.train.loop import split_rows  # noqa: E402
from mlx_speech.train.mimi9_data import Mimi9Base, to_frames, write_timed_toy_corpus  # noqa: E402
from mlx_speech.train.recipe import load_recipe, make_trainer  # noqa: E402
from mlx_speech.train.schedule import resolve_groups  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QWEN = dict(model_type="qwen2", hidden_size=24, num_hidden_layers=2, intermediate_size=48,
            num_attention_heads=2, num_key_value_heads=1, rms_norm_eps=1e-6, vocab_size=101,
            max_position_embeddings=256, rope_theta=10000.0, tie_word_embeddings=True)
WAVLM = dict(model_type="wavlm", hidden_size=20, num_hidden_layers=2, num_attention_heads=2,
             intermediate_size=40, conv_dim=[16, 16], conv_stride=[8, 4], conv_kernel=[10, 4],
             num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4, num_buckets=16,
             max_bucket_distance=40)
SECONDS = 0.1  # mimi9_tiny runs at 500 Hz: 50 frames of 48 samples at 24 kHz


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Four equal-length speech-like utterances with made-up word timings (16 kHz)."""
    return write_timed_toy_corpus(tmp_path_factory.mktemp("mimi9_corpus"), n=4, seconds=SECONDS)


def recipe(corpus: Path, out: Path, *, steps: int = 3, **model) -> TrainSpec:
    """mlx_speech/configs/mimi9_tiny.yaml pointed at the test corpus."""
    spec = load_recipe(ROOT / "mlx_speech" / "configs" / "mimi9_tiny.yaml")
    data = spec.to_dict()
    data["data"]["sources"] = [{"kind": "manifest", "path": str(corpus)}]
    data["out_dir"] = str(out)
    data["steps"] = steps
    data["model"]["cache_dir"] = str(corpus.parent / "cache")
    data["model"].update(model)
    data["monitor"]["progress"] = False
    return TrainSpec._build(data, strict=True, where="test")


def first_micro_batches(trainer, parts: int) -> list[dict]:
    """The first training batch of ``trainer``'s data plan, prepared and cut into ``parts``."""
    from mlx_speech.data.loader import Loader

    with Loader(trainer.corpus.items, trainer.plan, sample_rate=trainer.spec.data.sample_rate,
                crop_seconds=None, seed=0, prefetch=1, workers=1) as loader:
        batch = next(loader)
    rngs = [np.random.default_rng([0, i]) for i in range(len(batch.items))]
    return split_rows(trainer.task.prepare(batch, rngs, train=True), parts)


def test_to_frames_averages_teacher_windows():
    feats = np.arange(10, dtype=np.float32)[:, None]  # 50 Hz frames 0..9
    out = to_frames(feats, 50.0, 12.5, 3)  # frame f = mean of teacher frames 4f..4f+3 (clipped)
    np.testing.assert_allclose(out[:, 0], [1.5, 5.5, 8.5])
    up = to_frames(feats, 50.0, 100.0, 4)  # finer grid: the teacher frame under each frame
    np.testing.assert_allclose(up[:, 0], [0, 0, 1, 1])


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """12 MLX steps of mlx_speech/configs/mimi9_tiny.yaml on the test corpus: (trainer, out_dir, initial weights)."""
    out = tmp_path_factory.mktemp("mimi9_run")
    trainer = make_trainer(recipe(corpus, out, steps=12), "mlx")
    before = trainer.weights()
    trainer.run()
    return trainer, out, before


def test_distillation_falls_reconstruction_holds(trained):
    trainer, out, before = trained
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in log if "qwen" in r]
    first, last = steps[0], steps[-1]
    print({k: (round(first[k], 4), round(last[k], 4)) for k in ("mel", "qwen", "wavlm", "commitment")})
    assert last["qwen"] < 0.9 * first["qwen"]
    assert last["wavlm"] < 0.9 * first["wavlm"]
    assert last["mel"] <= 1.1 * first["mel"]
    assert all(f"usage_h{k}" in last for k in range(9))
    # parameter groups: frozen encoder / decoder and codebook statistics untouched
    after = trainer.weights()
    for name in before:
        frozen = (name.split(".")[0] in {"encoder", "encoder_transformer", "downsample", "upsample",
                                         "decoder_transformer", "decoder"}
                  or name.rsplit(".", 1)[-1] in {"embedding_sum", "cluster_usage", "initialized"})
        if frozen:
            assert np.array_equal(before[name], after[name]), name
    for name in ("quantizer.proj_qwen.weight", "quantizer.proj_wavlm.weight",
                 "quantizer.content.in_proj.weight", "quantizer.acoustic.in_proj.weight"):
        assert not np.array_equal(before[name], after[name]), name
    lrs = trainer.optims["optim"].lrs(1.0)
    assert lrs["heads"] == pytest.approx(10 * lrs["acoustic"])


def test_eval_reports_usage_similarity_reconstruction(trained, corpus):
    from mlx_speech.eval.mimi9 import evaluate, format_table

    _, out, _ = trained
    rep = evaluate(out / "checkpoints" / "ckpt_00000012.safetensors", corpus,
                   qwen=QwenTeacherSpec(config=QWEN), wavlm=WavLMTeacherSpec(spec=WAVLM))
    assert [h["head"] for h in rep["heads"]] == list(range(9)) and rep["frames"] == 4 * 50
    assert all(0 < h["usage"] <= 1 and 1 <= h["perplexity"] <= h["codebook_size"] for h in rep["heads"])
    assert -1 <= rep["distill"]["qwen_cosine"] <= 1 and -1 <= rep["distill"]["wavlm_cosine"] <= 1
    assert np.isfinite(rep["recon"]["snr_db"]) and rep["recon"]["mel_distance"] > 0
    assert "perplexity" in format_table(rep)


def test_eval_cli(trained, corpus, tmp_path):
    from click.testing import CliRunner

    from cli import cli

    _, out, _ = trained
    ckpt = out / "checkpoints" / "ckpt_00000012.safetensors"
    res = CliRunner().invoke(cli, ["eval", "mimi9", "--weights", str(ckpt), "--manifest", str(corpus),
                                   "--json", str(tmp_path / "rep.json")])
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert len(rep["heads"]) == 9 and rep["distill"] is None
    # teachers from local directories (mlx-lm / transformers layouts), as a real run uses them
    transformers = pytest.importorskip("transformers")
    from mlx_speech.teachers.qwen import QwenTeacher

    qdir = QwenTeacher.from_config(QWEN, seed=1).save(tmp_path / "qwen")
    transformers.WavLMModel(transformers.WavLMConfig(**WAVLM)).save_pretrained(tmp_path / "wavlm")
    res = CliRunner().invoke(cli, ["eval", "mimi9", "--weights", str(ckpt), "--manifest", str(corpus),
                                   "--qwen", str(qdir), "--wavlm", str(tmp_path / "wavlm"),
                                   "--json", str(tmp_path / "rep2.json")])
    assert res.exit_code == 0, res.output
    d = json.loads((tmp_path / "rep2.json").read_text())["distill"]
    assert -1 <= d["qwen_cosine"] <= 1 and -1 <= d["wavlm_cosine"] <= 1
    res = CliRunner().invoke(cli, ["eval", "mimi9", "--weights", str(tmp_path / "missing"),
                                   "--manifest", str(corpus)])
    assert res.exit_code == 2 and "missing" in res.output and len(res.output.strip().splitlines()) == 1


def test_first_step_losses_match_torch(corpus, tmp_path):
    from convert.parity import copy_mlx_to_torch

    spec = recipe(corpus, tmp_path / "m")
    m = make_trainer(spec, "mlx")
    t = make_trainer(recipe(corpus, tmp_path / "t"), "torch")
    copy_mlx_to_torch(m.model, t.model)
    micro = first_micro_batches(m, 1)
    rm = m._train_step(micro, 1.0, 0)
    rt = t._train_step(micro, 1.0, 0)
    for k in ("mel", "commitment", "qwen", "wavlm"):
        assert abs(rm.metrics[k] - rt.metrics[k]) <= 1e-4, (k, rm.metrics[k], rt.metrics[k])
    assert abs(rm.loss - rt.loss) <= 1e-4
    # same update: the trained heads agree after the step
    wt = {k: v.detach().cpu().numpy() for k, v in t.model.state_dict().items()}
    np.testing.assert_allclose(m.weights()["quantizer.proj_qwen.weight"],
                               wt["quantizer.proj_qwen.weight"], atol=1e-5)


def test_ema_heads_learn_in_both_trainers(corpus, tmp_path):
    """Codebooks of ``ema_heads`` learn by their EMA update in the forward: the MLX trainer
    adopts the updated buffers and ends the step where torch_ref (registered buffers) does;
    the other heads' codebooks stay fixed."""
    from convert.parity import copy_mlx_to_torch

    spec = recipe(corpus, tmp_path / "m", ema_heads=[0, 1])
    m = make_trainer(spec, "mlx")
    t = make_trainer(recipe(corpus, tmp_path / "t", ema_heads=[0, 1]), "torch")
    copy_mlx_to_torch(m.model, t.model)
    before = m.weights()
    micro = first_micro_batches(m, 2)  # two micro-batches in a row
    m._train_step(micro, 1.0, 0)
    t._train_step(micro, 1.0, 0)
    after = m.weights()
    wt = {k: v.detach().cpu().numpy() for k, v in t.model.state_dict().items()}
    head = {0: "quantizer.content.levels.0", 1: "quantizer.prosody.levels.0",
            2: "quantizer.acoustic.levels.0"}
    for h, name in head.items():
        for stat in ("embedding_sum", "cluster_usage"):
            key = f"{name}.codebook.{stat}"
            moved = np.abs(after[key] - before[key]).max()
            assert (moved > 1e-6) == (h < 2), (key, moved)
            np.testing.assert_allclose(after[key], wt[key], atol=1e-5, err_msg=key)


def test_resume_continues(corpus, tmp_path):
    out = tmp_path / "run"
    make_trainer(recipe(corpus, out, steps=2), "mlx").run()
    summary = make_trainer(recipe(corpus, out, steps=3), "mlx").run()
    assert summary["step"] == 3 and summary["resumed_from"].endswith("ckpt_00000002.safetensors")


def test_bad_paths_one_line_errors(corpus, tmp_path):
    cases = [
        (dict(weights=str(tmp_path / "nope"), preset=None, architecture={}), CheckpointError, "nope"),
        (dict(qwen={"path": str(tmp_path / "no_qwen")}), CheckpointError, "no_qwen"),
        (dict(wavlm={"path": str(tmp_path / "no_wavlm")}), CheckpointError, "no_wavlm"),
        (dict(qwen={"config": {**QWEN, "hidden_size": 32}}), SpecError, "qwen_dim"),
    ]
    for model, exc, needle in cases:
        with pytest.raises(exc) as info:
            make_trainer(recipe(corpus, tmp_path / "bad", **model), "mlx")
        msg = str(info.value)
        assert needle in msg and "\n" not in msg, msg
    # the loader must hand over whole utterances (the task crops at frame boundaries)
    spec = recipe(corpus, tmp_path / "crop")
    data = spec.to_dict()
    data["data"]["crop_seconds"] = 0.05
    with pytest.raises(DataError, match="crop_seconds: null"):
        make_trainer(TrainSpec._build(data, strict=True, where="test"), "mlx").run()
    # the real recipe names local paths the user fills in: a clear error, not a traceback
    real = load_recipe(ROOT / "mlx_speech" / "configs" / "mimi9_distill.yaml")
    with pytest.raises(UserError) as info:
        Mimi9Base(real.model)
    assert "\n" not in str(info.value)


def test_empty_codebook_is_initialised_from_data(corpus, tmp_path):
    """A surgered checkpoint leaves head 0's codebook empty: the task k-means-initialises it on
    model.init_manifest and leaves the transplanted (initialised) codebooks untouched."""
    from mlx.utils import tree_flatten

    from mlx_speech.weights.mlx import save_mlx_model
    from mlx_speech.models.mimi9.model import build_mimi9
    from mlx_speech.models.mimi9.spec import Mimi9Spec

    arch = Mimi9Spec.from_preset("mimi9_tiny")
    arch = arch.replace(bridge=arch.bridge.replace(ema=arch.bridge.ema.replace(kmeans_init=False)))
    model = build_mimi9(arch)
    cb = model.quantizer.content.levels[0].codebook
    cb.embedding_sum = cb.embedding_sum * 0
    cb.initialized = cb.initialized * 0
    save_mlx_model(tmp_path / "m9" / "model.safetensors", model, model="mimi9", spec=arch)
    saved = dict(tree_flatten(model.parameters()))
    with pytest.raises(SpecError, match="init_manifest"):
        make_trainer(recipe(corpus, tmp_path / "a", weights=str(tmp_path / "m9"), preset=None,
                            architecture={}), "mlx")
    m = make_trainer(recipe(corpus, tmp_path / "b", weights=str(tmp_path / "m9"), preset=None,
                            architecture={}, init_manifest=str(corpus)), "mlx")
    w = m.weights()
    book = "quantizer.content.levels.0.codebook."
    assert w[book + "initialized"][0] == 1 and np.abs(w[book + "embedding_sum"]).sum() > 0
    for k, v in saved.items():
        if "codebook" in k and not k.startswith("quantizer.content."):
            np.testing.assert_array_equal(w[k], np.array(v), err_msg=k)
    t = make_trainer(recipe(corpus, tmp_path / "c", weights=str(tmp_path / "m9"), preset=None,
                            architecture={}, init_manifest=str(corpus)), "torch")
    wt = t.model.state_dict()
    assert float(wt[book + "initialized"][0]) == 1
    # same k-means draws; float differences in the latents may move a few vectors between clusters
    close = np.isclose(wt[book + "embedding_sum"].cpu().numpy(), w[book + "embedding_sum"], atol=1e-4).all(-1)
    print(f"torch vs MLX k-means rows equal: {close.mean():.2f}")
    assert close.mean() >= 0.75


def test_teacher_cache_is_built_once_and_keyed_by_teacher(corpus, tmp_path):
    from mlx_speech.train.mimi9_targets import build_cache

    sources = f"data.sources=[{{kind: manifest, path: {corpus}}}]"
    args = [sources, f"model.cache_dir={tmp_path / 'cache'}"]
    first = build_cache(ROOT / "mlx_speech" / "configs" / "mimi9_tiny.yaml", args, progress=False)
    again = build_cache(ROOT / "mlx_speech" / "configs" / "mimi9_tiny.yaml", args, progress=False)
    other = build_cache(ROOT / "mlx_speech" / "configs" / "mimi9_tiny.yaml", [*args, "model.qwen.layer=1"],
                        progress=False)
    assert (first["items"], first["written"], again["written"], other["written"]) == (4, 4, 0, 4)
    assert other["cache"] != first["cache"]


def test_distill_recipe_groups_match_the_model():
    """mlx_speech/configs/mimi9_distill.yaml: AdamW (0.8, 0.99); heads 0/1 + projections + gate at 1e-4,
    acoustic heads at 1e-5, encoder / decoder frozen, codebook statistics buffers (names of a
    Mimi9 model, the tiny one has the same tree)."""
    from mlx.utils import tree_flatten

    from mlx_speech.models.mimi9.model import build_mimi9
    from mlx_speech.models.mimi9.spec import Mimi9Spec

    real = load_recipe(ROOT / "mlx_speech" / "configs" / "mimi9_distill.yaml")
    assert real.optimizer.betas == [0.8, 0.99] and real.compile is False
    model = build_mimi9(Mimi9Spec.from_preset("mimi9_tiny"))
    every = [k for k, _ in tree_flatten(model.parameters())]
    names = [k for k, _ in tree_flatten(model.trainable_parameters())]  # what the trainer groups
    assert {n for n in every if n not in names} == {
        n for n in every if n.rsplit(".", 1)[1] in ("embedding_sum", "cluster_usage", "initialized")}
    groups = {g.name: g for g in resolve_groups(names, real.optimizer)}
    assert groups["heads"].lr == 1e-4 and groups["acoustic"].lr == 1e-5
    assert "quantizer.content_gate" in groups["heads"].params
    assert all(n.startswith("quantizer.acoustic.") for n in groups["acoustic"].params)
    assert groups["frozen"].frozen and "default" not in groups
    assert any(n.startswith("encoder.") for n in groups["frozen"].params)


# --- optional GAN terms (model.loss.adversarial > 0) ---------------------------------------------
# The discriminator's structure (2 periods, 2 scales, grouped MSD convs) at narrow widths.
TEST_DISC = dict(periods=[2, 3], mpd_channels=[4, 8], msd_scales=2, msd_channels=[4, 8, 8, 8, 8, 8, 8],
                 msd_groups=[1, 4, 4, 4, 4, 4, 1])


@pytest.fixture
def one_torch_thread():
    """torch's CPU convs slow down ~30x with 2 threads on a loaded 2-core machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def gan_recipe(corpus: Path, out: Path, *, steps: int = 3, adversarial: float = 0.1,
               feature_matching: float = 0.2, **model) -> TrainSpec:
    """The tiny recipe with the GAN terms on: narrow discriminator, groups renamed generator.*."""
    data = recipe(corpus, out, steps=steps, **model).to_dict()
    data["model"]["loss"].update(adversarial=adversarial, feature_matching=feature_matching)
    data["model"]["discriminator"] = dict(TEST_DISC)
    for g in data["optimizer"]["groups"]:
        g["match"] = [f"generator.{p}" for p in g["match"]]
    data["disc_optimizer"] = {"lr": 1e-3}
    return TrainSpec._build(data, strict=True, where="test")


@pytest.mark.usefixtures("one_torch_thread")
def test_gan_first_step_matches_torch(corpus, tmp_path):
    """GAN variant, MLX vs torch_ref on one step of two micro-batches (same weights, wrapper
    copied whole): the discriminator loss and every generator term agree, and the learning
    codebooks end where MLX's do (the discriminator pass's EMA updates are discarded in both)."""
    from convert.parity import copy_mlx_to_torch

    spec = gan_recipe(corpus, tmp_path / "m", ema_heads=[0, 1])
    m = make_trainer(spec, "mlx")
    t = make_trainer(gan_recipe(corpus, tmp_path / "t", ema_heads=[0, 1]), "torch")
    assert m.task.gan and t.task.gan and type(m.task).gan is False
    assert set(m.optims) == {"optim", "doptim"}
    assert all(n.startswith("discriminator.") for n in m.optims["doptim"].names)
    assert all(n.startswith("generator.") for n in m.optims["optim"].names)
    copy_mlx_to_torch(m.model, t.model)
    before = m.weights()
    micro = first_micro_batches(m, 2)
    rm = m._train_step(micro, 1.0, 0)
    rt = t._train_step(micro, 1.0, 0)
    assert rm.finite and rt.finite
    diffs = {k: abs(rm.metrics[k] - rt.metrics[k])
             for k in ("d_loss", "mel", "commitment", "qwen", "wavlm", "adv", "fm")}
    diffs["loss"] = abs(rm.loss - rt.loss)
    print({k: f"{v:.1e}" for k, v in diffs.items()})
    assert max(diffs.values()) <= 1e-4, diffs
    after = m.weights()
    wt = {k: v.detach().cpu().numpy() for k, v in t.model.state_dict().items()}
    book = "generator.quantizer.content.levels.0.codebook.embedding_sum"
    assert np.abs(after[book] - before[book]).max() > 1e-6
    np.testing.assert_allclose(after[book], wt[book], atol=1e-5)
    # both optimisers stepped the same way
    for k in ("discriminator.mpd.discriminators.0.conv_post.bias", "generator.quantizer.proj_qwen.weight"):
        assert not np.array_equal(before[k], after[k]), k
    np.testing.assert_allclose(after["generator.quantizer.proj_qwen.weight"],
                               wt["generator.quantizer.proj_qwen.weight"], atol=1e-5)


def test_gan_tiny_run_trains(corpus, tmp_path):
    """8 MLX steps with the GAN terms on. Criterion: the discriminator loss is finite and logged
    every step, both networks move, the frozen decoder does not, and the distillation losses
    fall as in the plain run (qwen and wavlm to < 0.9x their first value, mel <= 1.1x). The
    GAN terms alone have a non-zero gradient on the trained generator weights; validation (the
    generator's distillation total) runs on the wrapper."""
    import dataclasses

    import mlx.core as mx

    from mlx_speech.data.loader import Loader

    out = tmp_path / "gan"
    tr = make_trainer(gan_recipe(corpus, out, steps=8), "mlx")
    w0 = tr.weights()
    tr.run()
    w = tr.weights()
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in log if "qwen" in r]
    assert len(steps) == 8 and all(np.isfinite(r["d_loss"]) and r["d_loss"] > 0 for r in steps)
    assert all(np.isfinite(r["adv"]) and np.isfinite(r["fm"]) for r in steps)
    first, last = steps[0], steps[-1]
    print({k: (round(first[k], 4), round(last[k], 4))
           for k in ("mel", "qwen", "wavlm", "d_loss", "adv", "fm")})
    assert last["qwen"] < 0.9 * first["qwen"]
    assert last["wavlm"] < 0.9 * first["wavlm"]
    assert last["mel"] <= 1.1 * first["mel"]
    for prefix in ("generator.quantizer.", "discriminator."):
        assert any(not np.array_equal(w[k], w0[k]) for k in w if k.startswith(prefix)), prefix
    assert all(np.array_equal(w[k], w0[k]) for k in w if k.startswith("generator.decoder."))
    with Loader(tr.corpus.items, tr.plan, sample_rate=24000, crop_seconds=None, seed=0, prefetch=1,
                workers=1) as loader:
        batch = next(loader)
    inputs = tr.task.prepare(batch, [np.random.default_rng(i) for i in range(len(batch.items))], train=False)
    val, rows = tr._eval_batch(inputs)
    assert rows == 4 and np.isfinite(val)
    # the generator loss with the distillation weights at 0: only the GAN terms
    task = tr.task
    task.spec.loss = dataclasses.replace(task.spec.loss, mel=0.0, commitment=0.0, qwen=0.0, wavlm=0.0)
    loss, grads, met, _ = tr._grads(
        "gan_only", lambda x: task.generator_loss(tr.model.generator, tr.model.discriminator, x),
        tr.optims["optim"].names, [inputs])
    assert float(loss.item()) == pytest.approx(0.1 * float(met["adv"].item()) + 0.2 * float(met["fm"].item()),
                                               rel=1e-5)
    reach = {k: float(mx.abs(g).max().item()) for k, g in grads.items() if k.endswith("out_proj.weight")}
    assert reach and all(v > 0 for v in reach.values()), reach
    # the evaluation command reads the codec out of a GAN run's checkpoint
    from mlx_speech.eval.mimi9 import evaluate

    ckpts = sorted((out / "checkpoints").glob("ckpt_*.safetensors"))
    rep = evaluate(ckpts[-1], corpus, qwen=QwenTeacherSpec(config=QWEN),
                   wavlm=WavLMTeacherSpec(spec=WAVLM))
    assert len(rep["heads"]) == 9 and np.isfinite(rep["recon"]["snr_db"])


def test_gan_spec_and_groups(corpus, tmp_path):
    """Spec checks, the plain recipe's groups under the wrapper's names (a one-line error),
    and the GAN block documented in mlx_speech/configs/mimi9_distill.yaml (groups match the wrapper)."""
    import yaml
    from mlx.utils import tree_flatten

    from mlx_speech.models.mimi9.model import build_mimi9
    from mlx_speech.models.mimi9.spec import Mimi9Spec
    from mlx_speech.models.mimi9.train_spec import Mimi9LossSpec, Mimi9TrainSpec
    from mlx_speech.models.hifigan.train_spec import HiFiGANDiscriminatorSpec
    from mlx_speech.train.discriminators import HiFiGANDiscriminator
    from mlx_speech.train.tasks_mimi9 import Mimi9GAN

    with pytest.raises(SpecError, match="feature_matching > 0 needs adversarial"):
        Mimi9LossSpec._build({"feature_matching": 1.0}, strict=True, where="model.loss")
    with pytest.raises(SpecError, match="adversarial must be >= 0"):
        Mimi9LossSpec._build({"adversarial": -1.0}, strict=True, where="model.loss")
    assert not Mimi9LossSpec().gan and Mimi9LossSpec(adversarial=0.5).gan
    data = recipe(corpus, tmp_path / "plain").to_dict()
    data["model"]["loss"]["adversarial"] = 1.0
    with pytest.raises(SpecError) as info:  # groups still name the plain model's parameters
        make_trainer(TrainSpec._build(data, strict=True, where="test"), "mlx")
    assert "generator." in str(info.value) and "\n" not in str(info.value)

    text = (ROOT / "mlx_speech" / "configs" / "mimi9_distill.yaml").read_text().splitlines()
    a, b = text.index("# BEGIN GAN VARIANT"), text.index("# END GAN VARIANT")
    block = yaml.safe_load("\n".join(line[2:] for line in text[a + 1:b]))
    real = load_recipe(ROOT / "mlx_speech" / "configs" / "mimi9_distill.yaml").to_dict()
    real["model"]["loss"] = block["model"]["loss"]
    real["model"]["discriminator"] = block["model"]["discriminator"]
    real["optimizer"]["groups"] = block["optimizer"]["groups"]
    real["disc_optimizer"] = block["disc_optimizer"]
    spec = TrainSpec._build(real, strict=True, where="GAN block")
    task = Mimi9TrainSpec._build(spec.model, strict=True, where="model")
    assert task.loss.gan and task.loss.feature_matching > 0
    assert task.discriminator == HiFiGANDiscriminatorSpec()  # the block restates the paper's
    model = Mimi9GAN(generator=build_mimi9(Mimi9Spec.from_preset("mimi9_tiny")),
                     discriminator=HiFiGANDiscriminator(HiFiGANDiscriminatorSpec(**TEST_DISC)))
    names = [k for k, _ in tree_flatten(model.trainable_parameters()) if not k.startswith("discriminator.")]
    groups = {g.name: g for g in resolve_groups(names, spec.optimizer)}
    assert set(groups) == {"frozen", "heads", "acoustic"}
    assert "generator.quantizer.content_gate" in groups["heads"].params
    assert any(n.startswith("generator.decoder.") for n in groups["frozen"].params)
    assert spec.disc_opt().lr == 1e-4 and not spec.disc_opt().groups

"""Training recipes: strict YAML, overrides, parameter groups, schedules, shipped configs,
and the import isolation of the framework-neutral training / data modules."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

from mlx_speech.errors import SpecError
from mlx_speech.specs.train import MelDenoiseGANSpec, MelDenoiserSpec, OptimizerSpec, TrainSpec
from mlx_speech.train.recipe import apply_override, load_recipe
from mlx_speech.train.schedule import lr_factor, resolve_groups, trainable
from mlx_speech.train.task_base import get_task

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "mlx_speech" / "configs").glob("train_*.yaml"))


def test_recipe_yaml_round_trip(tmp_path):
    spec = TrainSpec.from_yaml(
        "task: mel_denoise\n"
        "optimizer: {lr: 0.01, betas: [0.8, 0.99], groups: [{name: head, match: ['out_proj.*'], lr: 0.1}]}\n"
        "data: {sources: [{kind: manifest, path: m.jsonl, weight: 2.0}]}\n"
        "ema: {decay: 0.5}\n")
    path = tmp_path / "r.yaml"
    spec.to_yaml(path)
    again = TrainSpec.from_yaml(path)
    assert again == spec
    assert again.optimizer.groups[0].lr == 0.1 and again.ema.enabled and again.ema.decay == 0.5
    assert not TrainSpec(task="x").ema.enabled  # no ema section: off


@pytest.mark.parametrize("text, needle", [
    ("task: t\noptimizer: {lrr: 1}\n", "unknown key 'lrr' (did you mean 'lr'?)"),
    ("task: t\nema: {decay: 0.9, bogus: 1}\n", "TrainSpec.ema: unknown key 'bogus'"),
    ("task: t\ndisc_optimizer: {beta: [0.5, 0.9]}\n", "disc_optimizer: unknown key 'beta'"),
    ("task: t\noptimizer: {betas: [0.9]}\n", "betas must be two numbers"),
    ("task: t\ndata: {batch_size: 6}\ngrad_accum: 4\n", "divisible by grad_accum 4"),
    ("task: t\ndata: {sources: [{kind: manifest, path: a, weight: 1.0}, {kind: folder, path: b}]}\n",
     "set weight on every source or on none"),
    ("task: t\nprecision: fp8\n", "TrainSpec.precision: expected one of 'fp32', 'bf16'"),
    ("task: t\noptimizer: {groups: [{name: a, match: []}]}\n", "match needs at least one pattern"),
], ids=["typo", "nested", "disc-overrides", "betas", "accum", "weights", "precision", "empty-match"])
def test_recipe_errors_are_one_clear_line(text, needle):
    with pytest.raises(SpecError) as exc:
        TrainSpec.from_yaml(text)
    assert needle in str(exc.value)
    assert "\n" not in str(exc.value)


def test_disc_optimizer_overrides_without_groups():
    spec = TrainSpec.from_yaml("task: t\noptimizer: {lr: 0.01, betas: [0.8, 0.99], "
                               "groups: [{name: h, match: ['x*']}]}\ndisc_optimizer: {lr: 0.5}\n")
    d = spec.disc_opt()
    assert d.lr == 0.5 and d.betas == [0.8, 0.99] and d.groups == []


def test_overrides_are_strict(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("task: mel_denoise\nsteps: 5\n")
    spec = load_recipe(path, ["data.batch_size=4", "optimizer.lr=0.5", "ema.decay=0.9", "steps=7"])
    assert (spec.data.batch_size, spec.optimizer.lr, spec.ema.decay, spec.steps) == (4, 0.5, 0.9, 7)
    with pytest.raises(SpecError, match="unknown key 'batch'"):
        load_recipe(path, ["data.batch=4"])
    with pytest.raises(SpecError, match="key=value"):
        apply_override({}, "steps")


def test_lr_schedules():
    warm = OptimizerSpec(lr=1.0, warmup_steps=4, schedule="cosine", min_lr_ratio=0.1)
    assert [lr_factor(s, warm, 14) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, warm, 14) == pytest.approx(1.0)
    assert lr_factor(13, warm, 14) == pytest.approx(0.1)
    mid = lr_factor(4 + 9 // 2, warm, 14)
    assert mid == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 4 / 9)))
    exp = OptimizerSpec(schedule="exponential", decay_gamma=0.5, min_lr_ratio=0.2)
    assert [lr_factor(s, exp, 10) for s in range(4)] == [1.0, 0.5, 0.25, 0.2]
    assert lr_factor(7, OptimizerSpec(schedule="constant"), 10) == 1.0


def test_parameter_groups_first_match_wins_and_typos_fail():
    names = ["in_proj.weight", "in_proj.bias", "transformer.layers.0.linear1.weight", "out_proj.weight"]
    spec = OptimizerSpec(lr=1e-3, weight_decay=0.1, groups=[
        {"name": "heads", "match": ["out_proj.*"], "lr": 1e-4},
        {"name": "frozen", "match": ["in_proj.*"], "frozen": True},
        {"name": "again", "match": ["out_proj.weight", "*.linear1.*"], "weight_decay": 0.0},
    ])
    spec = OptimizerSpec._build(spec.to_dict(), strict=True, where="opt")
    groups = {g.name: g for g in resolve_groups(names, spec)}
    assert groups["heads"].params == ("out_proj.weight",) and groups["heads"].lr == 1e-4
    assert groups["frozen"].frozen and groups["again"].weight_decay == 0.0
    assert "default" not in groups  # everything matched
    assert trainable(list(groups.values())) == ["out_proj.weight", "transformer.layers.0.linear1.weight"]
    bad = OptimizerSpec._build({"groups": [{"name": "x", "match": ["decoder.*"]}]}, strict=True, where="o")
    with pytest.raises(SpecError, match="match no parameter"):
        resolve_groups(names, bad)


def test_task_specs_are_strict():
    task = get_task("mel_denoise", "mlx")
    with pytest.raises(SpecError, match="model: unknown key 'dims'"):
        task({"dims": 3})
    assert isinstance(task({"dim": 32, "num_heads": 4}).spec, MelDenoiserSpec)
    assert isinstance(get_task("mel_denoise_gan", "torch")({}).spec, MelDenoiseGANSpec)
    with pytest.raises(SpecError, match="unknown task 'nope'; registered: ") as err:
        get_task("nope", "mlx")
    # other tests may register tasks of their own: check the shipped ones are all named
    named = str(err.value).split("registered: ", 1)[1].split(", ")
    assert {"bsq_vit", "dac", "hifigan", "mel_denoise", "mel_denoise_gan", "miipher2_adapters",
            "miipher2_vocoder", "mimi9", "s2s", "s2s_lm", "tts"} <= set(named)
    assert named == sorted(named)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_recipes_parse(path):
    spec = TrainSpec.from_yaml(path)
    get_task(spec.task, "mlx")(spec.model)
    assert spec.data.sources and spec.steps > 0


def test_neutral_training_modules_import_neither_mlx_nor_torch():
    mods = ["mlx_speech.specs.train", "mlx_speech.train.loop", "mlx_speech.train.checkpoint",
            "mlx_speech.train.monitor", "mlx_speech.train.schedule", "mlx_speech.train.task_base",
            "mlx_speech.train.recipe", "mlx_speech.data.manifest", "mlx_speech.data.sampler",
            "mlx_speech.data.loader", "mlx_speech.data.augment", "mlx_speech.data.synth_corpus",
            "mlx_speech.data.voices", "mlx_speech.data.toy", "torch_ref.train"]
    code = ("import sys\n" + "".join(f"import {m}\n" for m in mods)
            + "print(','.join(m for m in ('mlx', 'mlx.core', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""

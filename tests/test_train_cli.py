"""``mlx-speech train``: recipe + overrides, JSON summary, resume, one-line user errors."""

import json

import pytest
from click.testing import CliRunner

from cli import cli
from mlx_speech.data.toy import write_toy_corpus


def _run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return str(write_toy_corpus(tmp_path_factory.mktemp("toy"), n=8, seconds=(0.5, 0.8)))


def _recipe(tmp_path, manifest, extra=""):
    path = tmp_path / "recipe.yaml"
    path.write_text(
        "task: mel_denoise\n"
        "model: {dim: 16, num_layers: 1, num_heads: 2, ffn_dim: 32}\n"
        f"data: {{sources: [{{kind: manifest, path: {manifest}}}], batch_size: 4, crop_seconds: 0.3}}\n"
        f"out_dir: {tmp_path / 'run'}\n" + extra)
    return path


def test_train_json_summary_overrides_and_resume(manifest, tmp_path):
    path = _recipe(tmp_path, manifest, "steps: 50\n")
    res = _run("train", str(path), "--steps", "3", "--set", "checkpoint.every=2", "--no-progress", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["step"] == 3 and summary["resumed_from"] is None
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "ckpt_00000002.safetensors", "ckpt_00000003.safetensors"]
    # what a kill -9 inside the metrics log's atomic rewrite leaves behind
    leftover = tmp_path / "run" / ".metrics.jsonl.k9x_2ab7.jsonl"
    leftover.write_text('{"step": 1}\n')
    res = _run("train", str(path), "--steps", "5", "--no-progress", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["step"] == 5 and summary["resumed_from"].endswith("ckpt_00000003.safetensors")
    assert not leftover.exists() and "removed an interrupted write: .metrics.jsonl." in res.stderr


@pytest.mark.parametrize("extra, args, needle", [
    ("optimizer: {lrr: 1}\n", [], "unknown key 'lrr' (did you mean 'lr'?)"),
    ("", ["--set", "data.batch_sise=2"], "unknown key 'batch_sise'"),
    ("task: nope\n", [], "unknown task 'nope'"),
    ("optimizer: {groups: [{name: g, match: ['decoder.*']}]}\n", [], "match no parameter"),
    ("data: {sources: [{kind: manifest, path: /nonexistent/m.jsonl}]}\n", [], "manifest not found"),
    ("model: {dim: 8}\n", [], "invalid YAML at line 5, column 1: duplicate key 'model' (first given at line 2)"),
    ("optimizer: {lr: 1.0e-3, lr: 1.0e-2}\n", [], "line 5, column 25: duplicate key 'lr'"),
    ("", ["--set", "optimizer={lr: 1, lr: 2}"], "--set optimizer: value"),
], ids=["typo", "override-typo", "task", "group", "missing-data", "duplicate-key", "duplicate-nested",
        "duplicate-override"])
def test_user_errors_are_one_line_exit_2(manifest, tmp_path, extra, args, needle):
    path = _recipe(tmp_path, manifest)
    text = path.read_text()
    if extra.startswith("task:"):
        text = text.replace("task: mel_denoise\n", extra)
    elif extra.startswith("data:"):
        text = "\n".join(x for x in text.splitlines() if not x.startswith("data:")) + "\n" + extra
    else:
        text += extra
    path.write_text(text)
    res = CliRunner().invoke(cli, ["train", str(path), "--no-progress", *args])
    assert res.exit_code == 2, res.output
    assert needle in res.output and res.output.startswith("error: ")
    assert res.output.strip().count("\n") == 0


def test_missing_recipe_file(tmp_path):
    res = CliRunner().invoke(cli, ["train", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2 and "config file not found" in res.output


@pytest.mark.parametrize("args, needle", [
    (["mimi9", "--config", "{recipe}"], "is a recipe for task 'mel_denoise', expected task: mimi9"),
    (["hifigan", "--config", "{recipe}"], "expected task: hifigan"),
    (["tts", "--config", "{recipe}"], "is a recipe for task 'mel_denoise', expected task: tts"),
    (["bogus", "--config", "{recipe}"], "unknown train target 'bogus'"),
    (["bogus"], "config file not found: bogus (targets: bsq_vit, bsq_vit_b36, dac, hifigan, miipher2_adapters, miipher2_finetune, miipher2_vocoder, mimi9, s2s, s2s_lm, s2s_lm_tiny, s2s_tiny, tts, tts_hi_nsk, tts_te_nsk, vocos_nsk, vocos_slt, vocos_slt_gta, vocos_slt_mel"),
    (["tts", "--config", "{bad}"], "invalid YAML at line 3, column 1: expected ',' or ']'"),
    (["tts", "--config", "{dup}"], "invalid YAML at line 2, column 1: duplicate key 'task'"),
], ids=["mimi9-wrong-task", "hifigan-wrong-task", "tts-gets-trainer-recipe", "unknown-target",
        "unknown-name", "bad-yaml", "duplicate-key"])
def test_train_targets_check_the_recipe_first(manifest, tmp_path, args, needle):
    recipe = _recipe(tmp_path, manifest)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  dim: [1, 2\n")
    dup = tmp_path / "dup.yaml"
    dup.write_text("task: tts\ntask: mel_denoise\n")
    args = [a.format(recipe=recipe, bad=bad, dup=dup) for a in args]
    res = CliRunner().invoke(cli, ["train", *args, "--no-progress"])
    assert res.exit_code == 2, res.output
    assert needle in res.output and res.output.startswith("error: "), res.output
    assert res.output.strip().count("\n") == 0


def test_train_target_resolution(tmp_path):
    from mlx_speech.registry import targets
    from mlx_speech.train.targets import recipe_path, resolve

    assert {"tts", "mimi9", "hifigan"} <= set(targets())  # registered by the families
    tts = tmp_path / "voice.yaml"
    tts.write_text(recipe_path("tts_slt_tiny.yaml").read_text())
    assert resolve(str(tts), None).task is None  # a recipe path: any task
    job = resolve("tts", None)  # the default recipe ships in the package (mlx_speech/configs/)
    assert job.task == "tts" and job.config == recipe_path(targets()["tts"].recipe)
    rec = tmp_path / "r.yaml"
    rec.write_text("task: mimi9\n")
    assert resolve("mimi9", rec) == type(job)(rec, "mimi9")
    assert resolve(str(rec), None).task is None


def test_ctrl_c_finishes_the_step_writes_a_checkpoint_and_resumes(manifest, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    path = _recipe(tmp_path, manifest, "steps: 100000\ncheckpoint: {every: 1000}\n")
    cmd = [sys.executable, "-c", "import sys; from cli import cli; cli(sys.argv[1:])",
           "train", str(path), "--no-progress", "--set", "monitor.log_every=1"]
    # this checkout first, then whatever the caller had (a GPU machine's site folder lives there)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root),
                                                                     os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    log = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, (out, err)
    lines = [x for x in err.strip().splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "interrupted at step" in lines[0] and "resume" in lines[0], err
    step = int(lines[0].split("interrupted at step ")[1].split("/")[0])
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert ckpts == [f"ckpt_{step:08d}.safetensors"]
    res = _run("train", str(path), "--steps", str(step + 2), "--no-progress", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["step"] == step + 2 and summary["resumed_from"].endswith(ckpts[0])

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
    res = _run("train", str(path), "--steps", "5", "--no-progress", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["step"] == 5 and summary["resumed_from"].endswith("ckpt_00000003.safetensors")


@pytest.mark.parametrize("extra, args, needle", [
    ("optimizer: {lrr: 1}\n", [], "unknown key 'lrr' (did you mean 'lr'?)"),
    ("", ["--set", "data.batch_sise=2"], "unknown key 'batch_sise'"),
    ("task: nope\n", [], "unknown task 'nope'"),
    ("optimizer: {groups: [{name: g, match: ['decoder.*']}]}\n", [], "match no parameter"),
    ("data: {sources: [{kind: manifest, path: /nonexistent/m.jsonl}]}\n", [], "manifest not found"),
], ids=["typo", "override-typo", "task", "group", "missing-data"])
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

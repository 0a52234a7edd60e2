"""CLI commands that replaced the library modules' ``python -m`` entry points:
``data teacher-cache`` (mimi9 teacher targets up front) and ``eval tts`` (intelligibility)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli import cli
from mlx_speech.train.mimi9_data import write_timed_toy_corpus
from mlx_speech.train.targets import recipe_path


def _one_line_error(res, needle: str) -> None:
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and needle in res.output, res.output
    assert res.output.strip().count("\n") == 0


def test_teacher_cache_fills_the_cache_once(tmp_path):
    pytest.importorskip("mlx_lm")  # the Qwen teacher
    corpus = write_timed_toy_corpus(tmp_path / "corpus", n=2, seconds=0.1)
    args = ["data", "teacher-cache", "--config", str(recipe_path("mimi9_tiny.yaml")), "--no-progress", "--json",
            "--set", f"data.sources=[{{kind: manifest, path: {corpus}}}]",
            "--set", f"model.cache_dir={tmp_path / 'cache'}"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(cli, args)
    a, b = json.loads(first.output), json.loads(again.output)
    assert (a["items"], a["written"], b["written"]) == (2, 2, 0)
    assert a["cache"].startswith(str(tmp_path / "cache"))


def test_teacher_cache_user_errors(tmp_path):
    _one_line_error(CliRunner().invoke(cli, ["data", "teacher-cache", "--config", str(tmp_path / "nope.yaml")]),
                    "config file not found")
    _one_line_error(CliRunner().invoke(cli, ["data", "teacher-cache", "--config",
                                             str(recipe_path("train_mel_denoise_tiny.yaml"))]),
                    "a recipe for task 'mel_denoise', not mimi9")


def test_eval_tts_options_and_missing_corpus(tmp_path):
    res = CliRunner().invoke(cli, ["eval", "tts", "--help"])
    assert res.exit_code == 0
    for opt in ("--teacher-dir", "--voice", "--vocoder", "--out"):
        assert opt in res.output
    _one_line_error(CliRunner().invoke(cli, ["eval", "tts", "--teacher-dir", str(tmp_path / "heldout")]),
                    "no manifest.jsonl in")

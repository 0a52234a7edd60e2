"""Bad-input catalogue for text and pickles (issue 24, item 7): messages that say what is wrong."""

import os
import pickle

import pytest
from click.testing import CliRunner

from cli import cli
from mlx_speech.errors import CheckpointError
from mlx_speech.weights.checkpoint import load_pickle_state


@pytest.mark.parametrize("text, script", [("नमस्ते दुनिया", "Devanagari"), ("నమస్కారం", "Telugu")])
def test_other_script_with_the_english_voice(text, script, tmp_path):
    res = CliRunner().invoke(cli, ["synth", text, "-o", str(tmp_path / "x.wav")])
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert line.count("\n") == 0 and script in line and "does not speak" in line, line
    assert "no letters or digits" not in line
    assert not (tmp_path / "x.wav").exists()


def test_punctuation_only_still_says_no_letters(tmp_path):
    res = CliRunner().invoke(cli, ["synth", "?!...", "-o", str(tmp_path / "x.wav")])
    assert res.exit_code == 2 and "no letters or digits" in res.output, res.output


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo never-run > /dev/null",))


def test_pickle_refusal_never_suggests_weights_only_false(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"w": _Payload()}, fh)
    with pytest.raises(CheckpointError) as info:
        load_pickle_state(path)
    msg = str(info.value)
    assert "weights_only" not in msg and "False" not in msg and "safe_globals" not in msg, msg
    assert "refused" in msg and "not loaded" in msg and "\n" not in msg, msg
    assert "Unsupported" in msg, msg  # the unpickler's own reason is kept
    path.write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(CheckpointError, match="only tensors-only pickles load") as info:
        load_pickle_state(path)
    assert "weights_only" not in str(info.value)

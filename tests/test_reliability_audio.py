"""Bad audio input: a seeded fuzz of damaged WAV / FLAC files through ``audio.io.load`` and
``info``, and the CLI's bad-input catalogue (``audio inspect``, ``audio convert``): every
failure is one of our own error types with one line, never a crash, a hang or garbage audio."""

import io as pyio
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from cli import cli

SEED = 20241204
N_FILES = 100
FILE_TIMEOUT_S = 5  # one file; the whole fuzz runs in one child with an overall limit below
FUZZ_TIMEOUT_S = 60

# ---- the fuzz ---------------------------------------------------------------------------------


def _valid_files() -> dict[str, bytes]:
    """Tiny (0.1 s) valid files: WAV PCM_16 mono, WAV FLOAT stereo, FLAC PCM_16 mono."""
    t = np.arange(1600) / 16000
    mono = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    stereo = np.stack([mono, -0.5 * mono], axis=1)
    out = {}
    for name, data, fmt, subtype in [("pcm16.wav", mono, "WAV", "PCM_16"),
                                     ("float.wav", stereo, "WAV", "FLOAT"),
                                     ("pcm16.flac", mono, "FLAC", "PCM_16")]:
        buf = pyio.BytesIO()
        sf.write(buf, data, 16000, format=fmt, subtype=subtype)
        out[name] = buf.getvalue()
    return out


def _mutate(data: bytes, kind: str, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    header = min(64, len(b))
    if kind == "truncate":
        return bytes(b[: int(rng.integers(1, len(b)))])
    if kind in ("flip_header", "flip_data"):
        lo, hi = (0, header) if kind == "flip_header" else (header, len(b))
        for i in rng.integers(lo, hi, size=int(rng.integers(1, 9))):
            b[i] ^= int(rng.integers(1, 256))
        return bytes(b)
    if kind == "zero_header":
        return bytes(header) + bytes(b[header:])
    if kind == "append_garbage":
        return bytes(b) + rng.bytes(int(rng.integers(1, 4096)))
    if kind == "empty":
        return b""
    raise AssertionError(kind)


KINDS = ["truncate", "flip_header", "flip_data", "zero_header", "append_garbage", "empty"]

# Runs in a child process, so a hang in libsndfile (C code no signal can interrupt) is caught by
# the parent's timeout; prints one JSON line per file *before* and after loading it.
_CHILD = r"""
import json, signal, sys
from pathlib import Path
import numpy as np
from mlx_speech.audio import io
from mlx_speech.errors import UserError

def alarm(*_):
    raise TimeoutError("took too long")

signal.signal(signal.SIGALRM, alarm)
for path in sorted(Path(sys.argv[1]).iterdir()):
    print(json.dumps({"start": path.name}), flush=True)
    for call in ("load", "info"):
        signal.alarm(int(sys.argv[2]))
        rec = {"file": path.name, "call": call}
        try:
            if call == "load":
                x, sr = io.load(path)
                rec.update(ok=True, dtype=str(x.dtype), shape=list(x.shape), sr=sr,
                           finite=bool(np.isfinite(x).all()))
                y, _ = io.load(path, mono=False)
                rec.update(stereo_shape=list(y.shape))
            else:
                meta = io.info(path)
                rec.update(ok=True, channels=meta["channels"], frames=meta["frames"])
        except UserError as e:
            rec.update(ok=False, user=True, type=type(e).__name__, msg=str(e))
        except BaseException as e:  # noqa: BLE001 - recorded, then the parent fails the test
            rec.update(ok=False, user=False, type=type(e).__name__, msg=str(e))
        finally:
            signal.alarm(0)
        print(json.dumps(rec), flush=True)
"""


@pytest.fixture(scope="module")
def fuzz_results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(SEED)
    valid = _valid_files()
    names = sorted(valid)
    for i in range(N_FILES):
        base, kind = names[i % len(names)], KINDS[i % len(KINDS)]
        ext = base.rsplit(".", 1)[1]
        (folder / f"{i:03d}_{kind}_{base.replace('.', '_')}.{ext}").write_bytes(_mutate(valid[base], kind, rng))
    try:
        done = subprocess.run([sys.executable, "-c", _CHILD, str(folder), str(FILE_TIMEOUT_S)],
                              capture_output=True, text=True, timeout=FUZZ_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        started = [json.loads(line)["start"] for line in out.splitlines() if '"start"' in line]
        pytest.fail(f"the fuzz hung (last file started: {started[-1] if started else None})")
    assert done.returncode == 0, f"the fuzz child crashed ({done.returncode}):\n{done.stderr[-3000:]}"
    recs = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"file"')]
    assert len(recs) == 2 * N_FILES
    return recs


def test_fuzz_raises_only_our_errors(fuzz_results):
    bad = [f"{r['file']} {r['call']}: {r['type']}: {r['msg']}" for r in fuzz_results
           if not r["ok"] and not r["user"]]
    assert not bad, "\n".join(bad)
    for r in fuzz_results:
        if not r["ok"]:
            assert r["msg"] and "\n" not in r["msg"] and r["file"].split("_", 1)[0] in r["msg"]
            if "_empty_" in r["file"]:
                assert r["msg"].endswith("the file is empty (0 bytes)"), r
    failed = {r["type"] for r in fuzz_results if not r["ok"]}
    assert failed <= {"AudioError"}, failed
    # the fuzz is not vacuous: some damage is survivable, some is not
    assert 10 < sum(r["ok"] for r in fuzz_results) < 2 * N_FILES - 10


def test_fuzz_audio_that_loads_is_sane(fuzz_results):
    for r in fuzz_results:
        if r["ok"] and r["call"] == "load":
            assert r["dtype"] == "float32" and r["finite"], r
            assert len(r["shape"]) == 1 and r["shape"][0] > 0, r
            assert len(r["stereo_shape"]) == 2 and r["stereo_shape"][1] == r["shape"][0], r


# ---- the CLI catalogue ------------------------------------------------------------------------

def _bad_input(tmp_path, case: str):
    if case == "missing":
        return tmp_path / "nope.wav", "audio file not found"
    if case == "directory":
        (tmp_path / "folder.wav").mkdir()
        return tmp_path / "folder.wav", "got a directory"
    path = tmp_path / f"{case}.wav"
    if case == "empty-file":
        path.write_bytes(b"")
        return path, "the file is empty (0 bytes)"
    if case == "random-bytes":
        path.write_bytes(np.random.default_rng(1).bytes(2000))
        return path, "cannot read audio file"
    if case == "random-bytes-mp3":
        path = tmp_path / "random.mp3"
        path.write_bytes(np.random.default_rng(1).bytes(2000))
        return path, "not a readable audio file (the name says MP3"
    if case == "nan-audio":
        x = np.full(1600, 0.1, np.float32)
        x[100] = np.nan
        sf.write(path, x, 16000, subtype="FLOAT")
        return path, "contains NaN or Inf samples"
    raise AssertionError(case)


CASES = ["missing", "directory", "empty-file", "random-bytes", "random-bytes-mp3", "nan-audio"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("command", ["inspect", "convert"])
def test_cli_bad_audio_is_one_line_exit_2(tmp_path, case, command):
    src, needle = _bad_input(tmp_path, case)
    dst = tmp_path / "out" / "dst.wav"
    args = ["audio", "inspect", str(src)] if command == "inspect" else ["audio", "convert", str(src), str(dst)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, res.output
    assert res.stdout == "" and res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, res.stderr
    assert needle in res.stderr and src.name in res.stderr, res.stderr
    assert not dst.exists() and not (tmp_path / "out").exists()


def test_random_bytes_named_mp3_print_one_line_in_a_real_process(tmp_path):
    """Refused before libsndfile's MP3 decoder sees it, which prints its own notes to stderr."""
    path = tmp_path / "noise.mp3"
    path.write_bytes(bytes(np.random.default_rng(7).integers(0, 256, 3000, dtype=np.uint8)))
    out = subprocess.run([sys.executable, "-m", "cli", "audio", "inspect", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "the name says MP3" in out.stderr

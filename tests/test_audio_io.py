"""Audio file I/O: round trips, resampling at 8-48 kHz, and reliability (clear one-line errors, atomic saves)."""

import os
import struct

import mlx_speech  # noqa: F401
import numpy as np
import pytest
import soundfile as sf

from mlx_speech.audio import io
from mlx_speech.audio.synth import speechlike
from mlx_speech.errors import AudioError, UserError

RATES = [8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000]


def _sine(sr, freq=997.0, seconds=0.5, amp=0.5):
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _assert_clean_error(excinfo, *needles):
    """A user error: the expected type, one line, naming what went wrong."""
    msg = str(excinfo.value)
    assert isinstance(excinfo.value, UserError)
    assert "\n" not in msg and msg.strip() == msg and msg
    for needle in needles:
        assert str(needle).lower() in msg.lower(), (needle, msg)
    # no chained traceback from soundfile / numpy underneath
    err = excinfo.value
    assert err.__cause__ is None and (err.__suppress_context__ or err.__context__ is None)


def _dominant_hz(x, sr):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * sr / len(x)


# ---- round trips ------------------------------------------------------------------------------

@pytest.mark.parametrize("ext,subtype,atol", [("wav", "PCM_16", 1 / 32767), ("flac", "PCM_24", 1e-6), ("wav", "FLOAT", 0.0)])
def test_save_load_round_trip(tmp_path, ext, subtype, atol):
    x = speechlike(16000, 0.5)
    path = io.save(tmp_path / f"a.{ext}", x, 16000, subtype=subtype)
    y, sr = io.load(path)
    assert sr == 16000 and y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=atol + 1e-7)


def test_ogg_round_trip_is_close(tmp_path):
    x = _sine(16000, 440.0)
    path = io.save(tmp_path / "a.ogg", x, 16000)  # PCM_16 default falls back to VORBIS for OGG
    assert io.info(path)["subtype"] == "VORBIS"
    y, _ = io.load(path)
    assert abs(len(y) - len(x)) < 100
    n = min(len(x), len(y))
    assert 10 * np.log10(np.sum(x[:n] ** 2) / np.sum((x[:n] - y[:n]) ** 2)) > 15


def test_multichannel_mono_and_layout(tmp_path):
    x = np.stack([_sine(16000, 300.0), _sine(16000, 500.0, amp=0.25), np.zeros(8000, np.float32)])
    path = io.save(tmp_path / "three.wav", x, 16000, subtype="FLOAT")
    y, _ = io.load(path, mono=False)
    assert y.shape == (3, 8000)
    np.testing.assert_allclose(y, x, atol=1e-7)
    m, _ = io.load(path)
    assert m.shape == (8000,)
    np.testing.assert_allclose(m, x.mean(axis=0), atol=1e-6)
    one, _ = io.load(io.save(tmp_path / "mono.wav", x[0], 16000), mono=False)
    assert one.shape == (1, 8000)


@pytest.mark.parametrize("sr_in", RATES)
def test_every_rate_loads_and_resamples(tmp_path, sr_in):
    x = _sine(sr_in)
    path = io.save(tmp_path / f"s{sr_in}.flac", x, sr_in, subtype="PCM_24")
    y, sr = io.load(path)
    assert sr == sr_in and len(y) == len(x)
    for sr_out in (16000, 44100):
        z, got = io.load(path, sr=sr_out)
        assert got == sr_out and z.dtype == np.float32
        assert abs(len(z) - round(len(x) * sr_out / sr_in)) <= 1
        assert abs(_dominant_hz(z, sr_out) - 997.0) <= sr_out / len(z)  # within one FFT bin
        core = z[len(z) // 10 : -len(z) // 10]  # away from the edges' filter transients
        assert np.sqrt(np.mean(core**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_info_and_convert(tmp_path):
    x = np.stack([_sine(22050, 440.0, amp=0.5), _sine(22050, 440.0, amp=0.5)])
    src = io.save(tmp_path / "src.wav", x, 22050, subtype="PCM_24")
    meta = io.info(src)
    assert meta["sample_rate"] == 22050 and meta["channels"] == 2 and meta["frames"] == 11025
    assert meta["duration_s"] == pytest.approx(0.5)
    assert (meta["format"], meta["subtype"]) == ("WAV", "PCM_24")
    assert meta["peak"] == pytest.approx(0.5, abs=1e-3)
    assert meta["rms_dbfs"] == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.05)
    dst = io.convert(src, tmp_path / "out" / "dst.flac", sr=16000, mono=True)
    got = io.info(dst)
    assert (got["sample_rate"], got["channels"], got["frames"], got["subtype"]) == (16000, 1, 8000, "PCM_24")
    silent = io.info(io.save(tmp_path / "silence.wav", np.zeros(100, np.float32), 16000))
    assert silent["peak"] == 0.0 and silent["rms_dbfs"] == -200.0


def _write_mp3(path, x, sr):
    if "MP3" not in sf.available_formats():
        pytest.skip(f"libsndfile {sf.__libsndfile_version__} cannot write MP3 (needs >= 1.1 with lame)")
    sf.write(path, x, sr, format="MP3")
    return path


def test_convert_mp3_to_wav_and_flac(tmp_path):
    # WAV + MPEG_LAYER_III passes check_format but libsndfile cannot write it: use PCM_16.
    src = _write_mp3(tmp_path / "in.mp3", _sine(16000, 440.0, amp=0.3), 16000)
    for name in ("out.wav", "out.flac"):
        got = io.info(io.convert(src, tmp_path / name))
        assert (got["sample_rate"], got["subtype"]) == (16000, "PCM_16")
        assert got["peak"] == pytest.approx(0.3, abs=0.05)


@pytest.mark.parametrize("src_subtype,dst_ext,expected", [
    ("FLOAT", "wav", "FLOAT"), ("PCM_24", "flac", "PCM_24"), ("FLOAT", "flac", "PCM_16"),
    ("ULAW", "wav", "PCM_16"), ("PCM_U8", "flac", "PCM_16"),
], ids=["float-kept", "pcm24-kept", "float-to-flac", "ulaw-not-kept", "u8-not-in-flac"])
def test_convert_keeps_only_sample_subtypes_the_destination_writes(tmp_path, src_subtype, expected, dst_ext):
    src = tmp_path / "src.wav"
    sf.write(src, _sine(16000, seconds=0.1), 16000, subtype=src_subtype)
    assert io.info(io.convert(src, tmp_path / f"dst.{dst_ext}"))["subtype"] == expected


def test_save_clips_pcm_but_not_float(tmp_path):
    x = np.array([0.0, 1.5, -2.0, 0.25], np.float32)
    y, _ = io.load(io.save(tmp_path / "pcm.wav", x, 16000))
    assert y.max() <= 1.0 and y.min() >= -1.0 and y[1] > 0.99
    z, _ = io.load(io.save(tmp_path / "float.wav", x, 16000, subtype="FLOAT"))
    np.testing.assert_array_equal(z, x)


def test_save_creates_parents_and_overwrites_atomically(tmp_path):
    path = tmp_path / "a" / "b" / "c.wav"
    io.save(path, _sine(16000), 16000)
    io.save(path, _sine(16000, amp=0.1), 16000)
    assert io.info(path)["peak"] == pytest.approx(0.1, abs=1e-3)
    assert sorted(os.listdir(path.parent)) == ["c.wav"]


# ---- reliability: reading ---------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(AudioError) as e:
        io.load(tmp_path / "nope.wav")
    _assert_clean_error(e, "not found", "nope.wav")
    with pytest.raises(AudioError) as e:
        io.info(tmp_path / "nope.wav")
    _assert_clean_error(e, "not found")


def test_directory(tmp_path):
    with pytest.raises(AudioError) as e:
        io.load(tmp_path)
    _assert_clean_error(e, "directory", tmp_path)


@pytest.mark.parametrize("keep", [0.5, 30])
def test_truncated_wav(tmp_path, keep):
    good = io.save(tmp_path / "good.wav", speechlike(16000, 0.5), 16000)
    data = good.read_bytes()
    bad = tmp_path / "bad.wav"
    bad.write_bytes(data[: int(len(data) * keep) if keep < 1 else keep])
    with pytest.raises(AudioError) as e:
        io.load(bad)
    _assert_clean_error(e, "bad.wav")
    assert "truncated" in str(e.value) or "cannot read" in str(e.value)


def test_truncated_flac(tmp_path):
    good = io.save(tmp_path / "good.flac", speechlike(16000, 0.5), 16000)
    bad = tmp_path / "bad.flac"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(AudioError) as e:
        io.load(bad)
    _assert_clean_error(e, "cannot read", "bad.flac")


def test_text_file_named_wav(tmp_path):
    fake = tmp_path / "notes.wav"
    fake.write_text("this is not audio\n" * 20)
    with pytest.raises(AudioError) as e:
        io.load(fake)
    _assert_clean_error(e, "cannot read", "notes.wav", "not recognised")


def test_random_bytes_named_mp3(tmp_path):
    fake = tmp_path / "song.mp3"
    fake.write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(AudioError) as e:
        io.load(fake)
    _assert_clean_error(e, "song.mp3", "not a readable audio file", "MP3")
    assert "pipe" not in str(e.value) and "does not exist" not in str(e.value)


def test_unreadable_file_says_permission_denied(tmp_path, monkeypatch):
    path = io.save(tmp_path / "secret.wav", _sine(16000, seconds=0.1), 16000)
    if os.geteuid() != 0:  # root reads through chmod 000, so simulate it there
        path.chmod(0)
    else:
        def denied(file, *args, **kwargs):
            raise PermissionError(13, "Permission denied", str(file))

        monkeypatch.setattr(io, "open", denied, raising=False)
    for call in (io.load, io.info):
        with pytest.raises(AudioError) as e:
            call(path)
        _assert_clean_error(e, "secret.wav", "permission denied")
        assert "no such file" not in str(e.value).lower()


@pytest.mark.parametrize("error", ["oserror", "libsndfile"])
def test_write_error_names_the_destination_not_the_temp_file(tmp_path, monkeypatch, error):
    def fail(file, *args, **kwargs):
        if error == "oserror":
            raise OSError(28, "No space left on device", str(file))
        raise sf.LibsndfileError(2, prefix=f"Error writing {str(file)!r}: ")

    monkeypatch.setattr(io.sf, "write", fail)
    with pytest.raises(AudioError) as e:
        io.save(tmp_path / "dest.wav", _sine(16000, seconds=0.1), 16000)
    _assert_clean_error(e, "write failed", "dest.wav")
    assert ".part" not in str(e.value) and ".dest.wav." not in str(e.value)
    assert os.listdir(tmp_path) == []


def test_empty_audio(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError) as e:
        io.load(path)
    _assert_clean_error(e, "empty", "empty.wav")


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_non_finite_samples_in_file(tmp_path, bad_value):
    x = _sine(16000)
    x[100] = bad_value
    path = tmp_path / "nonfinite.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError) as e:
        io.load(path)
    _assert_clean_error(e, "nan or inf", "nonfinite.wav")


@pytest.mark.parametrize("header_rate", [3, 10**9])
def test_absurd_sample_rate_in_header(tmp_path, header_rate):
    path = io.save(tmp_path / "rate.wav", _sine(16000), 16000)
    data = bytearray(path.read_bytes())
    assert data[24:28] == struct.pack("<I", 16000)  # canonical 44-byte PCM header
    data[24:28] = struct.pack("<I", header_rate)
    path.write_bytes(bytes(data))
    with pytest.raises(AudioError) as e:
        io.load(path)
    _assert_clean_error(e, "sample rate", header_rate, "rate.wav")


@pytest.mark.parametrize("sr", [0, -16000, 10**7, 16000.5, "16k"])
def test_absurd_requested_rate(tmp_path, sr):
    path = io.save(tmp_path / "ok.wav", _sine(16000), 16000)
    with pytest.raises(AudioError) as e:
        io.load(path, sr=sr)
    _assert_clean_error(e, "sample rate")


# ---- reliability: writing ---------------------------------------------------------------------

@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_failed_save_leaves_existing_file_intact(tmp_path, bad_value):
    path = io.save(tmp_path / "keep.wav", _sine(16000), 16000)
    before = path.read_bytes()
    x = _sine(16000, amp=0.1)
    x[5] = bad_value
    with pytest.raises(AudioError) as e:
        io.save(path, x, 16000)
    _assert_clean_error(e, "nan or inf", "keep.wav")
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["keep.wav"]  # no temp files left behind


def test_write_error_mid_save_cleans_up(tmp_path, monkeypatch):
    path = io.save(tmp_path / "keep.flac", _sine(16000), 16000)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise sf.LibsndfileError(1, prefix="Error writing: ")

    monkeypatch.setattr(io.sf, "write", boom)
    with pytest.raises(AudioError) as e:
        io.save(path, _sine(16000, amp=0.2), 16000)
    _assert_clean_error(e, "write failed", "keep.flac")
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["keep.flac"]


@pytest.mark.parametrize(
    "wav,needle",
    [
        (np.zeros(0, np.float32), "empty"),
        (np.zeros((2, 2, 100), np.float32), "shape"),
        (np.zeros((16000, 2), np.float32), "(C, T)"),
        (["a", "b"], "numeric"),
    ],
    ids=["empty", "rank3", "time-major", "strings"],
)
def test_save_rejects_bad_arrays(tmp_path, wav, needle):
    with pytest.raises(AudioError) as e:
        io.save(tmp_path / "x.wav", wav, 16000)
    _assert_clean_error(e, needle, "x.wav")
    assert not os.listdir(tmp_path)


def test_save_rejects_bad_format_subtype_and_rate(tmp_path):
    with pytest.raises(AudioError) as e:
        io.save(tmp_path / "x.xyz", _sine(16000), 16000)
    _assert_clean_error(e, "extension", ".xyz")
    with pytest.raises(AudioError) as e:
        io.save(tmp_path / "x.flac", _sine(16000), 16000, subtype="FLOAT")
    _assert_clean_error(e, "subtype", "FLAC")
    with pytest.raises(AudioError) as e:
        io.save(tmp_path / "x.wav", _sine(16000), 0)
    _assert_clean_error(e, "sample rate")
    assert not os.listdir(tmp_path)

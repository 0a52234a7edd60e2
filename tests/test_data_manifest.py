"""Datasets: JSONL manifests, audio folders, the LJSpeech layout, corpus building."""

import json

import numpy as np
import pytest

from mlx_speech.audio.io import save
from mlx_speech.data.manifest import (DataError, Item, load_source, read_ljspeech, read_manifest,
                                      scan_folder, with_audio_info, write_manifest)
from mlx_speech.data.sampler import build_corpus
from mlx_speech.specs.train import DataSpec


def _wav(path, seconds=0.5, sr=16000, seed=0):
    x = 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * sr)).astype(np.float32)
    return save(path, x, sr)


def test_manifest_round_trip_with_timings(tmp_path):
    w = _wav(tmp_path / "wavs" / "a.wav")
    items = [Item(path=str(w), text="héllo wörld", lang="en", speaker="s1", duration=0.5,
                  sample_rate=16000, phones=(("hh", 0.0, 0.1), ("ow", 0.1, 0.3)),
                  words=(("hello", 0.0, 0.3),))]
    m = write_manifest(tmp_path / "manifest.jsonl", items)
    line = json.loads(m.read_text(encoding="utf-8").splitlines()[0])
    assert line["path"] == "wavs/a.wav"  # relative to the manifest
    assert line["phones"][1] == ["ow", 0.1, 0.3]
    back = read_manifest(m)
    assert back == items


def test_manifest_degraded_copy_is_resolved_like_path(tmp_path):
    items = [Item(path=str(tmp_path / "clean" / "a.wav"), degraded=str(tmp_path / "noisy" / "a.wav"))]
    m = write_manifest(tmp_path / "manifest.jsonl", items)
    assert json.loads(m.read_text().splitlines()[0])["degraded"] == "noisy/a.wav"
    assert read_manifest(m) == items
    (tmp_path / "bad.jsonl").write_text('{"path": "a.wav", "degraded": 1}\n')
    with pytest.raises(DataError, match="'degraded' must be a string"):
        read_manifest(tmp_path / "bad.jsonl")


@pytest.mark.parametrize("line, needle", [
    ('{"text": "x"}', "'path' (a non-empty string) is required"),
    ('{"path": "a.wav", "txt": "x"}', "unknown key 'txt'"),
    ('{"path": "a.wav", "duration": -1}', "'duration' must be a positive number"),
    ('{"path": "a.wav", "phones": [["a", 0.2, 0.1]]}', "phones[0]: expected [label, start, end]"),
    ('{"path": "a.wav", "text": 3}', "'text' must be a string"),
    ('{"path": "a.wav"', "invalid JSON"),
    ('[1, 2]', "expected a JSON object"),
], ids=["no-path", "unknown-key", "duration", "timing-order", "text-type", "json", "not-object"])
def test_manifest_errors_name_file_and_line(tmp_path, line, needle):
    m = tmp_path / "m.jsonl"
    m.write_text('{"path": "ok.wav"}\n\n' + line + "\n")
    with pytest.raises(DataError) as exc:
        read_manifest(m)
    msg = str(exc.value)
    assert f"{m}:3" in msg and needle in msg and "\n" not in msg


def test_missing_and_empty_manifest(tmp_path):
    with pytest.raises(DataError, match="manifest not found"):
        read_manifest(tmp_path / "nope.jsonl")
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(DataError, match="has no items"):
        read_manifest(tmp_path / "e.jsonl")


def test_folder_scan_reads_sidecar_text_and_speakers(tmp_path):
    _wav(tmp_path / "spk1" / "a.wav")
    (tmp_path / "spk1" / "a.txt").write_text("first line\n", encoding="utf-8")
    _wav(tmp_path / "b.wav", seconds=0.25)
    (tmp_path / "notes.md").write_text("ignored")
    items = scan_folder(tmp_path, lang="hi")
    got = [(it.text, it.speaker, it.lang) for it in items]
    assert got == [("", None, "hi"), ("first line", "spk1", "hi")]
    info = with_audio_info(items)
    assert info[0].duration == pytest.approx(0.25) and info[0].sample_rate == 16000
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no audio files"):
        scan_folder(tmp_path / "empty")
    with pytest.raises(DataError, match="audio folder not found"):
        scan_folder(tmp_path / "missing")


def test_ljspeech_layout(tmp_path):
    root = tmp_path / "LJSpeech-1.1"
    _wav(root / "wavs" / "LJ001-0001.wav")
    _wav(root / "wavs" / "LJ001-0002.wav")
    (root / "metadata.csv").write_text(
        "LJ001-0001|Printing, in the only sense|Printing, in the only sense\n"
        "LJ001-0002|in 1878 it was|in eighteen seventy-eight it was\n", encoding="utf-8")
    items = read_ljspeech(root)
    assert [it.text for it in items] == ["Printing, in the only sense", "in eighteen seventy-eight it was"]
    assert items[0].lang == "en" and items[0].speaker == "LJSpeech-1.1"
    (root / "metadata.csv").write_text("LJ009-0009|gone\n", encoding="utf-8")
    with pytest.raises(DataError, match="audio file not found"):
        read_ljspeech(root)


def test_unreadable_audio_is_a_data_error(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEfmt nonsense")
    (tmp_path / "m.jsonl").write_text('{"path": "bad.wav"}\n')
    with pytest.raises(DataError, match="cannot read audio file"):
        load_source("manifest", str(tmp_path / "m.jsonl"))


def test_corpus_filters_lengths_languages_and_holds_out_validation(tmp_path):
    items = []
    for i, (sec, lang) in enumerate([(0.2, "en"), (0.6, "en"), (0.7, "hi"), (0.8, "te"), (2.5, "hi"),
                                     (0.9, "hi"), (0.6, "te"), (0.5, "en")]):
        items.append(Item(path=str(_wav(tmp_path / f"{i}.wav", sec, seed=i)), lang=lang))
    m = write_manifest(tmp_path / "m.jsonl", items)
    spec = DataSpec.from_dict({"sources": [{"kind": "manifest", "path": str(m), "langs": ["hi", "te"]}],
                               "min_seconds": 0.3, "max_seconds": 2.0, "val_fraction": 0.25})
    c = build_corpus(spec, seed=0)
    every = c.items + c.val_items
    assert sorted(it.duration for it in every) == pytest.approx([0.6, 0.7, 0.8, 0.9])
    assert len(c.val_items) == 1 and all(it.lang in ("hi", "te") for it in every)
    assert build_corpus(spec, seed=0).val_items == c.val_items  # deterministic split
    with pytest.raises(DataError, match="data.sources is empty"):
        build_corpus(DataSpec(), seed=0)

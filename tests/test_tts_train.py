"""The voice recipe end to end on a 2-utterance festival corpus: features, MLX and torch_ref
training steps, the voice folder it writes loads and speaks; recipe errors are clear."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import mlx_speech  # noqa: F401  (before mlx)

from mlx_speech.errors import SpecError
from mlx_speech.specs.tts import TTSRecipeSpec
from mlx_speech.train.tasks_tts import (corpus_phones, durations_from_timings, frame_f0, single_voice_corpus,
                                        train_voice)

needs_festival = pytest.mark.skipif(shutil.which("festival") is None, reason="festival not installed")

RECIPE = """
model: {{dim: 32, num_heads: 2, encoder_layers: 1, decoder_layers: 1, ffn_dim: 32, ffn_kernel: 3,
        predictor_dim: 16, aligner_dim: 0}}
sentences: {sentences}
corpus_dir: {corpus}
out_dir: {out}
steps: 3
batch_size: 2
warmup_steps: 1
log_every: 1
save_every: 2
"""


def test_helpers():
    assert corpus_phones(["pau", "hh", "ax", "pau", "l", "dx", "pau"]) == ["<sil>", "hh", "ax", "<sp>", "l", "d", "<sil>"]
    d = durations_from_timings([("a", 0, 0.1), ("b", 0.1, 0.25), ("c", 0.25, 0.31)], 27, 86.13)
    assert d.sum() == 27 and (d >= 0).all()
    sr, f = 22050, 200.0
    wav = (0.5 * np.sin(2 * np.pi * f * np.arange(sr) / sr)).astype(np.float32)
    f0 = frame_f0(wav, sr, 256, 1024, 80)
    assert abs(np.median(f0[5:-5]) - f) < 6


def test_recipe_is_strict():
    with pytest.raises(SpecError, match="alignment"):
        TTSRecipeSpec.from_yaml("alignment: learned\n")
    with pytest.raises(SpecError, match="stepz"):
        TTSRecipeSpec.from_yaml("stepz: 3\n")
    assert TTSRecipeSpec.from_yaml("configs/tts_slt_tiny.yaml").voice == "cmu_us_slt_arctic_hts"


@needs_festival
@pytest.mark.parametrize("backend", ["mlx", "torch"])
def test_train_voice_tiny(tmp_path, backend):
    if backend == "torch":
        pytest.importorskip("torch")
    sents = tmp_path / "s.txt"
    sents.write_text("Hello there.\nThe cat sat on the mat.\n", encoding="utf-8")
    corpus = tmp_path / "corpus"
    cache = tmp_path.parent / "tts_train_corpus"
    if not (cache / "manifest.jsonl").is_file():
        single_voice_corpus(cache, sentences=["Hello there.", "The cat sat on the mat."], progress=False, workers=1)
    shutil.copytree(cache, corpus)
    # manifests store absolute paths: rewrite to the copy
    lines = (corpus / "manifest.jsonl").read_text().replace(str(cache), str(corpus))
    (corpus / "manifest.jsonl").write_text(lines)
    cfg = tmp_path / "r.yaml"
    cfg.write_text(RECIPE.format(sentences=sents, corpus=corpus, out=tmp_path / "run"))
    res = train_voice(cfg, backend=backend, progress=False)
    assert res["steps"] == 3
    log = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and all(np.isfinite(r["loss"]) for r in log)
    from mlx_speech.models.tts import Synthesizer

    syn = Synthesizer(tmp_path / "run" / "voice", gl_iters=2)
    assert syn.synthesize("Hello.").dtype == np.float32

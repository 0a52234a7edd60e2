"""The ``s2s_lm`` task (model B's training): the monologue's alignment with and without word
timings; MLX and torch_ref first-step losses agree; a tiny Moshi-style LM overfits 10
synthetic pairs written straight into the codes cache (the loss falls and teacher-forced
greedy predictions reproduce the text and own-audio tokens); init from a moshi folder; recipe
errors. The tokenizer is a sentencepiece model trained here, offline, on a few sentences."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf

from mlx_speech.errors import SpecError, UserError
from mlx_speech.models.s2s.lm_spec import MoshiLMSpec
from mlx_speech.specs.train import TrainSpec
from mlx_speech.train.monitor import read_metrics
from mlx_speech.train.recipe import make_trainer
from mlx_speech.train.s2s_data import CodesCache
from mlx_speech.train.s2s_lm_data import align_text, spread_starts, teacher_inputs, word_start_frames

torch = pytest.importorskip("torch")
spm = pytest.importorskip("sentencepiece")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N = 10
CARD = MoshiLMSpec.from_preset("tiny").card
SENTENCES = ["hello there", "good morning to you", "yes i can hear you", "see you soon",
             "the cat sat on the mat", "how are you today", "thank you very much",
             "what a lovely day", "it is raining again", "see you later"]
PAD, EPAD = 3, 0  # moshi's existing_text_padding_id / existing_text_end_padding_id


def own_codes(user):
    """The model's 3 codebooks: a chain each frame follows from the last (and the first from
    the user's last frame), so a small model can learn it as well as memorise it."""
    frames = 4 + int(user[0, 0]) % 4
    out = np.zeros((3, frames), np.int32)
    prev = int(user[0, -1])
    for t in range(frames):
        out[0, t] = prev = (7 * prev + 3) % CARD
        out[1, t] = (out[0, t] + 5) % CARD
        out[2, t] = (2 * out[1, t] + 1) % CARD
    return out


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("s2s_lm")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(SENTENCES * 4), model_writer=model,
                                   vocab_size=40, model_type="unigram", pad_id=3, unk_id=0,
                                   bos_id=1, eos_id=2, hard_vocab_limit=False,
                                   character_coverage=1.0, minloglevel=2)
    tok = root / "tok.model"
    tok.write_bytes(model.getvalue())
    codec = root / "codec.bin"
    codec.write_bytes(b"stand-in codec weights")
    cache = CodesCache(root / "cache", codec="mimi", weights=str(codec), num_codebooks=3)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(N):
        src, dst = root / f"in{i}.wav", root / f"out{i}.wav"
        sf.write(src, np.zeros(480 + i, np.float32), 24000)
        sf.write(dst, np.zeros(480 + i, np.float32), 24000)
        user = rng.integers(0, CARD, (3, int(rng.integers(4, 7)))).astype(np.int32)
        cache.write(str(src), user, 0)
        own = own_codes(user)
        cache.write(str(dst), own, 0)
        line = {"path": src.name, "target": dst.name, "text": SENTENCES[i]}
        if i % 2:  # timed words: one per 80 ms frame of Mimi's 12.5 Hz
            line["words"] = [[w, 0.08 * k, 0.08 * k + 0.05] for k, w in enumerate(SENTENCES[i].split())]
        lines.append(json.dumps(line))
    manifest = root / "pairs.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return root, str(manifest), str(codec), str(tok)


def recipe(synthetic, out, model=None, **over):
    root, manifest, codec, tok = synthetic
    m = {"preset": "tiny", "arch": {"context": 32}, "codec_weights": codec, "tokenizer": tok,
         "cache_dir": str(root / "cache"), "max_frames": 16, "text_padding_weight": 0.5,
         "first_codebook_weight": 2.0}
    for k, v in (model or {}).items():
        m[k] = {**m[k], **v} if isinstance(v, dict) else v
    d = {"task": "s2s_lm", "steps": 1, "out_dir": str(out), "compile": False, "seed": 1,
         "model": m,
         "data": {"sources": [{"kind": "manifest", "path": manifest}], "sample_rate": 24000,
                  "batch_size": 4, "crop_seconds": None, "prefetch": 2, "workers": 1},
         "optimizer": {"lr": 2e-3, "betas": [0.9, 0.99], "schedule": "constant", "grad_clip": None},
         "checkpoint": {"every": 1000}, "monitor": {"progress": False, "log_every": 1}}
    d.update(over)
    return TrainSpec.from_dict(d)


def _records(path):
    return [r for r in read_metrics(path / "metrics.jsonl") if "loss" in r]


def test_alignment_with_and_without_timings():
    # timed: words start at floor(start * rate); an overlapped word waits; EPAD before a word
    # that follows padding; tokens past the end are cut
    got = align_text([[10, 11], [12], [13, 14, 15]], [1, 2, 7], 9, pad_id=PAD, epad_id=EPAD)
    assert got.tolist() == [EPAD, 10, 11, 12, PAD, PAD, EPAD, 13, 14]
    assert word_start_frames([("a", 0.0, 0.1), ("b", 0.159, 0.2), ("c", 0.16, 0.3)], 12.5) == [0, 1, 2]
    assert align_text([[9]], [0], 3, pad_id=PAD, epad_id=EPAD).tolist() == [9, PAD, PAD]
    assert align_text([], [], 2, pad_id=PAD, epad_id=EPAD).tolist() == [PAD, PAD]
    # untimed: spread evenly, every token placed, words never overlap
    counts = [2, 1, 3]
    starts = spread_starts(counts, 12)
    assert starts == [0, 4, 6]
    got = align_text([[10, 11], [12], [13, 14, 15]], starts, 12, pad_id=PAD, epad_id=EPAD)
    assert got.tolist() == [10, 11, PAD, EPAD, 12, EPAD, 13, 14, 15, PAD, PAD, PAD]
    assert spread_starts([3, 3], 6) == [0, 3] and spread_starts([], 5) == []
    assert (align_text([[1, 2, 4]] * 3, spread_starts([3] * 3, 5), 5, pad_id=PAD, epad_id=EPAD)
            == [1, 2, 4, 1, 2]).all()  # more tokens than frames: cut at the end


def word_level(path, size):
    """A word-level HF tokenizer.json of ``size`` entries (``w0`` .. ``w{size-1}``)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(size)}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path))


def test_tokenizers_by_suffix(synthetic, tmp_path):
    from mlx_speech.train.s2s_lm_data import TextTokenizer

    pytest.importorskip("tokenizers")
    word_level(tmp_path / "tokenizer.json", 20)
    assert TextTokenizer(str(tmp_path / "tokenizer.json"), text_card=48).words(
        ["w7", "", " w12 "]) == [[7], [], [12]]
    sp = TextTokenizer(synthetic[3], text_card=48)
    got = sp.words(["hello", "there"])
    assert sp.vocab_size <= 40 and all(got) and all(3 < t < 40 for w in got for t in w)


def test_teacher_inputs_mask_delays_and_zero_tokens():
    spec = MoshiLMSpec.from_preset("tiny")  # delays [0, 0, 1, 1, 0, 1, 1]
    codes = np.full((1, 7, 5), 2, np.int64)
    codes[0, 0] = [PAD, EPAD, 5, 6, PAD]
    codes[0, 1, 4] = -1
    out = teacher_inputs(codes, spec, weights=np.array([4.0, 1.0, 1.0]), text_padding_weight=0.5)
    assert out["text_weight"][0].tolist() == [0.5, 0.5, 1.0, 1.0, 0.5]
    assert out["audio_weight"][0].tolist() == [[4, 4, 4, 4, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 0]]
    assert out["seq"].shape == (1, 7, 6) and out["seq"][0, 2, :2].tolist() == [spec.card] * 2


def test_mlx_and_torch_first_step_losses_agree(synthetic, tmp_path):
    from convert.parity import copy_mlx_to_torch

    m = make_trainer(recipe(synthetic, tmp_path / "m"), "mlx")
    t = make_trainer(recipe(synthetic, tmp_path / "t"), "torch")
    copy_mlx_to_torch(m.model, t.model)
    m.run()
    t.run()
    a, b = _records(tmp_path / "m")[0], _records(tmp_path / "t")[0]
    print(f"first step: mlx {a['loss']:.7f} torch {b['loss']:.7f} "
          f"(text {a['text']:.6f}/{b['text']:.6f}, audio {a['audio']:.6f}/{b['audio']:.6f})")
    for k in ("loss", "text", "audio", "text_acc", "audio_acc"):
        assert abs(a[k] - b[k]) <= 1e-4 * max(abs(b[k]), 1.0), (k, a[k], b[k])


def test_tiny_lm_overfits_and_exports(synthetic, tmp_path):
    import mlx.core as mx

    import mlx_speech
    from mlx_speech.train.tasks_s2s_lm import teacher_logits

    spec = recipe(synthetic, tmp_path / "run", steps=150, compile=True,
                  data={**recipe(synthetic, tmp_path).data.to_dict(), "batch_size": N},
                  optimizer={"lr": 1e-2, "betas": [0.9, 0.98], "schedule": "cosine",
                             "warmup_steps": 10, "min_lr_ratio": 0.1, "grad_clip": 1.0,
                             "weight_decay": 0.0},
                  monitor={"progress": False, "log_every": 10})
    tr = make_trainer(spec, "mlx")
    out = tr.run()
    assert out["pairs"] == N and out["skipped"] == 0
    loss = [r["loss"] for r in _records(tmp_path / "run")]
    assert loss[-1] < 0.2 * loss[0], loss
    model = mlx_speech.load(tmp_path / "run" / "moshi_lm.safetensors")  # the exported weights
    task = tr.task
    codes = np.stack([np.pad(task.row(it), ((0, 0), (0, 16 - task.row(it).shape[1])),
                             constant_values=-1) for it in task.items])
    inp = teacher_inputs(codes, model.spec, weights=task.weights, text_padding_weight=1.0)
    text, audio = teacher_logits(model, mx.array(inp["seq"]))
    acc = {}
    for name, logits in (("text", text), ("audio", audio)):
        on = inp[f"{name}_weight"] > 0
        hit = np.array(mx.argmax(mx.where(mx.isnan(logits), 0, logits), axis=-1)) == inp[f"{name}_target"]
        acc[name] = float(hit[on].mean())
    print(f"overfit: loss {loss[0]:.3f} -> {loss[-1]:.4f}, teacher-forced greedy accuracy {acc}")
    assert acc["text"] >= 0.9 and acc["audio"] >= 0.9, acc


@pytest.mark.parametrize("backend", ["mlx", "torch"])
def test_init_from_a_moshi_folder(synthetic, tmp_path, backend):
    loaders = pytest.importorskip("moshi.models.loaders", reason="moshi not installed")
    from safetensors.torch import save_file

    from mlx_speech.train.s2s_lm_data import S2SLMTaskBase

    arch = S2SLMTaskBase(recipe(synthetic, tmp_path).model).arch
    torch.manual_seed(0)
    lm = loaders.get_moshi_lm(None, lm_kwargs=arch.to_moshi_config(), dtype=torch.float32)
    folder = tmp_path / "moshi"
    folder.mkdir()
    state = {k: v.contiguous() for k, v in lm.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(arch.to_moshi_config()))
    tr = make_trainer(recipe(synthetic, tmp_path / "b", model={"init": str(folder)}), backend)
    if backend == "mlx":
        got = tr.weights()
    else:
        got = {k: v.detach().cpu().numpy() for k, v in tr.model.state_dict().items()}
    key = "text_emb.weight"
    np.testing.assert_array_equal(got[key], state[key].numpy())
    with pytest.raises(SpecError, match="spec differs") as info:
        make_trainer(recipe(synthetic, tmp_path / "c", model={"init": str(folder),
                                                               "arch": {"context": 16}}), backend)
    assert "context" in str(info.value)


def test_recipe_errors(synthetic, tmp_path):
    root = synthetic[0]
    word_level(root / "big.json", 60)
    (root / "junk.model").write_bytes(b"not a tokenizer")
    cases = [({"tokenizer": str(root / "nope.model")}, "tokenizer file not found"),
             ({"tokenizer": None}, "model.tokenizer is not set"),
             ({"tokenizer": str(root / "big.json")}, "vocabulary of 60 tokens does not fit the "
              "model's text_card 48"),
             ({"tokenizer": str(root / "junk.model")}, "not a readable tokenizer"),
             ({"tokenizer": str(root / "pairs.jsonl")}, "expected a sentencepiece .model"),
             ({"codebook_weights": [1.0]}, "codebook_weights has 1 entries"),
             ({"layout": "side"}, "layout must be one of"),
             ({"max_frames": 4}, "no training pair fits model.max_frames 4")]
    for over, msg in cases:
        with pytest.raises(UserError, match=msg) as info:
            make_trainer(recipe(synthetic, tmp_path / "x", model=over), "mlx")
        assert "\n" not in str(info.value), str(info.value)


def test_shipped_recipes_and_targets():
    from importlib import resources

    from mlx_speech.models.s2s.lm_train_spec import S2SLMTrainSpec
    from mlx_speech.registry import targets
    from mlx_speech.train.recipe import load_recipe

    for target, name in (("s2s_lm", "s2s_lm_small.yaml"), ("s2s_lm_tiny", "s2s_lm_tiny.yaml")):
        assert targets()[target].recipe == name and targets()[target].task == "s2s_lm"
        spec = S2SLMTrainSpec._build(load_recipe(resources.files("mlx_speech.configs") / name)
                                     .model, strict=True, where="model")
        arch = spec.model_spec()
        assert arch.card == 2048 and arch.n_q == 16 and spec.codec == "mimi"

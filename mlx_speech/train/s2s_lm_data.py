"""The ``s2s_lm`` task's framework-neutral half: the text tokenizer, the inner monologue's
alignment to frames, the conversation a pair becomes and the teacher-forcing inputs.

Imports neither mlx nor torch (numpy; ``sentencepiece`` / ``tokenizers`` when a tokenizer is
opened). Data is model A's (:mod:`mlx_speech.train.s2s_data`): the pair manifest (``path`` the
user's audio, ``target`` the model's, ``text`` what the model says, optional ``words``
timings in the target) and its codes cache, so a corpus coded for one model serves the other.

A pair becomes one row of ``1 + n_q`` channels (moshi ``LMModel``'s order: text, the model's
``dep_q`` codebooks, the user's ``n_q - dep_q``) over ``max_frames`` frames:

- ``layout: turns``: the user speaks frames ``0 .. Ti - 1``, the model ``Ti .. Ti + To - 1``
  (a question, then its answer); ``overlay``: both from frame 0 (the two channels of one
  recorded conversation, already on one timeline).
- a stream outside its own span, and every channel past the row's end, holds moshi's zero
  token ``-1``: it embeds as zeros and is left out of the loss (moshi masks
  ``codes == zero_token_id``). So in ``turns`` the model's own audio during the user's turn
  is neither input nor target; a corpus whose target files hold the model's silence on the
  user's timeline (``overlay``) trains what generation feeds back.
- text: :func:`align_text` over the row, moshi's padding id where the model says nothing
  (also while the user speaks: the monologue learns to wait), which *is* a target.

Teacher forcing (:func:`teacher_inputs`) is moshi ``LMModel.forward``'s: the delayed stream
(:func:`~mlx_speech.models.s2s.lm_stream.delay_codes`) is the input, the logits are moved back
onto the frames of ``codes`` and each position is trained on its own frame's token; a
channel's last ``delays[k]`` frames (no prediction: their input would be past the row) and
zero-token positions are masked. Loss weights per position: text ``1`` (``text_padding_weight``
for padding and end-of-padding targets), own codebook ``k`` ``weights[k]``, ``0`` where masked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.data.loader import Batch
from mlx_speech.data.manifest import DataError
from mlx_speech.data.sampler import Corpus
from mlx_speech.errors import SpecError
from mlx_speech.models.s2s import encdec_pattern as pat
from mlx_speech.models.s2s.lm_spec import MoshiLMSpec
from mlx_speech.models.s2s.lm_stream import ZERO, delay_codes
from mlx_speech.models.s2s.lm_train_spec import S2SLMTrainSpec
from mlx_speech.registry import get_codec
from mlx_speech.train.s2s_data import (CodesCache, PairItem, build_pair_corpus, cache_root,
                                       fitting_pairs)
from mlx_speech.train.task_base import Task


# --- text -------------------------------------------------------------------------------------
class TextTokenizer:
    """A tokenizer read from a local file: sentencepiece for ``.model``, HF ``tokenizers`` for
    ``.json``. Words are encoded one at a time (each with its leading-space marker, as a word
    of running text), since each is placed at its own frame."""

    def __init__(self, path: str | None, *, text_card: int) -> None:
        if not path:
            raise SpecError("model.tokenizer is not set: name the text tokenizer (a "
                            "sentencepiece .model or a tokenizer.json)")
        p = Path(path).expanduser()
        if not p.is_file():
            raise SpecError(f"model.tokenizer: tokenizer file not found: {p}")
        self.path = p
        try:
            if p.suffix == ".model":
                import sentencepiece  # noqa: PLC0415

                sp = sentencepiece.SentencePieceProcessor(model_file=str(p))
                self.vocab_size = int(sp.get_piece_size())
                self._encode = lambda w: list(sp.encode(w))
            elif p.suffix == ".json":
                from tokenizers import Tokenizer  # noqa: PLC0415

                tok = Tokenizer.from_file(str(p))
                self.vocab_size = int(tok.get_vocab_size())
                self._encode = lambda w: list(tok.encode(w, add_special_tokens=False).ids)
            else:
                raise SpecError(f"model.tokenizer {p}: expected a sentencepiece .model or a "
                                f"tokenizer.json, got suffix {p.suffix!r}")
        except SpecError:
            raise
        except Exception as exc:  # the libraries raise RuntimeError / their own types
            raise SpecError(f"model.tokenizer {p}: not a readable tokenizer "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
                            ) from None
        if self.vocab_size > text_card:
            raise SpecError(f"model.tokenizer {p}: its vocabulary of {self.vocab_size} tokens "
                            f"does not fit the model's text_card {text_card}")

    def words(self, words: list[str]) -> list[list[int]]:
        """Token ids of each word (empty words give no tokens)."""
        return [self._encode(w.strip()) if w.strip() else [] for w in words]


def word_start_frames(timings: Any, frame_rate: float) -> list[int]:
    """The frame each timed word ``(label, start_s, end_s)`` starts in: ``floor(start_s *
    frame_rate)``, the first frame whose span reaches past the word's start (moshi-finetune's
    interleaver places a word at the first ``t`` with ``start * rate < t + 1``)."""
    return [int(np.floor(t[1] * frame_rate)) for t in timings]


def spread_starts(counts: list[int], num_frames: int) -> list[int]:
    """Start frames for words of ``counts`` tokens spread evenly over ``num_frames`` frames
    (no timings): word ``i`` starts at ``floor(c_i * num_frames / n)``, ``c_i`` the tokens
    before it and ``n`` all tokens. When ``n <= num_frames`` every token gets a frame and no
    word overlaps the next (each token's share of frames is at least one)."""
    n = sum(counts)
    if n == 0:
        return [0] * len(counts)
    before = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return [int(c * num_frames // n) for c in before]


def align_text(words: list[list[int]], starts: list[int], num_frames: int, *, pad_id: int,
               epad_id: int) -> np.ndarray:
    """The text stream ``(num_frames,)`` int64 of words ``words`` (token ids) starting at frames
    ``starts`` (moshi's inner-monologue convention, as its fine-tuning interleaver builds it):

    - a word's tokens fill consecutive frames from its start frame; a word whose frame is
      still taken by the previous word's tokens starts right after them (no token is dropped
      for an overlap; tokens past the last frame are cut);
    - every other frame holds the padding id ``pad_id`` (moshi ``existing_text_padding_id``);
    - the padding frame just before a word, if there is one, holds the end-of-padding id
      ``epad_id`` (``existing_text_end_padding_id``): the model announces a word one frame
      ahead, so it can decide *when* to speak apart from *what*.

    Words are taken in order of their start frames (ties keep their order)."""
    out = np.full(num_frames, pad_id, dtype=np.int64)
    taken = np.zeros(num_frames, dtype=bool)
    free = 0  # first frame after the last placed token
    for i in sorted(range(len(words)), key=lambda j: starts[j]):
        toks = words[i]
        if not toks:
            continue
        pos = max(int(starts[i]), free, 0)
        if pos >= num_frames:
            break
        if pos > 0 and not taken[pos - 1]:
            out[pos - 1] = epad_id
        n = min(len(toks), num_frames - pos)
        out[pos: pos + n] = toks[:n]
        taken[pos: pos + n] = True
        free = pos + n
    return out


# --- teacher forcing --------------------------------------------------------------------------
def teacher_inputs(codes: np.ndarray, spec: MoshiLMSpec, *, weights: np.ndarray,
                   text_padding_weight: float) -> dict[str, np.ndarray]:
    """Step inputs of rows ``codes (B, 1 + n_q, T)`` (``-1``: zero token), module docstring:
    ``codes`` int32 as given (the torch model's ``forward`` input), ``seq (B, 1 + n_q, T + 1)``
    int32 the delayed stream (the MLX model's transformer input), ``text_target (B, T)`` /
    ``audio_target (B, dep_q, T)`` int32 (masked positions hold 0) and their float32 loss
    weights ``text_weight`` / ``audio_weight`` (0 where masked)."""
    B, K, T = codes.shape
    dq = spec.dep_q
    seq = delay_codes(codes, spec)
    delays = np.asarray(spec.delays, dtype=np.int64)
    mask = (codes != ZERO) & (np.arange(T)[None, :] < (T - delays)[:, None])[None]
    text = np.maximum(codes[:, 0], 0)
    pad = np.isin(text, [spec.existing_text_padding_id, spec.existing_text_end_padding_id])
    text_w = mask[:, 0] * np.where(pad, text_padding_weight, 1.0)
    audio_w = mask[:, 1: dq + 1] * np.asarray(weights, dtype=np.float64)[None, :, None]
    return {"codes": codes.astype(np.int32), "seq": seq.astype(np.int32),
            "text_target": text.astype(np.int32), "text_weight": text_w.astype(np.float32),
            "audio_target": np.maximum(codes[:, 1: dq + 1], 0).astype(np.int32),
            "audio_weight": audio_w.astype(np.float32)}


# --- the task's neutral half ------------------------------------------------------------------
class S2SLMTaskBase(Task):
    """Inputs of one step (module docstring); the framework halves add ``build`` and ``loss``."""

    spec_class = S2SLMTrainSpec

    def __init__(self, spec: dict[str, Any] | S2SLMTrainSpec) -> None:
        super().__init__(spec)
        self.arch = self.spec.model_spec()
        self.frame_rate = float(get_codec(self.spec.codec).frame_rate)
        self.tokenizer = TextTokenizer(self.spec.tokenizer, text_card=self.arch.text_card)
        self.weights = np.array(self.spec.weights(), dtype=np.float32)
        self.cache: CodesCache | None = None
        self.out_dir = Path(".")
        self.skipped = self.pairs = 0
        self.items: list[PairItem] = []  # the training pairs open_corpus kept
        self._rows: dict[str, np.ndarray] = {}

    def open_corpus(self, spec: Any, out_dir: Path, *, progress: bool = False) -> Corpus:
        self.out_dir = Path(out_dir)
        corpus = build_pair_corpus(spec.data, spec.seed)
        a = self.arch
        self.cache = CodesCache(cache_root(self.spec.cache_dir, self.out_dir),
                                codec=self.spec.codec, weights=self.spec.codec_weights,
                                num_codebooks=max(a.dep_q, a.user_codebooks))
        out, items, self.skipped = fitting_pairs(corpus, self.cache, self.fits,
                                                 codebook_size=a.card, progress=progress)
        self.pairs, self.items = len(items), items
        if not items:
            raise DataError(f"no training pair fits model.max_frames {self.spec.max_frames} "
                            f"(layout {self.spec.layout})")
        return out

    def codes(self, audio: str, num_codebooks: int) -> np.ndarray:
        """The first ``num_codebooks`` cached codebooks of ``audio`` ``(K, F)``, range-checked."""
        full = self.cache.read(audio)
        if num_codebooks == 0:
            return full[:0]
        return pat.check_codes(full[None, :num_codebooks], num_codebooks=num_codebooks,
                               codebook_size=self.arch.card,
                               where=f"codes cache {self.cache.file(audio)} ({audio})")[0]

    def frames(self, item: PairItem) -> tuple[int, int, int]:
        """``(user frames, model frames, row frames)`` of a pair under the recipe's layout."""
        ti = self.cache.read(item.path).shape[1]
        to = self.cache.read(item.target).shape[1]
        return ti, to, (ti + to if self.spec.layout == "turns" else max(ti, to))

    def fits(self, item: PairItem) -> bool:
        return self.frames(item)[2] <= self.spec.max_frames

    def row(self, item: PairItem) -> np.ndarray:
        """The pair as channels ``(1 + n_q, row frames)`` int64 (module docstring)."""
        key = f"{item.path}\0{item.target}\0{item.where}"
        if key not in self._rows:
            a = self.arch
            user, own = self.codes(item.path, a.user_codebooks), self.codes(item.target, a.dep_q)
            ti, to, n = self.frames(item)
            off = ti if self.spec.layout == "turns" else 0
            out = np.full((a.num_codebooks, n), ZERO, dtype=np.int64)
            out[1: a.dep_q + 1, off: off + to] = own
            out[a.dep_q + 1:, :ti] = user
            if item.words:
                tokens = self.tokenizer.words([w[0] for w in item.words])
                starts = [off + f for f in word_start_frames(item.words, self.frame_rate)]
            else:
                tokens = self.tokenizer.words(item.text.split())
                starts = [off + f for f in spread_starts([len(t) for t in tokens], to)]
            out[0] = align_text(tokens, starts, n, pad_id=a.existing_text_padding_id,
                                epad_id=a.existing_text_end_padding_id)
            self._rows[key] = out
        return self._rows[key]

    def prepare(self, batch: Batch, rngs: list[np.random.Generator], *, train: bool) -> dict[str, np.ndarray]:
        if self.cache is None:
            raise RuntimeError("s2s_lm task used before open_corpus()")
        codes = np.full((len(batch.items), self.arch.num_codebooks, self.spec.max_frames), ZERO,
                        dtype=np.int64)
        for i, it in enumerate(batch.items):
            r = self.row(it)
            codes[i, :, : r.shape[1]] = r
        return teacher_inputs(codes, self.arch, weights=self.weights,
                              text_padding_weight=self.spec.text_padding_weight)

    def check_init(self, spec: MoshiLMSpec) -> None:
        """``model.init``'s spec must be the recipe's model; SpecError naming a field otherwise."""
        if spec != self.arch:
            mine, theirs = self.arch.to_dict(), spec.to_dict()
            diff = next(k for k in mine if mine[k] != theirs.get(k))
            raise SpecError(f"model.init {self.spec.init}: its spec differs from the recipe's "
                            f"({diff}: {theirs.get(diff)!r} there, {mine[diff]!r} here)")

    def summary(self) -> dict[str, Any]:
        return {"pairs": self.pairs, "skipped": self.skipped,
                "codes_cache": None if self.cache is None else str(self.cache.dir),
                "tokenizer": str(self.tokenizer.path)}

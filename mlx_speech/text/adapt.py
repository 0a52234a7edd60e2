"""Teacher-matched English phones for voices trained on a festival corpus.

A voice trained with ``alignment: corpus`` learns festival's phones: its lexicon's forms ("to" =
``t ax``, "and" = ``ae n d``, often "-ted" = ``t ax d``) and its phrase breaks (a pause before
"and", "when", "from" after a run of words, where the text has no comma). At synthesis our front
end gives CMUdict's forms and pauses only at punctuation, so the model reads phone strings it
never trained on; on the en_slt dev sentences that mismatch alone took the neural vocoder's
pocketsphinx WER from 0.162 (festival's phone strings) to 0.181 (ours).

:class:`FrontendAdaptation` holds what the teacher does differently, learned from the voice's own
training corpus (word and phone timings) and nothing else:

- ``lexicon``: words whose majority corpus pronunciation differs from ours;
- ``suffixes``: word endings (ours -> teacher's) that hold for most corpus words ending so, for
  words the corpus never had;
- ``breaks``: a logistic model of a pause at a word boundary without punctuation, over the two
  words, the words since the last pause and the words left before the next punctuation.

The training recipe writes it beside the voice as ``frontend.json``; :class:`~mlx_speech.text.
TextFrontend` applies it when the voice has one. Framework-neutral (numpy only).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mlx_speech.text.errors import TextError
from mlx_speech.text.symbols import corpus_phones

FORMAT = "mlx-speech frontend adaptation v1"
ADAPTATION_FILE = "frontend.json"  # its name in a voice folder
TOKENS = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*|[,;:()\"—-]")  # the English front end's tokens
_MAX_RUN = 8          # "words since the last pause" / "words left" are capped here
_TOP_WORDS = 80       # word identities the break model knows (the rest share one feature)
_SUFFIX_LEN = (3, 2)  # ending lengths tried, longest first


def _bucket(n: int) -> int:
    return min(n, _MAX_RUN)


def boundary_features(words: list[str], i: int, since: int, left: int, known: set[str]) -> list[str]:
    """Features of a possible pause between ``words[i]`` and ``words[i + 1]`` (lower case).

    ``since``: words since the last pause (punctuation or predicted), ``words[i]`` included;
    ``left``: words from ``words[i + 1]`` to the next punctuation or the sentence end."""
    cur, nxt = words[i], words[i + 1]
    return ["bias", f"cur:{cur if cur in known else '<w>'}", f"next:{nxt if nxt in known else '<w>'}",
            f"since:{_bucket(since)}", f"left:{_bucket(left)}"]


def runs(tokens: list[str]) -> list[list[int]]:
    """Indices of the word tokens of ``tokens``, split at punctuation (where we always pause)."""
    out: list[list[int]] = [[]]
    for k, tok in enumerate(tokens):
        if tok[0].isalpha():
            out[-1].append(k)
        elif out[-1]:
            out.append([])
    return [r for r in out if r]


@dataclasses.dataclass
class FrontendAdaptation:
    """See the module docstring. ``weights``: break-model weight per feature name."""

    lexicon: dict[str, tuple[str, ...]]
    suffixes: list[tuple[tuple[str, ...], tuple[str, ...]]]
    weights: dict[str, float]
    known: set[str]
    threshold: float = 0.5

    # --- use ----------------------------------------------------------------------------------
    def pronounce(self, word: str, ours: tuple[str, ...]) -> tuple[str, ...]:
        """The teacher's form of ``word`` given our pronunciation ``ours``."""
        key = word.lower()
        if key in self.lexicon:
            return self.lexicon[key]
        for src, dst in self.suffixes:
            if len(ours) > len(src) and ours[-len(src):] == src:
                return ours[:-len(src)] + dst
        return ours

    def probability(self, feats: list[str]) -> float:
        z = sum(self.weights.get(f, 0.0) for f in feats)
        return 1.0 / (1.0 + math.exp(-z))

    def breaks(self, tokens: list[str]) -> set[int]:
        """Token indices (words) after which the teacher would pause though no punctuation follows."""
        out: set[int] = set()
        for run in runs(tokens):
            words = [tokens[k].lower() for k in run]
            since = 1
            for i in range(len(words) - 1):
                if self.probability(boundary_features(words, i, since, len(words) - 1 - i, self.known)) \
                        > self.threshold:
                    out.add(run[i])
                    since = 1
                else:
                    since += 1
        return out

    # --- files --------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "threshold": self.threshold,
                "lexicon": {w: " ".join(p) for w, p in sorted(self.lexicon.items())},
                "suffixes": [[" ".join(a), " ".join(b)] for a, b in self.suffixes],
                "known_words": sorted(self.known),
                "break_weights": {k: round(v, 5) for k, v in sorted(self.weights.items())}}

    @classmethod
    def from_json(cls, data: Any) -> FrontendAdaptation:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise TextError(f"not a front-end adaptation (expected format {FORMAT!r})")
        try:
            lex = {str(w): tuple(str(p).split()) for w, p in data["lexicon"].items()}
            suf = [(tuple(str(a).split()), tuple(str(b).split())) for a, b in data["suffixes"]]
            weights = {str(k): float(v) for k, v in data["break_weights"].items()}
            known = {str(w) for w in data["known_words"]}
            threshold = float(data.get("threshold", 0.5))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise TextError(f"front-end adaptation is malformed: {exc!r}") from None
        if not all(math.isfinite(v) for v in weights.values()) or not 0.0 < threshold < 1.0:
            raise TextError("front-end adaptation has non-finite weights or a threshold outside (0, 1)")
        return cls(lex, suf, weights, known, threshold)

    @classmethod
    def load(cls, path: str | os.PathLike) -> FrontendAdaptation:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TextError(f"{path}: cannot read the front-end adaptation: {exc}") from None
        try:
            return cls.from_json(data)
        except TextError as exc:
            raise TextError(f"{path}: {exc}") from None

    def save(self, path: str | os.PathLike) -> None:
        from mlx_speech.utils.atomic import atomic_write_text  # noqa: PLC0415

        atomic_write_text(Path(path), json.dumps(self.to_json(), indent=1) + "\n")


# --- fitting ------------------------------------------------------------------------------------
def corpus_words(item: Any) -> list[tuple[str, tuple[str, ...], bool]] | None:
    """``(word, teacher phones, pause after it)`` per word of a corpus item with timings; None
    when the item has none."""
    words, phones = getattr(item, "words", None), getattr(item, "phones", None)
    if not words or not phones:
        return None
    out = []
    for k, (w, a, b) in enumerate(words):
        ph = corpus_phones([p for p, s, e in phones if s >= a - 1e-4 and e <= b + 1e-4])
        ph = [p for p in ph if p not in ("<sp>", "<sil>")]
        pause = k + 1 < len(words) and words[k + 1][1] - b > 1e-3
        out.append((str(w), tuple(ph), pause))
    return out


def aligned_pauses(item: Any, cw: list[tuple[str, tuple[str, ...], bool]]) -> tuple[list[str], list[int], set[int]] | None:
    """The item's front-end tokens, the token index of each word, and the token indices the
    teacher paused after; None when its words do not line up with the text's word tokens."""
    from mlx_speech.text.normalize import normalize_en  # noqa: PLC0415

    tokens = TOKENS.findall(normalize_en(item.text))
    word_idx = [k for k, t in enumerate(tokens) if t[0].isalpha()]
    if len(word_idx) != len(cw):
        return None
    return tokens, word_idx, {word_idx[k] for k, (_, _, p) in enumerate(cw) if p}


def _fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 30) -> np.ndarray:
    """L2-regularised logistic regression by Newton's method (a few hundred features)."""
    w = np.zeros(X.shape[1])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(X @ w)))
        g = X.T @ (p - y) + l2 * w
        H = (X * (p * (1 - p))[:, None]).T @ X + l2 * np.eye(X.shape[1])
        step = np.linalg.solve(H, g)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return w


def fit(items: Iterable[Any], ours: Any = None, *, min_suffix_support: int = 5,
        min_suffix_precision: float = 0.8) -> FrontendAdaptation:
    """Learn the adaptation from corpus items (``text``, ``words``, ``phones`` timings).

    ``ours``: ``word -> our phones`` (default: :func:`mlx_speech.text.g2p.english_word`)."""
    from mlx_speech.text.g2p import english_word  # noqa: PLC0415

    ours = english_word if ours is None else ours
    prons: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    sentences = []  # (tokens, pause-after per word token)
    for item in items:
        cw = corpus_words(item)
        if cw is None:
            continue
        for w, ph, _ in cw:
            if ph:
                prons[w.lower()][ph] += 1
        al = aligned_pauses(item, cw)
        if al is not None:  # break labels only where words line up with the text
            sentences.append((al[0], al[2]))
    if not prons:
        raise TextError("no corpus item has word and phone timings: nothing to adapt to")
    mine = {w: tuple(ours(w)) for w in prons}
    # the teacher's majority form; a tie that includes ours keeps ours, other ties break by the phones
    major = {w: max(c.items(), key=lambda kv: (kv[1], kv[0] == mine[w], kv[0]))[0] for w, c in prons.items()}
    lexicon = {w: p for w, p in major.items() if p != mine[w]}
    suffixes = _fit_suffixes(major, mine, min_suffix_support, min_suffix_precision)
    return FrontendAdaptation(lexicon, suffixes, *_fit_breaks(sentences))


def _fit_suffixes(major: dict[str, tuple[str, ...]], mine: dict[str, tuple[str, ...]],
                  support: int, precision: float) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Endings ``ours -> teacher's`` that most corpus words ending in ``ours`` follow."""
    rules = []
    for n in _SUFFIX_LEN:
        changed: dict[tuple, collections.Counter] = collections.defaultdict(collections.Counter)
        total: collections.Counter = collections.Counter()
        for w, theirs in major.items():
            me = mine[w]
            if len(me) <= n:
                continue
            total[me[-n:]] += 1
            if len(theirs) == len(me) and theirs[:-n] == me[:-n] and theirs[-n:] != me[-n:]:
                changed[me[-n:]][theirs[-n:]] += 1
        for src, c in changed.items():
            dst, k = c.most_common(1)[0]
            if k >= support and k / total[src] >= precision and not any(src[-len(s):] == s for s, _ in rules):
                rules.append((src, dst))
    return rules


def _fit_breaks(sentences: list[tuple[list[str], set[int]]]) -> tuple[dict[str, float], set[str]]:
    counts: collections.Counter = collections.Counter(t.lower() for toks, _ in sentences for t in toks
                                                      if t[0].isalpha())
    known = {w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:_TOP_WORDS]}
    rows, ys = [], []
    for tokens, pauses in sentences:
        for run in runs(tokens):
            words = [tokens[k].lower() for k in run]
            since = 1
            for i in range(len(words) - 1):  # teacher forcing: "since" follows the teacher's pauses
                rows.append(boundary_features(words, i, since, len(words) - 1 - i, known))
                y = run[i] in pauses
                ys.append(float(y))
                since = 1 if y else since + 1
    if not rows or not 0 < sum(ys) < len(ys):
        return {"bias": -20.0}, known  # no pause ever (or always): never insert one
    names = sorted({f for r in rows for f in r})
    col = {f: j for j, f in enumerate(names)}
    X = np.zeros((len(rows), len(names)))
    for i, r in enumerate(rows):
        X[i, [col[f] for f in r]] = 1.0
    w = _fit_logistic(X, np.array(ys))
    return {f: float(w[col[f]]) for f in names}, known


def break_agreement(adaptation: FrontendAdaptation, items: Iterable[Any]) -> dict[str, float]:
    """Precision / recall of the predicted pauses against the teacher's on corpus items."""
    tp = fp = fn = 0
    for item in items:
        cw = corpus_words(item)
        al = None if cw is None else aligned_pauses(item, cw)
        if al is None:
            continue
        tokens, word_idx, pauses = al
        punct = {word_idx[k] for k in range(len(word_idx) - 1) if word_idx[k + 1] != word_idx[k] + 1}
        truth = pauses - punct
        pred = adaptation.breaks(tokens)
        tp, fp, fn = tp + len(pred & truth), fp + len(pred - truth), fn + len(truth - pred)
    return {"precision": round(tp / max(tp + fp, 1), 4), "recall": round(tp / max(tp + fn, 1), 4),
            "teacher_pauses": tp + fn, "predicted": tp + fp}


def write_for_voice(manifests: list[str | os.PathLike], voice_dir: str | os.PathLike,
                    dev: str | os.PathLike | None = None) -> dict[str, Any]:
    """Fit on the voice's training corpus manifests and write ``voice_dir/frontend.json`` (for a
    voice trained before the recipe wrote it); with ``dev`` (a corpus the fit did not see) also
    the pause agreement there."""
    from mlx_speech.data.manifest import read_manifest  # noqa: PLC0415

    voice = Path(voice_dir)
    if not (voice / "voice.json").is_file():
        raise TextError(f"{voice} is not a voice folder (no voice.json)")
    items = [it for m in manifests for it in read_manifest(m)]
    ad = fit(items)
    ad.save(voice / ADAPTATION_FILE)
    out = {"voice": str(voice), "file": str(voice / ADAPTATION_FILE), "items": len(items),
           "lexicon_words": len(ad.lexicon), "suffix_rules": len(ad.suffixes),
           "pauses_train": break_agreement(ad, items)}
    if dev is not None:
        out["pauses_dev"] = break_agreement(ad, read_manifest(dev))
    return out

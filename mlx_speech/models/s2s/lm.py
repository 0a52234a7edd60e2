"""Moshi-style speech-text LM in MLX (issue 23, model B): a temporal transformer over frames
and a depth transformer over the codebooks of a frame; loads moshi's LM checkpoints.

One frame (moshi ``LMModel``, sizes of :class:`~mlx_speech.models.s2s.lm_spec.MoshiLMSpec`)::

    tokens (B, 1 + n_q) -> text_emb + sum_k emb.k -> transformer (causal, window ``context``)
      -> out_norm -> hidden (B, dim) -> text_linear -> text logits -> text token
    depformer step k = 0 .. dep_q - 1:
      depformer_in.(k) (hidden) + (depformer_text_emb(text) | depformer_emb.(k-1)(audio k-1))
      -> depformer (step k) -> [depformer_norms.k] -> linears.k -> logits of own codebook k

Child names are moshi's (``text_emb``, ``emb``, ``transformer``, ``out_norm``,
``text_linear``, ``depformer_in``, ``depformer_emb``, ``depformer_text_emb``,
``depformer_norms``, ``depformer``, ``linears``, ``extra_heads``); the temporal transformer is
the shared :class:`~mlx_speech.layers.transformer.Transformer` (moshi's fused ``in_proj`` and
``gating.linear_in`` are split by ``moshi_keys.py``). torch_ref mirrors every name.

Two ways to run it:

- teacher forcing, :meth:`MoshiLM.__call__` ``(codes (B, 1 + n_q, T))``: moshi's
  ``LMModel.forward``, logits aligned with the codes (``text (B, 1, T, text_card)``,
  ``audio (B, dep_q, T, card)``), NaN where a delayed channel has no prediction yet (its last
  ``delays[k]`` frames), as moshi returns them;
- generation, :meth:`MoshiLM.step` (one user frame in, the model's text token and own audio
  codes out, with moshi ``LMGen``'s delay handling, :mod:`.lm_stream`) and
  :meth:`MoshiLM.generate` (a whole user stream); tokens come back as numpy int32. A
  conversation's state (token ring, KV caches) is one ``_conv``
  (:class:`~.lm_stream.Conversation`); ``reset_state()`` starts a new conversation.

Token choice: ``sampler(logits (B, V) float32, stream) -> (B,) int32`` with ``stream``
``"text"`` or ``"audio"``; the default, :func:`greedy`, is moshi's ``use_sampling=False``.
Temperature / top-k / top-p samplers plug in there (``mlx_speech/models/s2s/sampling.py``).

A generation step is one small graph per transformer layer, so dispatch rather than arithmetic
bounds it at small sizes: a windowed temporal stack steps through the shared transformer's
compiled ring-cache path, and with the default greedy choice a frame's whole depformer pass is
one ``mx.compile`` d graph (traced again for each conversation, so a model changed in between,
e.g. quantized, is traced as it now is). A custom sampler runs the frame uncompiled, since it
may draw random numbers.
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mlx_speech.errors import CodesError
from mlx_speech.layers.kv_cache import KVCache, RingKVCache
from mlx_speech.layers.linear import Linear
from mlx_speech.layers.norms import make_norm
from mlx_speech.layers.transformer import Transformer
from mlx_speech.models.s2s.depformer import Depformer, TokenEmbedding, sin_embedding
from mlx_speech.models.s2s.lm_spec import NORMS, MoshiLMSpec
from mlx_speech.models.s2s.lm_stream import Conversation, TokenRing, check_codes, delay_codes
from mlx_speech.utils.streaming import Streaming

Sampler = Callable[[mx.array, str], mx.array]


def greedy(logits: mx.array, stream: str) -> mx.array:
    """The most likely token of each row, ``(B, V) -> (B,)`` int32 (moshi without sampling)."""
    return mx.argmax(logits, axis=-1).astype(mx.int32)


class MoshiLM(Streaming, nn.Module):
    """The temporal + depth transformer LM of a :class:`MoshiLMSpec` (module docstring)."""

    def __init__(self, spec: MoshiLMSpec) -> None:
        super().__init__()
        spec.validate()
        self.spec = s = spec
        kind, eps = NORMS[s.norm]
        self.text_emb = TokenEmbedding(s.text_card + 1, s.dim, norm=s.norm_emb)
        self.emb = [TokenEmbedding(s.card + 1, s.dim, norm=s.norm_emb) for _ in range(s.n_q)]
        gated = s.gating != "none"
        self.transformer = Transformer(
            num_layers=s.num_layers, dim=s.dim, num_heads=s.num_heads,
            num_kv_heads=s.num_heads // s.kv_repeat, ffn_dim=s.main_ffn_hidden, causal=True,
            context=s.context, rope=s.positional_embedding in ("rope", "sin_rope", "rope_concat"),
            rope_interleaved=s.positional_embedding != "rope_concat", max_period=s.max_period,
            norm=kind, norm_eps=eps, ffn_type="gated" if gated else "mlp",
            activation=s.gating if gated else "gelu", layer_scale=s.layer_scale)
        self.out_norm = make_norm(kind, dim=s.dim, eps=eps)
        self.text_linear = Linear(s.dim, s.text_vocab_out, bias=s.bias_proj)
        self.depformer_in = [Linear(s.dim, s.depformer_dim, bias=False)
                             for _ in range(s.depformer_num_in)]
        self.depformer_emb = [TokenEmbedding(s.card + 1, s.depformer_dim, norm=s.norm_emb)
                              for _ in range(s.dep_q - 1)]
        self.depformer_text_emb = TokenEmbedding(s.text_card + 1, s.depformer_dim,
                                                 norm=s.norm_emb)
        if s.depformer_norm is not None:
            dkind, deps = NORMS[s.depformer_norm]
            self.depformer_norms = [make_norm(dkind, dim=s.depformer_dim, eps=deps)
                                    for _ in range(s.dep_q)]
        self.depformer = Depformer(s)
        self.linears = [Linear(s.depformer_dim, s.card, bias=s.bias_proj) for _ in range(s.dep_q)]
        if s.extra_heads_num_heads:
            self.extra_heads = [Linear(s.dim, s.extra_heads_dim, bias=False)
                                for _ in range(s.extra_heads_num_heads)]
        self.reset_state()

    def _reset_own_state(self) -> None:
        # the compiled frame lives here too: traced again for each conversation, so a model
        # changed in between (quantized) is traced as it now is
        self._conv: Conversation | None = None

    # -- the two transformers ----------------------------------------------------------------
    def forward_text(self, tokens: mx.array, cache: list[KVCache] | RingKVCache | None = None,
                     offset: int = 0) -> tuple[mx.array, mx.array]:
        """``tokens (B, 1 + n_q, S)`` (positions ``offset ..``) -> ``(hidden (B, S, dim)``
        after ``out_norm``, ``text logits (B, S, text_card))``; ``cache`` (the temporal
        transformer's ``make_cache()`` or ``make_ring_cache()``) continues a stream."""
        x = self.text_emb(tokens[:, 0])
        for k, emb in enumerate(self.emb):
            x = x + emb(tokens[:, k + 1])
        s = self.spec
        if s.positional_embedding in ("sin", "sin_rope"):
            x = x + s.positional_scale * sin_embedding(offset, x.shape[1], s.dim, s.max_period,
                                                       x.dtype)
        x = self.transformer(x) if cache is None else self.transformer.step(x, cache)
        h = self.out_norm(x)
        return h, self.text_linear(h)

    def depformer_logits(self, step: int, token: mx.array, hidden: mx.array,
                         cache: list[KVCache]) -> mx.array:
        """Logits ``(B, card)`` of own codebook ``step`` from the previous step's token
        ``(B,)`` (the text token at step 0) and the frame's ``hidden (B, dim)``."""
        s = self.spec
        emb = self.depformer_text_emb if step == 0 else self.depformer_emb[step - 1]
        x = self.depformer_in[s.depformer_in_index(step)](hidden) + emb(token)
        y = self.depformer(x[:, None], step, cache)[:, 0]
        if "depformer_norms" in self:
            y = self.depformer_norms[step](y)
        return self.linears[step](y)

    def forward_depformer(self, hidden: mx.array, tokens: mx.array) -> mx.array:
        """Teacher-forced depformer: ``hidden (B, S, dim)``, ``tokens (B, dep_q, S)`` (text,
        then own codebooks ``0 .. dep_q - 2`` of the same positions) -> ``(B, dep_q, S, card)``."""
        B, S, D = hidden.shape
        flat_h = hidden.reshape(B * S, D)
        flat_t = tokens.transpose(0, 2, 1).reshape(B * S, -1)
        cache = self.depformer.make_cache()
        logits = [self.depformer_logits(k, flat_t[:, k], flat_h, cache)
                  for k in range(self.spec.dep_q)]
        return mx.stack(logits, axis=1).reshape(B, S, self.spec.dep_q, -1).transpose(0, 2, 1, 3)

    # -- teacher forcing ---------------------------------------------------------------------
    def __call__(self, codes: mx.array | np.ndarray) -> tuple[mx.array, mx.array]:
        """moshi ``LMModel.forward``: ``codes (B, 1 + n_q, T)`` (text first; ``-1`` = no input)
        -> ``(text logits (B, 1, T, text_card), audio logits (B, dep_q, T, card))`` aligned
        with ``codes``; NaN where a channel's delay leaves no prediction (its last frames)."""
        s = self.spec
        arr = np.asarray(codes)
        if arr.ndim != 3:
            raise CodesError(f"MoshiLM: expected codes (B, {s.num_codebooks}, T), got shape "
                             f"{arr.shape}")
        arr = check_codes(arr, s, first=0, count=s.num_codebooks, who="MoshiLM")
        seq = mx.array(delay_codes(arr, s).astype(np.int32))
        hidden, text = self.forward_text(seq[:, :, :-1])
        audio = self.forward_depformer(hidden, seq[:, : s.dep_q, 1:])
        return (undelay(text[:, None], s.delays[:1]),
                undelay(audio, s.delays[1: s.dep_q + 1]))

    # -- generation --------------------------------------------------------------------------
    def step(self, user_codes: mx.array | np.ndarray, *,
             sampler: Sampler | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """One frame of a conversation (moshi ``LMGen.step``): the user's codes of this frame
        ``(B, n_q - dep_q)`` (or ``(B, n_q - dep_q, 1)``) in; ``(text (B,), audio (B, dep_q))``
        numpy int32 of frame ``t - max_delay`` out, or None during the first ``max_delay``
        steps. The batch size is fixed by the first step of a conversation."""
        sampler = greedy if sampler is None else sampler
        user = np.asarray(user_codes)
        conv = self._conv
        ring = conv.ring if conv else TokenRing(self.spec, user.shape[0] if user.ndim else 1)
        user = ring.check_user(user, "MoshiLM.step")
        if conv is None:  # a conversation starts: its batch size is now fixed
            # a windowed stack steps as one compiled graph over fixed-size rings
            conv = self._conv = Conversation(ring, self.transformer.make_ring_cache()
                                             if self.spec.context is not None
                                             else self.transformer.make_cache())
        inp = ring.feed(user)
        hidden, text_logits = self.forward_text(mx.array(inp.astype(np.int32))[:, :, None],
                                                cache=conv.kv, offset=ring.offset)
        if sampler is greedy:  # a pure function of its inputs: the frame compiles as a whole
            if conv.frame is None:
                conv.frame = mx.compile(self._greedy_tokens, inputs=self.state)
            text, audio = conv.frame(hidden[:, 0], text_logits[:, 0])
        else:
            text, audio = self._frame_tokens(hidden[:, 0], text_logits[:, 0], sampler)
        mx.eval(text, audio)
        return ring.push(np.array(text), np.array(audio))

    def _frame_tokens(self, hidden: mx.array, text_logits: mx.array,
                      sampler: Sampler) -> tuple[mx.array, mx.array]:
        """The text token and the ``dep_q`` own audio tokens of one frame (lazy)."""
        text = sampler(text_logits.astype(mx.float32), "text")
        cache = self.depformer.make_cache()
        token, audio = text, []
        for k in range(self.spec.dep_q):
            logits = self.depformer_logits(k, token, hidden, cache)
            token = sampler(logits.astype(mx.float32), "audio")
            audio.append(token)
        return text, mx.stack(audio, axis=1)

    def _greedy_tokens(self, hidden: mx.array, text_logits: mx.array) -> tuple[mx.array, mx.array]:
        return self._frame_tokens(hidden, text_logits, greedy)

    def generate(self, user_codes: mx.array | np.ndarray, *,
                 sampler: Sampler | None = None) -> tuple[np.ndarray, np.ndarray]:
        """A new conversation over the user's stream ``(B, n_q - dep_q, T)``: ``(text (B, F),
        audio (B, dep_q, F))`` int32 with ``F = T - max_delay`` (the frames :meth:`step`
        completes; feed ``max_delay`` more user frames to get the tail)."""
        user = np.asarray(user_codes)
        if user.ndim != 3:
            raise CodesError(f"MoshiLM.generate: expected user codes (B, "
                             f"{self.spec.user_codebooks}, T), got shape {user.shape}")
        self.reset_state()
        texts, audios = [], []
        for t in range(user.shape[2]):
            out = self.step(user[:, :, t], sampler=sampler)
            if out is not None:
                texts.append(out[0])
                audios.append(out[1])
        B, K = user.shape[0], self.spec.dep_q
        if not texts:
            return np.zeros((B, 0), np.int32), np.zeros((B, K, 0), np.int32)
        return np.stack(texts, axis=1), np.stack(audios, axis=2)


def undelay(logits: mx.array, delays: list[int]) -> mx.array:
    """moshi's ``_undelay_sequence``: channel ``k`` of ``(B, K, T, V)`` moved ``delays[k]``
    frames earlier, its last ``delays[k]`` frames NaN."""
    if not any(delays):
        return logits
    T = logits.shape[2]
    out = []
    for k, d in enumerate(delays):
        line = logits[:, k, d:]
        if d:
            pad = mx.full((line.shape[0], min(d, T), line.shape[-1]), float("nan"), line.dtype)
            line = mx.concatenate([line, pad], axis=1)
        out.append(line)
    return mx.stack(out, axis=1)

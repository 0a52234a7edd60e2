"""Encoder-decoder speech-to-speech model over codec codes (MLX). Shapes, patterns and the
choice of where conditions enter: :mod:`mlx_speech.models.s2s.spec`.

Child names (also torch_ref's state-dict keys): ``in_embed.k`` / ``out_embed.k`` (one table per
codebook), ``enc_in_proj`` / ``dec_in_proj`` (``embed: concat`` only), ``encoder``
(:class:`~mlx_speech.layers.conformer.Conformer`), ``speaker_embed`` / ``emotion_embed`` /
``language_embed`` (when counted), ``decoder``
(:class:`~mlx_speech.layers.transformer.TransformerDecoder`), ``heads.k``.

Entry points:

* ``model(codes_in, dec_in, ...)``: the teacher-forced pass, logits ``(B, K_out, S, V)`` for
  the decoder inputs ``dec_in (B, K_out, S)`` of
  :func:`~mlx_speech.models.s2s.encdec_pattern.teacher_forcing` (the training path);
* ``start(codes_in, ...)`` -> :class:`S2SState` and ``decode_step(tokens, state)``: one decoder
  step against the caches (self-attention grows by one position per step; the cross-attention
  keys of the encoder output are projected on the first step and reused). Stepping through
  ``dec_in`` gives the teacher-forced logits;
* ``generate(codes_in, max_frames, ...)``: autoregressive decoding with the pattern's forced
  positions and :func:`~mlx_speech.models.s2s.sampling.sample` (greedy at temperature 0), codes
  ``(B, K_out, F)``; ``on_frame`` receives each output frame as soon as all its codebooks are
  known (with ``delay``, ``K_out - 1`` steps after its first).

Inputs are checked at ``start`` / ``generate`` (host side, one :class:`~mlx_speech.errors.UserError`
line for bad codes or condition ids); the teacher-forced call checks shapes only, so it
compiles. Call ``eval()`` before decoding a model built with dropout (``mlx_speech.load``
does): in training mode dropout would perturb every step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mlx_speech.errors import SpecError
from mlx_speech.layers.conformer import Conformer
from mlx_speech.layers.linear import Linear
from mlx_speech.layers.transformer import DecoderCache, TransformerDecoder
from mlx_speech.models.s2s import encdec_pattern as pat
from mlx_speech.models.s2s.sampling import sample
from mlx_speech.models.s2s.spec import S2SSpec, check_sampling


@dataclasses.dataclass
class S2SState:
    """Decoding state of a batch: the encoder output and its mask, the summed condition
    embedding ``(B, 1, D)`` (None: none), the decoder caches and the steps taken."""

    memory: mx.array
    memory_mask: mx.array | None
    cond: mx.array | None
    cache: list[DecoderCache]
    step: int = 0


class S2SModel(nn.Module):
    """The encoder-decoder built from its :class:`S2SSpec` (see the module docstring)."""

    def __init__(self, spec: S2SSpec) -> None:
        super().__init__()
        spec.validate()
        self.spec = spec
        D, V = spec.dim, spec.codebook_size
        self.in_embed = [nn.Embedding(V, D) for _ in range(spec.in_codebooks)]
        if spec.embed == "concat":
            self.enc_in_proj = Linear(spec.in_codebooks * D, D)
        self.encoder = Conformer(
            num_layers=spec.encoder_layers, dim=D, num_heads=spec.num_heads,
            ffn_dim=spec.hidden_dim, kernel_size=spec.conv_kernel, causal=False,
            max_period=spec.max_period, dropout=spec.dropout)
        self.out_embed = [nn.Embedding(V + 1, D) for _ in range(spec.out_codebooks)]
        if spec.embed == "concat":
            self.dec_in_proj = Linear(spec.out_codebooks * D, D)
        for name, count in spec.conditions().items():
            if count:
                setattr(self, f"{name}_embed", nn.Embedding(count, D))
        self.decoder = TransformerDecoder(
            num_layers=spec.decoder_layers, dim=D, num_heads=spec.num_heads,
            ffn_dim=spec.hidden_dim, cross_rope=spec.cross_rope, causal=True, rope=True,
            max_period=spec.max_period, final_norm=True, dropout=spec.dropout)
        self.heads = [Linear(D, V) for _ in range(spec.out_codebooks)]

    # -- pieces -------------------------------------------------------------------------------
    def _embed(self, tables: list[nn.Embedding], proj: str, codes: mx.array) -> mx.array:
        parts = [table(codes[:, k]) for k, table in enumerate(tables)]
        if self.spec.embed == "concat":
            return self[proj](mx.concatenate(parts, axis=-1))
        out = parts[0]
        for p in parts[1:]:
            out = out + p
        return out

    def encode(self, codes_in: mx.array, in_mask: mx.array | None = None) -> mx.array:
        """Encoder output ``(B, T, D)`` of input codes ``(B, K_in, T)``; ``in_mask (B, T)`` bool,
        True = real frame."""
        if codes_in.ndim != 3 or codes_in.shape[1] != self.spec.in_codebooks:
            raise ValueError(f"s2s: expected input codes (B, {self.spec.in_codebooks}, T), got "
                             f"{codes_in.shape}")
        return self.encoder(self._embed(self.in_embed, "enc_in_proj", codes_in), mask=in_mask)

    def condition(self, **ids: mx.array | None) -> mx.array | None:
        """Summed condition embeddings ``(B, 1, D)`` of ``speaker`` / ``emotion`` /
        ``language`` ids ``(B,)`` (-1: absent, adds nothing); None when none is given."""
        out = None
        for name, count in self.spec.conditions().items():
            v = ids.get(name)
            if v is None:
                continue
            if not count:
                raise SpecError(f"{name}: this model has no {name} embedding")
            e = self[f"{name}_embed"](mx.maximum(v, 0)) * (v >= 0)[:, None].astype(mx.float32)
            out = e if out is None else out + e
        return None if out is None else out[:, None, :]

    def _decoder_input(self, tokens: mx.array, cond: mx.array | None) -> mx.array:
        if tokens.ndim != 3 or tokens.shape[1] != self.spec.out_codebooks:
            raise ValueError(f"s2s: expected decoder tokens (B, {self.spec.out_codebooks}, S), "
                             f"got {tokens.shape}")
        h = self._embed(self.out_embed, "dec_in_proj", tokens)
        return h if cond is None else h + cond.astype(h.dtype)

    def logits(self, h: mx.array) -> mx.array:
        """``(B, S, D)`` decoder output -> ``(B, K_out, S, V)`` logits."""
        return mx.stack([head(h) for head in self.heads], axis=1)

    # -- teacher forcing ----------------------------------------------------------------------
    def __call__(self, codes_in: mx.array, dec_in: mx.array, *, in_mask: mx.array | None = None,
                 speaker: mx.array | None = None, emotion: mx.array | None = None,
                 language: mx.array | None = None) -> mx.array:
        """Logits ``(B, K_out, S, V)`` of the decoder inputs ``dec_in (B, K_out, S)``."""
        memory = self.encode(codes_in, in_mask)
        cond = self.condition(speaker=speaker, emotion=emotion, language=language)
        h = self.decoder(self._decoder_input(dec_in, cond), memory, memory_mask=in_mask)
        return self.logits(h)

    # -- decoding -----------------------------------------------------------------------------
    def start(self, codes_in: Any, *, in_mask: Any = None, speaker: Any = None,
              emotion: Any = None, language: Any = None) -> S2SState:
        """Check the inputs, encode them and make the decoder caches (module docstring)."""
        s = self.spec
        codes = pat.check_codes(codes_in, num_codebooks=s.in_codebooks,
                                codebook_size=s.codebook_size, where="s2s input codes")
        B, _, T = codes.shape
        mask = None
        if in_mask is not None:
            mask_np = np.asarray(in_mask).astype(bool)
            if mask_np.shape != (B, T) or not mask_np.any(axis=1).all():
                raise SpecError(f"s2s: in_mask must be (B, T) = ({B}, {T}) with a real frame "
                                f"in every row")
            mask = mx.array(mask_np)
        ids = {name: pat.check_condition(v, count=count, name=name, batch=B)
               for (name, count), v in zip(s.conditions().items(), (speaker, emotion, language))}
        cond = self.condition(**{k: None if v is None else mx.array(v) for k, v in ids.items()})
        memory = self.encode(mx.array(codes), mask)
        return S2SState(memory=memory, memory_mask=mask, cond=cond, cache=self.decoder.make_cache())

    def decode_step(self, tokens: mx.array, state: S2SState) -> mx.array:
        """Logits ``(B, K_out, V)`` of the next step, given the previous step's codes ``tokens
        (B, K_out)`` (the special id at the first step); updates ``state``."""
        h = self._decoder_input(tokens.astype(mx.int32)[:, :, None], state.cond)
        first = state.step == 0
        h = self.decoder.step(h, state.cache, state.memory if first else None,
                              memory_mask=state.memory_mask)
        state.step += 1
        return self.logits(h)[:, :, 0]

    def generate(self, codes_in: Any, max_frames: int | None = None, *, in_mask: Any = None,
                 temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
                 speaker: Any = None, emotion: Any = None, language: Any = None,
                 on_frame: Callable[[int, mx.array], None] | None = None) -> mx.array:
        """Output codes ``(B, K_out, F)`` int32 for input codes ``(B, K_in, T)``; ``F =
        max_frames`` (None: ``T``, the input's duration at one frame rate). Sampling as
        :func:`~mlx_speech.models.s2s.sampling.sample` with keys split from ``seed`` (greedy at
        ``temperature == 0``). ``on_frame(t, codes (B, K_out))`` is called as frame ``t`` is
        complete."""
        s = self.spec
        check_sampling(temperature, top_k, top_p)
        state = self.start(codes_in, in_mask=in_mask, speaker=speaker, emotion=emotion,
                           language=language)
        B = state.memory.shape[0]
        F = state.memory.shape[1] if max_frames is None else max_frames
        if isinstance(F, bool) or not isinstance(F, int) or F < 1:
            raise SpecError(f"s2s: max_frames must be an int >= 1, got {max_frames!r}")
        K = s.out_codebooks
        key = mx.random.key(seed)
        tokens = mx.full((B, K), s.special, dtype=mx.int32)
        steps: list[mx.array] = []
        for step in range(s.steps(F)):
            logits = self.decode_step(tokens, state)
            key, sub = mx.random.split(key)
            tokens = sample(logits, temperature=temperature, top_k=top_k, top_p=top_p, key=sub)
            forced = pat.forced(step, F, K, s.pattern)
            if forced.any():
                tokens = mx.where(mx.array(forced)[None], s.special, tokens).astype(mx.int32)
            mx.eval(tokens)
            steps.append(tokens)
            t = step - s.delay
            if on_frame is not None and t >= 0:
                on_frame(t, mx.stack([steps[t + (k if s.delay else 0)][:, k] for k in range(K)], axis=1))
        z = np.stack([np.array(t) for t in steps], axis=2)
        return mx.array(pat.from_sequence(z, pattern=s.pattern))

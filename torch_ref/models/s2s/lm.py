"""Moshi-style speech-text LM (torch mirror of ``mlx_speech/models/s2s/lm.py``).

Same child names (moshi's), methods and maths; see the MLX module's docstring for the frame,
teacher forcing (``forward``, moshi's ``LMModel.forward``) and generation (``step`` /
``generate``, moshi's ``LMGen`` with the shared delay ring of
``mlx_speech/models/s2s/lm_stream.py``). ``sampler(logits (B, V) float32, stream) -> (B,)``
chooses tokens; the default is greedy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from mlx_speech.errors import CodesError
from mlx_speech.models.s2s.lm_spec import NORMS, MoshiLMSpec
from mlx_speech.models.s2s.lm_stream import Conversation, TokenRing, check_codes, delay_codes
from mlx_speech.utils.streaming import Streaming
from torch_ref.layers.kv_cache import KVCache
from torch_ref.layers.norms import make_norm
from torch_ref.layers.transformer import Transformer
from torch_ref.models.s2s.depformer import Depformer, TokenEmbedding, sin_embedding

Sampler = Callable[[torch.Tensor, str], torch.Tensor]


def greedy(logits: torch.Tensor, stream: str) -> torch.Tensor:
    """The most likely token of each row, ``(B, V) -> (B,)``."""
    return logits.argmax(dim=-1)


class MoshiLM(Streaming, nn.Module):
    """The temporal + depth transformer LM of a :class:`MoshiLMSpec`."""

    def __init__(self, spec: MoshiLMSpec) -> None:
        super().__init__()
        spec.validate()
        self.spec = s = spec
        kind, eps = NORMS[s.norm]
        self.text_emb = TokenEmbedding(s.text_card + 1, s.dim, norm=s.norm_emb)
        self.emb = nn.ModuleList([TokenEmbedding(s.card + 1, s.dim, norm=s.norm_emb)
                                  for _ in range(s.n_q)])
        gated = s.gating != "none"
        self.transformer = Transformer(
            num_layers=s.num_layers, dim=s.dim, num_heads=s.num_heads,
            num_kv_heads=s.num_heads // s.kv_repeat, ffn_dim=s.main_ffn_hidden, causal=True,
            context=s.context, rope=s.positional_embedding in ("rope", "sin_rope", "rope_concat"),
            rope_interleaved=s.positional_embedding != "rope_concat", max_period=s.max_period,
            norm=kind, norm_eps=eps, ffn_type="gated" if gated else "mlp",
            activation=s.gating if gated else "gelu", layer_scale=s.layer_scale)
        self.out_norm = make_norm(kind, dim=s.dim, eps=eps)
        self.text_linear = nn.Linear(s.dim, s.text_vocab_out, bias=s.bias_proj)
        self.depformer_in = nn.ModuleList([nn.Linear(s.dim, s.depformer_dim, bias=False)
                                           for _ in range(s.depformer_num_in)])
        self.depformer_emb = nn.ModuleList([
            TokenEmbedding(s.card + 1, s.depformer_dim, norm=s.norm_emb)
            for _ in range(s.dep_q - 1)])
        self.depformer_text_emb = TokenEmbedding(s.text_card + 1, s.depformer_dim,
                                                 norm=s.norm_emb)
        self.depformer_norms = None
        if s.depformer_norm is not None:
            dkind, deps = NORMS[s.depformer_norm]
            self.depformer_norms = nn.ModuleList([make_norm(dkind, dim=s.depformer_dim, eps=deps)
                                                  for _ in range(s.dep_q)])
        self.depformer = Depformer(s)
        self.linears = nn.ModuleList([nn.Linear(s.depformer_dim, s.card, bias=s.bias_proj)
                                      for _ in range(s.dep_q)])
        self.extra_heads = nn.ModuleList([nn.Linear(s.dim, s.extra_heads_dim, bias=False)
                                          for _ in range(s.extra_heads_num_heads)])
        self.reset_state()

    def _reset_own_state(self) -> None:
        self._conv: Conversation | None = None

    # -- the two transformers ----------------------------------------------------------------
    def forward_text(self, tokens: torch.Tensor, cache: list[KVCache] | None = None,
                     offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``tokens (B, 1 + n_q, S)`` -> ``(hidden (B, S, dim), text logits (B, S, text_card))``."""
        x = self.text_emb(tokens[:, 0])
        for k, emb in enumerate(self.emb):
            x = x + emb(tokens[:, k + 1])
        s = self.spec
        if s.positional_embedding in ("sin", "sin_rope"):
            x = x + s.positional_scale * sin_embedding(offset, x.shape[1], s.dim, s.max_period,
                                                       x.dtype)
        h = self.out_norm(self.transformer(x, cache=cache))
        return h, self.text_linear(h)

    def depformer_logits(self, step: int, token: torch.Tensor, hidden: torch.Tensor,
                         cache: list[KVCache]) -> torch.Tensor:
        """Logits ``(B, card)`` of own codebook ``step``."""
        s = self.spec
        emb = self.depformer_text_emb if step == 0 else self.depformer_emb[step - 1]
        x = self.depformer_in[s.depformer_in_index(step)](hidden) + emb(token)
        y = self.depformer(x[:, None], step, cache)[:, 0]
        if self.depformer_norms is not None:
            y = self.depformer_norms[step](y)
        return self.linears[step](y)

    def forward_depformer(self, hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced depformer: ``(B, S, dim)``, ``(B, dep_q, S)`` -> ``(B, dep_q, S, card)``."""
        B, S, D = hidden.shape
        flat_h = hidden.reshape(B * S, D)
        flat_t = tokens.transpose(1, 2).reshape(B * S, -1)
        cache = self.depformer.make_cache(differentiable=torch.is_grad_enabled())
        logits = [self.depformer_logits(k, flat_t[:, k], flat_h, cache)
                  for k in range(self.spec.dep_q)]
        return torch.stack(logits, dim=1).reshape(B, S, self.spec.dep_q, -1).transpose(1, 2)

    # -- teacher forcing ---------------------------------------------------------------------
    def forward(self, codes: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """moshi ``LMModel.forward``: ``codes (B, 1 + n_q, T)`` -> ``(text (B, 1, T, text_card),
        audio (B, dep_q, T, card))`` aligned with ``codes``, NaN past a channel's delay."""
        s = self.spec
        arr = codes.detach().cpu().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
        if arr.ndim != 3:
            raise CodesError(f"MoshiLM: expected codes (B, {s.num_codebooks}, T), got shape "
                             f"{arr.shape}")
        arr = check_codes(arr, s, first=0, count=s.num_codebooks, who="MoshiLM")
        seq = torch.from_numpy(delay_codes(arr, s))
        hidden, text = self.forward_text(seq[:, :, :-1])
        audio = self.forward_depformer(hidden, seq[:, : s.dep_q, 1:])
        return (undelay(text[:, None], s.delays[:1]),
                undelay(audio, s.delays[1: s.dep_q + 1]))

    # -- generation --------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, user_codes: torch.Tensor | np.ndarray, *,
             sampler: Sampler | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """One frame of a conversation (moshi ``LMGen.step``); see the MLX twin."""
        sampler = greedy if sampler is None else sampler
        user = (user_codes.detach().cpu().numpy() if isinstance(user_codes, torch.Tensor)
                else np.asarray(user_codes))
        conv = self._conv
        ring = conv.ring if conv else TokenRing(self.spec, user.shape[0] if user.ndim else 1)
        user = ring.check_user(user, "MoshiLM.step")
        if conv is None:  # a conversation starts: its batch size is now fixed
            conv = self._conv = Conversation(ring, self.transformer.make_cache())
        inp = ring.feed(user)
        hidden, text_logits = self.forward_text(torch.from_numpy(inp)[:, :, None],
                                                cache=conv.kv, offset=ring.offset)
        text, audio = self._frame_tokens(hidden[:, 0], text_logits[:, 0], sampler)
        return ring.push(text.numpy(), audio.numpy())

    def _frame_tokens(self, hidden: torch.Tensor, text_logits: torch.Tensor,
                      sampler: Sampler) -> tuple[torch.Tensor, torch.Tensor]:
        text = sampler(text_logits.float(), "text")
        cache = self.depformer.make_cache()
        token, audio = text, []
        for k in range(self.spec.dep_q):
            token = sampler(self.depformer_logits(k, token, hidden, cache).float(), "audio")
            audio.append(token)
        return text, torch.stack(audio, dim=1)

    @torch.no_grad()
    def generate(self, user_codes: torch.Tensor | np.ndarray, *,
                 sampler: Sampler | None = None) -> tuple[np.ndarray, np.ndarray]:
        """A new conversation over ``(B, n_q - dep_q, T)``: ``(text (B, F), audio (B, dep_q,
        F))`` int32, ``F = T - max_delay``."""
        user = (user_codes.detach().cpu().numpy() if isinstance(user_codes, torch.Tensor)
                else np.asarray(user_codes))
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


def undelay(logits: torch.Tensor, delays: list[int]) -> torch.Tensor:
    """moshi's ``_undelay_sequence`` on ``(B, K, T, V)``."""
    if not any(delays):
        return logits
    T = logits.shape[2]
    out = []
    for k, d in enumerate(delays):
        line = logits[:, k, d:]
        if d:
            pad = line.new_full((line.shape[0], min(d, T), line.shape[-1]), float("nan"))
            line = torch.cat([line, pad], dim=1)
        out.append(line)
    return torch.stack(out, dim=1)

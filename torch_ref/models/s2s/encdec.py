"""Encoder-decoder speech-to-speech model over codec codes (torch): the twin of
``mlx_speech.models.s2s.encdec`` (its docstring is the contract: child names, entry points,
where inputs are checked). ``generate`` draws with a ``torch.Generator`` seeded by ``seed``,
so its samples differ from MLX's at temperature > 0 (greedy decoding is the same)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from mlx_speech.errors import SpecError
from mlx_speech.models.s2s import encdec_pattern as pat
from mlx_speech.models.s2s.spec import S2SSpec, check_sampling
from torch_ref.layers.conformer import Conformer
from torch_ref.layers.transformer import DecoderCache, TransformerDecoder
from torch_ref.models.s2s.sampling import sample


@dataclasses.dataclass
class S2SState:
    """Decoding state of a batch (as ``mlx_speech.models.s2s.encdec.S2SState``)."""

    memory: torch.Tensor
    memory_mask: torch.Tensor | None
    cond: torch.Tensor | None
    cache: list[DecoderCache]
    step: int = 0


class S2SModel(nn.Module):
    """The encoder-decoder built from its :class:`S2SSpec`."""

    def __init__(self, spec: S2SSpec) -> None:
        super().__init__()
        spec.validate()
        self.spec = spec
        D, V = spec.dim, spec.codebook_size
        self.in_embed = nn.ModuleList([nn.Embedding(V, D) for _ in range(spec.in_codebooks)])
        self.enc_in_proj = (nn.Linear(spec.in_codebooks * D, D) if spec.embed == "concat"
                            else None)
        self.encoder = Conformer(
            num_layers=spec.encoder_layers, dim=D, num_heads=spec.num_heads,
            ffn_dim=spec.hidden_dim, kernel_size=spec.conv_kernel, causal=False,
            max_period=spec.max_period, dropout=spec.dropout)
        self.out_embed = nn.ModuleList([nn.Embedding(V + 1, D) for _ in range(spec.out_codebooks)])
        self.dec_in_proj = (nn.Linear(spec.out_codebooks * D, D) if spec.embed == "concat"
                            else None)
        for name, count in spec.conditions().items():
            setattr(self, f"{name}_embed", nn.Embedding(count, D) if count else None)
        self.decoder = TransformerDecoder(
            num_layers=spec.decoder_layers, dim=D, num_heads=spec.num_heads,
            ffn_dim=spec.hidden_dim, cross_rope=spec.cross_rope, causal=True, rope=True,
            max_period=spec.max_period, final_norm=True, dropout=spec.dropout)
        self.heads = nn.ModuleList([nn.Linear(D, V) for _ in range(spec.out_codebooks)])

    @property
    def device(self) -> torch.device:
        return self.heads[0].weight.device

    # -- pieces -------------------------------------------------------------------------------
    def _embed(self, tables: nn.ModuleList, proj: nn.Module | None,
               codes: torch.Tensor) -> torch.Tensor:
        parts = [table(codes[:, k].long()) for k, table in enumerate(tables)]
        if proj is not None:
            return proj(torch.cat(parts, dim=-1))
        out = parts[0]
        for p in parts[1:]:
            out = out + p
        return out

    def encode(self, codes_in: torch.Tensor, in_mask: torch.Tensor | None = None) -> torch.Tensor:
        if codes_in.dim() != 3 or codes_in.shape[1] != self.spec.in_codebooks:
            raise ValueError(f"s2s: expected input codes (B, {self.spec.in_codebooks}, T), got "
                             f"{tuple(codes_in.shape)}")
        return self.encoder(self._embed(self.in_embed, self.enc_in_proj, codes_in), mask=in_mask)

    def condition(self, **ids: torch.Tensor | None) -> torch.Tensor | None:
        out = None
        for name, count in self.spec.conditions().items():
            v = ids.get(name)
            if v is None:
                continue
            if not count:
                raise SpecError(f"{name}: this model has no {name} embedding")
            table = getattr(self, f"{name}_embed")
            e = table(v.long().clamp(min=0)) * (v >= 0)[:, None].float()
            out = e if out is None else out + e
        return None if out is None else out[:, None, :]

    def _decoder_input(self, tokens: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if tokens.dim() != 3 or tokens.shape[1] != self.spec.out_codebooks:
            raise ValueError(f"s2s: expected decoder tokens (B, {self.spec.out_codebooks}, S), "
                             f"got {tuple(tokens.shape)}")
        h = self._embed(self.out_embed, self.dec_in_proj, tokens)
        return h if cond is None else h + cond.to(h.dtype)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return torch.stack([head(h) for head in self.heads], dim=1)

    # -- teacher forcing ----------------------------------------------------------------------
    def forward(self, codes_in: torch.Tensor, dec_in: torch.Tensor, *,
                in_mask: torch.Tensor | None = None, speaker: torch.Tensor | None = None,
                emotion: torch.Tensor | None = None,
                language: torch.Tensor | None = None) -> torch.Tensor:
        memory = self.encode(codes_in, in_mask)
        cond = self.condition(speaker=speaker, emotion=emotion, language=language)
        h = self.decoder(self._decoder_input(dec_in, cond), memory, memory_mask=in_mask)
        return self.logits(h)

    # -- decoding -----------------------------------------------------------------------------
    @torch.no_grad()
    def start(self, codes_in: Any, *, in_mask: Any = None, speaker: Any = None,
              emotion: Any = None, language: Any = None) -> S2SState:
        s, dev = self.spec, self.device
        if isinstance(codes_in, torch.Tensor):
            codes_in = codes_in.cpu().numpy()
        codes = pat.check_codes(codes_in, num_codebooks=s.in_codebooks,
                                codebook_size=s.codebook_size, where="s2s input codes")
        B, _, T = codes.shape
        mask = None
        if in_mask is not None:
            mask_np = np.asarray(in_mask.cpu() if isinstance(in_mask, torch.Tensor) else in_mask)
            mask_np = mask_np.astype(bool)
            if mask_np.shape != (B, T) or not mask_np.any(axis=1).all():
                raise SpecError(f"s2s: in_mask must be (B, T) = ({B}, {T}) with a real frame "
                                f"in every row")
            mask = torch.from_numpy(mask_np).to(dev)
        ids = {}
        for (name, count), v in zip(s.conditions().items(), (speaker, emotion, language)):
            if isinstance(v, torch.Tensor):
                v = v.cpu().numpy()
            got = pat.check_condition(v, count=count, name=name, batch=B)
            ids[name] = None if got is None else torch.from_numpy(got).to(dev)
        memory = self.encode(torch.from_numpy(codes).to(dev), mask)
        return S2SState(memory=memory, memory_mask=mask, cond=self.condition(**ids),
                        cache=self.decoder.make_cache())

    @torch.no_grad()
    def decode_step(self, tokens: torch.Tensor, state: S2SState) -> torch.Tensor:
        h = self._decoder_input(tokens[:, :, None], state.cond)
        first = state.step == 0
        h = self.decoder.step(h, state.cache, state.memory if first else None,
                              memory_mask=state.memory_mask)
        state.step += 1
        return self.logits(h)[:, :, 0]

    @torch.no_grad()
    def generate(self, codes_in: Any, max_frames: int | None = None, *, in_mask: Any = None,
                 temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
                 speaker: Any = None, emotion: Any = None, language: Any = None,
                 on_frame: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
        s = self.spec
        check_sampling(temperature, top_k, top_p)
        state = self.start(codes_in, in_mask=in_mask, speaker=speaker, emotion=emotion,
                           language=language)
        B = state.memory.shape[0]
        F = state.memory.shape[1] if max_frames is None else max_frames
        if isinstance(F, bool) or not isinstance(F, int) or F < 1:
            raise SpecError(f"s2s: max_frames must be an int >= 1, got {max_frames!r}")
        K = s.out_codebooks
        gen = torch.Generator(device=self.device).manual_seed(int(seed))
        tokens = torch.full((B, K), s.special, dtype=torch.int32, device=self.device)
        steps: list[torch.Tensor] = []
        for step in range(s.steps(F)):
            logits = self.decode_step(tokens, state)
            tokens = sample(logits, temperature=temperature, top_k=top_k, top_p=top_p,
                            generator=gen)
            forced = pat.forced(step, F, K, s.pattern)
            if forced.any():
                tokens = torch.where(torch.from_numpy(forced).to(self.device)[None],
                                     torch.full_like(tokens, s.special), tokens)
            steps.append(tokens)
            t = step - s.delay
            if on_frame is not None and t >= 0:
                on_frame(t, torch.stack([steps[t + (k if s.delay else 0)][:, k] for k in range(K)],
                                        dim=1))
        z = torch.stack(steps, dim=2).cpu().numpy()
        return torch.from_numpy(pat.from_sequence(z, pattern=s.pattern))

"""Mimi neural audio codec (Kyutai, 2024) in MLX: batch and streaming encode / decode.

Pipeline (official sizes, ``MimiSpec`` preset ``mimi_202407``)::

    wav (B, T) 24 kHz -> SEANet encoder (B, T/960, 512) 25 Hz -> encoder_transformer
      -> downsample (causal conv k4 s2, replicate pad) (B, F, 512) 12.5 Hz
      -> quantizer (split RVQ: 1 semantic + up to 31 acoustic codebooks of 2048) codes (B, K, F)
    codes -> quantizer.decode (B, F, 512) -> upsample (depthwise transposed conv k4 s2)
      -> decoder_transformer -> SEANet decoder -> wav (B, F * 1920)

Child names (also torch_ref's state-dict keys): ``encoder``, ``encoder_transformer``,
``downsample``, ``quantizer``, ``upsample``, ``decoder_transformer``, ``decoder``.

Batch ``encode`` zero-pads the waveform to a whole number of 1920-sample frames (moshi's
``pad_for_conv1d``), so ``F = ceil(T / 1920)``; ``decode`` returns ``F * 1920`` samples.

Streaming: ``encode_step(wav_chunk)`` takes any number of samples and returns the codes of
the frames completed so far (a frame is complete after its 1920th sample, so chunks of 1920
give one frame each); ``final=True`` zero-pads the pending tail like the batch call.
``decode_step(codes)`` returns ``f * 1920`` samples for ``f`` frames. Concatenated outputs
equal the batch calls. The state (conv buffers, KV caches) lives in ``_``-prefixed attributes;
``reset_state()`` starts new streams. Encode and decode streams are independent.

Compiled frame steps (opt-in, :meth:`MimiModel.set_compiled_steps`): each direction's whole
step (convs, transformer, quantizer) runs as one ``mx.compile`` d graph over its fixed-shape
state, what moshi gets from CUDA graphs; meant for the GPU, where a per-op loop pays a kernel
launch per operation (issue 19).

Memory cache (CPU): building a model raises MLX's CPU buffer cache
(:func:`mlx_speech.utils.mlx_cache.ensure_cpu_cache`), so the 60 MB activations of a batch call
reuse freed buffers instead of faulting in fresh pages.
"""

from __future__ import annotations

import functools

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from mlx_speech.errors import AudioError, CodesError
from mlx_speech.layers.conv import Conv1d, ConvTranspose1d
from mlx_speech.layers.kv_cache import RingKVCache
from mlx_speech.layers.transformer import Transformer
from mlx_speech.models.mimi.seanet import SEANetDecoder, SEANetEncoder
from mlx_speech.models.mimi.vq import FrozenCodebooks
from mlx_speech.quantize.codes import check_wav
from mlx_speech.quantize.rvq import SplitResidualVQ
from mlx_speech.models.mimi.spec import MimiSpec
from mlx_speech.specs.quantize import ema_mimi
from mlx_speech.utils.mlx_cache import CPU_CACHE_BYTES, ensure_cpu_cache  # noqa: F401
from mlx_speech.models.codec_base import SpecCodec
from mlx_speech.utils.streaming import Streaming, streaming_modules


class MimiModel(SpecCodec, Streaming, nn.Module):
    """The Mimi codec, built from its :class:`MimiSpec` (``quantizer``: another quantizer on the
    same latents; :class:`Mimi9Model` passes its bridge)."""

    CODEC_NAME = "Mimi"
    # Whether set_compiled_steps can compile the frame steps: every op of quantize/dequantize
    # must be traceable (no host reads); a subclass whose quantizer checks codes on the host
    # sets False and streams eagerly with the option on.
    COMPILED_STEPS = True

    def __init__(self, spec: MimiSpec, *, quantizer: nn.Module | None = None) -> None:
        super().__init__()
        spec.validate()
        self.spec = spec
        dimension = spec.dimension
        seanet, transformer = spec.seanet_args(), spec.transformer_args()
        stride = spec.resample_stride
        self.encoder = SEANetEncoder(**seanet)
        self.encoder_transformer = Transformer(**transformer)
        self.downsample = Conv1d(in_channels=dimension, out_channels=dimension,
                                 kernel_size=2 * stride, stride=stride, bias=False,
                                 padding="causal", pad_mode="replicate")
        # ``quantizer``: another quantizer on the same latents (Mimi9Model passes its bridge)
        if quantizer is None:
            quantizer = SplitResidualVQ(
                dim=dimension, rvq_dim=spec.rvq_dim,
                first_sizes=[spec.codebook_size] * spec.num_semantic,
                rest_sizes=[spec.codebook_size] * spec.num_acoustic, proj_bias=False,
                ema=ema_mimi().replace(epsilon=spec.codebook_epsilon))
        self.quantizer = quantizer
        # moshi's "channel-wise" upsampling: one depthwise filter per latent channel
        self.upsample = ConvTranspose1d(in_channels=dimension, out_channels=dimension,
                                        kernel_size=2 * stride, stride=stride,
                                        groups=dimension, bias=False, padding="causal")
        self.decoder_transformer = Transformer(**transformer)
        self.decoder = SEANetDecoder(**seanet)
        self._codebooks = (FrozenCodebooks(self.quantizer)
                           if isinstance(self.quantizer, SplitResidualVQ) else None)
        ensure_cpu_cache()
        self._stride = stride  # transformer positions per frame (subclasses replace self.spec)
        self._compile_steps = False
        self._compiled = _CompiledSteps()
        self.reset_state()

    # -- sizes -------------------------------------------------------------------------------
    @property
    def codebook_size(self) -> int:
        return self.spec.codebook_size

    # -- checks ------------------------------------------------------------------------------
    def _wav(self, wav: mx.array, who: str) -> mx.array:
        return check_wav(wav, f"Mimi.{who}")

    def _codes(self, codes: mx.array, who: str) -> mx.array:
        if not isinstance(codes, mx.array) or codes.ndim != 3:
            shape = tuple(codes.shape) if hasattr(codes, "shape") else type(codes).__name__
            raise CodesError(f"Mimi.{who}: expected codes (B, K, F), got {shape}")
        if not 1 <= codes.shape[1] <= self.total_codebooks:
            raise CodesError(f"Mimi.{who}: got {codes.shape[1]} codebooks, this model has "
                             f"1..{self.total_codebooks}")
        if not mx.issubdtype(codes.dtype, mx.integer):
            raise CodesError(f"Mimi.{who}: codes must be integers, got {codes.dtype}")
        if codes.size:
            lo, hi = mx.min(codes).item(), mx.max(codes).item()
            if lo < 0 or hi >= self.codebook_size:
                bad = lo if lo < 0 else hi
                raise CodesError(f"Mimi.{who}: code {bad} out of range 0..{self.codebook_size - 1}")
        return codes.astype(mx.int32)

    # -- batch -------------------------------------------------------------------------------
    def encode_latents(self, wav: mx.array) -> mx.array:
        """Unquantized latents ``(B, F, dimension)`` of ``wav (B, T)``, ``F = ceil(T / 1920)``."""
        wav = self._wav(wav, "encode")
        pad = -wav.shape[1] % self.frame_size
        if wav.shape[1] == 0:
            raise AudioError("Mimi.encode: empty waveform")
        x = mx.pad(wav, [(0, 0), (0, pad)]) if pad else wav
        x = self.encoder(x[:, :, None])
        x = self.encoder_transformer(x)
        return self.downsample(x)

    def encode(self, wav: mx.array, *, num_codebooks: int | None = None) -> mx.array:
        """Codes ``(B, K, F)`` int32 of ``wav (B, T)`` float in [-1, 1] at ``sample_rate``.

        ``K = num_codebooks`` (default: the spec's), ``F = ceil(T / frame_size)``.
        """
        k = self._k(num_codebooks)
        return self.quantize(self.encode_latents(wav), k)

    def quantize(self, latents: mx.array, num_codebooks: int) -> mx.array:
        """Codes ``(B, K, F)`` of latents ``(B, F, dimension)`` (cached codebooks in eval mode)."""
        if self.training:
            return self.quantizer.encode(latents, num_levels=num_codebooks)
        return self._codebooks.encode(latents, num_codebooks)

    def dequantize(self, codes: mx.array) -> mx.array:
        """Quantized latents ``(B, F, dimension)`` of checked codes ``(B, K, F)``."""
        if self.training:
            return self.quantizer.decode(codes)
        return self._codebooks.decode(codes)

    def decode_latents(self, latents: mx.array) -> mx.array:
        """Waveform ``(B, F * frame_size)`` of quantized latents ``(B, F, dimension)``."""
        x = self.upsample(latents)
        x = self.decoder_transformer(x)
        return self.decoder(x)[:, :, 0]

    def decode(self, codes: mx.array) -> mx.array:
        """Waveform ``(B, F * frame_size)`` float32 of codes ``(B, K, F)``, any ``K``."""
        codes = self._codes(codes, "decode")
        if codes.shape[2] == 0:
            return mx.zeros((codes.shape[0], 0), dtype=mx.float32)
        return self.decode_latents(self.dequantize(codes))

    def __call__(self, wav: mx.array, *, num_codebooks: int | None = None) -> mx.array:
        """Round trip ``decode(encode(wav))`` trimmed to the input length."""
        return self.decode(self.encode(wav, num_codebooks=num_codebooks))[:, :wav.shape[1]]

    # -- streaming ---------------------------------------------------------------------------
    def _reset_own_state(self) -> None:
        """New encode and decode streams: fresh KV caches and sample count. ``reset_state()``
        (the :class:`Streaming` protocol) also clears every conv buffer in the tree."""
        self._enc_cache = self._stream_cache(self.encoder_transformer)
        self._dec_cache = self._stream_cache(self.decoder_transformer)
        self._samples_in = 0
        self._compiled.checked = False  # weights are compared at the stream's first compiled step

    def _stream_cache(self, transformer: Transformer):
        """On the CPU, and everywhere with compiled steps, a ring cache: the transformer step
        runs as one compiled graph over fixed-shape rings, faster per frame than the list cache
        (docs/performance.md, "Mimi streaming"). Otherwise (the GPU by default) the list cache:
        the compiled ring path is not yet measured on a GPU."""
        if self._compile_steps or mx.default_device().type == mx.DeviceType.cpu:
            return transformer.make_ring_cache()
        return transformer.make_cache()

    def set_compiled_steps(self, on: bool = True) -> None:
        """Run steady-state ``encode_step`` / ``decode_step`` calls as one compiled graph each.

        A call takes the compiled graph when it is a steady frame: ``encode_step`` of exactly
        ``frame_size`` samples on a frame boundary, not ``final``; ``decode_step`` of any
        codes; in both cases after the stream's first call (eager, it sets up every conv buffer
        and the ring caches, after which their shapes no longer change) and only when every
        streaming layer of that direction is a ``Conv1d`` / ``ConvTranspose1d`` (a subclass
        with other state stays eager). Everything else runs eagerly, so results are the same
        either way (tests/test_mimi_model.py, compiled streaming vs batch).

        The transformers' weights are read at every call; the other weights are captured when a
        graph is traced, keyed by the identity of their arrays, read at the first compiled call
        of each stream: weights loaded or updated take effect from the next ``reset_state()``
        on (a new trace; the graphs are otherwise kept across streams). Compiled steps use
        ring KV caches on every device. Switching starts new streams (``reset_state()``)."""
        self._compile_steps = bool(on)
        self._compiled = _CompiledSteps()
        self.reset_state()

    def _compiled_fn(self, name: str, k: int, graph):
        """The compiled graph ``name`` for ``k`` codebooks and the current weights.

        The transformer's arrays are captured inputs of the graph (``inputs=``, as its own ring
        step does), so they are read at every call. The other weights are constants of the
        trace, keyed by the identity of their arrays (every way of loading or updating weights
        replaces the arrays; the arrays themselves are held, so a freed one's id cannot come
        back as a false match)."""
        c = self._compiled
        if not c.checked:  # once per stream
            arrays = [a for n, a in tree_flatten(self.parameters())
                      if not n.startswith(("encoder_transformer.", "decoder_transformer."))]
            if len(arrays) != len(c.weights) or any(a is not b for a, b in zip(arrays, c.weights)):
                c.weights, c.fns = arrays, {}
            c.checked = True
        if (name, k) not in c.fns:
            tr = self.encoder_transformer if name == "encode" else self.decoder_transformer
            c.fns[name, k] = mx.compile(functools.partial(graph, k), inputs=tr.state)
        return c.fns[name, k]

    def _steady_states(self, mods: list) -> list[mx.array] | None:
        """The conv stream buffers of ``mods`` in order, or None when one is not set up yet
        or a layer is of another kind."""
        out = []
        for m in mods:
            if isinstance(m, Conv1d):
                a = m._buf
            elif isinstance(m, ConvTranspose1d):
                if m.kernel_size == m.stride:
                    continue  # no overlap, no state
                a = m._tail
            else:
                return None
            if a is None:
                return None
            out.append(a)
        return out

    @staticmethod
    def _set_states(mods: list, states: list[mx.array]) -> None:
        it = iter(states)
        for m in mods:
            if isinstance(m, Conv1d):
                m._buf = next(it)
            elif m.kernel_size != m.stride:
                m._tail = next(it)

    def _encode_graph(self, k: int, wav: mx.array, pos: mx.array, states: list[mx.array],
                      keys: list[mx.array], values: list[mx.array]):
        """One steady encode frame as a pure function of its state (traced by mx.compile)."""
        mods = self._enc_mods()
        self._set_states(mods, states)
        cache = self._enc_cache
        cache.keys, cache.values, cache.offset = keys, values, pos
        x = self.encoder.step(wav[:, :, None])
        x = self.encoder_transformer.step(x, cache)
        codes = self.quantize(self.downsample.step(x), k)
        return codes, self._steady_states(mods), cache.keys, cache.values

    def _decode_graph(self, k: int, codes: mx.array, pos: mx.array, states: list[mx.array],
                      keys: list[mx.array], values: list[mx.array]):
        """One steady decode step as a pure function of its state (traced by mx.compile)."""
        mods = self._dec_mods()
        self._set_states(mods, states)
        cache = self._dec_cache
        cache.keys, cache.values, cache.offset = keys, values, pos
        x = self.upsample.step(self.dequantize(codes))
        x = self.decoder_transformer.step(x, cache)
        y = self.decoder.step(x)[:, :, 0]
        return y, self._steady_states(mods), cache.keys, cache.values

    def _enc_mods(self) -> list:
        return streaming_modules(self.encoder) + streaming_modules(self.downsample)

    def _dec_mods(self) -> list:
        return streaming_modules(self.upsample) + streaming_modules(self.decoder)

    def _run_compiled(self, name: str, graph, k: int, x: mx.array, positions: int,
                      cache, mods: list):
        """The compiled step when the stream is steady (see :meth:`set_compiled_steps`), else
        None. ``positions``: transformer positions this call adds."""
        if (not self._compile_steps or not self.COMPILED_STEPS
                or not isinstance(cache, RingKVCache) or cache.offset == 0):
            return None
        states = self._steady_states(mods)
        if states is None:
            return None
        tr = self.encoder_transformer if name == "encode" else self.decoder_transformer
        att = tr.layers[0].self_attn
        # grow the rings eagerly if needed, so the traced prepare() finds them large enough
        cache.prepare(x.shape[0], att.num_kv_heads, att.head_dim, positions, cache.keys[0].dtype)
        fn = self._compiled_fn(name, k, graph)
        offset = cache.offset
        y, states, keys, values = fn(x, mx.array(offset, dtype=mx.int32), states,
                                     cache.keys, cache.values)
        self._set_states(mods, states)
        cache.keys, cache.values, cache.offset = keys, values, offset + positions
        return y

    def encode_step(self, wav: mx.array, *, num_codebooks: int | None = None,
                    final: bool = False) -> mx.array:
        """Feed the next ``wav (B, t)`` samples (any ``t >= 0``) of the encode stream.

        Returns the codes ``(B, K, f)`` of the frames completed by this chunk. ``final=True``
        zero-pads the pending partial frame (as the batch call does) and emits it.
        """
        wav = self._wav(wav, "encode_step")
        k = self._k(num_codebooks)
        if (self._compile_steps and not final and wav.shape[1] == self.frame_size
                and self._samples_in % self.frame_size == 0):
            codes = self._run_compiled("encode", self._encode_graph, k, wav,
                                       self._stride,
                                       self._enc_cache, self._enc_mods())
            if codes is not None:
                self._samples_in += wav.shape[1]
                return codes
        self._samples_in += wav.shape[1]
        if final:
            pad = -self._samples_in % self.frame_size
            if pad:
                wav = mx.pad(wav, [(0, 0), (0, pad)])
                self._samples_in += pad
        x = self.encoder.step(wav[:, :, None])
        if x.shape[1]:
            x = self.encoder_transformer.step(x, self._enc_cache)
        x = self.downsample.step(x)
        if x.shape[1] == 0:
            return mx.zeros((wav.shape[0], k, 0), dtype=mx.int32)
        return self.quantize(x, k)

    def decode_step(self, codes: mx.array, *, final: bool = False) -> mx.array:
        """Feed the next codes ``(B, K, f)`` of the decode stream; returns ``(B, f * frame_size)``.

        ``final`` (the last piece of a stream) changes nothing here: Mimi is causal, so every
        frame's audio is complete when it is returned. It is accepted so that callers drive
        every codec alike (a non-causal codec flushes its look-ahead on it)."""
        codes = self._codes(codes, "decode_step")
        if codes.shape[2] == 0:
            return mx.zeros((codes.shape[0], 0), dtype=mx.float32)
        if self._compile_steps:
            y = self._run_compiled("decode", self._decode_graph, codes.shape[1], codes,
                                   codes.shape[2] * self._stride,
                                   self._dec_cache, self._dec_mods())
            if y is not None:
                return y
        x = self.upsample.step(self.dequantize(codes))
        x = self.decoder_transformer.step(x, self._dec_cache)
        return self.decoder.step(x)[:, :, 0]


class _CompiledSteps:
    """The compiled step graphs of one :class:`MimiModel` and the weights they captured (a
    plain object, so none of it enters the module's array tree)."""

    def __init__(self) -> None:
        self.weights: list[mx.array] = []
        self.fns: dict = {}
        self.checked = False


def build_mimi(spec: MimiSpec) -> MimiModel:
    """A random-init MLX Mimi from its spec (load weights with ``mlx_speech.models.mimi.formats``)."""
    return MimiModel(spec)

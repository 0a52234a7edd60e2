"""9-codebook Mimi spec: Mimi's SEANet + transformers around the causal bridge quantizer.

``Mimi9Spec`` nests a :class:`MimiSpec` (``mimi``: everything but the quantizer) and a
:class:`BridgeSpec` (``bridge``: heads 0 content, 1 prosody, 2-8 acoustic). The Mimi fields
``rvq_dim``, ``codebook_size``, ``num_semantic``, ``total_codebooks`` and ``num_codebooks`` do
not shape a 9-codebook model (the bridge does); presets keep them at Mimi's values with
``total_codebooks = num_codebooks = 8`` so the spec still reads as "the Mimi it came from".

For checkpoint surgery from Mimi (``convert/mimi_surgery.py``) the bridge must also match
Mimi's quantizer: ``vq_dim == mimi.rvq_dim``, every head ``mimi.codebook_size`` codes, Mimi's
EMA options, and ``content_gate_init = 0`` (head 0 gated off). That is not required of a
9-codebook model trained from scratch, so ``validate`` checks only ``bridge.dim ==
mimi.dimension``.

Nested fields round-trip through ``to_dict`` / ``from_dict`` / ``from_yaml`` (YAML: a ``mimi:``
and a ``bridge:`` mapping).
"""

from __future__ import annotations

import dataclasses

from mlx_speech.specs.base import Spec, require
from mlx_speech.models.mimi.spec import MimiSpec, mimi_202407, mimi_tiny
from mlx_speech.specs.quantize import BridgeSpec, bridge_9_split, ema_mimi


def _mimi_202407_8() -> MimiSpec:
    return mimi_202407().replace(total_codebooks=8, num_codebooks=8)


def _bridge_for(mimi: MimiSpec, *, qwen_dim: int, wavlm_dim: int) -> BridgeSpec:
    return bridge_9_split().replace(
        dim=mimi.dimension, vq_dim=mimi.rvq_dim, content_size=mimi.codebook_size,
        prosody_size=mimi.codebook_size, acoustic_sizes=[mimi.codebook_size] * 7,
        qwen_dim=qwen_dim, wavlm_dim=wavlm_dim, content_gate_init=0.0,
        ema=ema_mimi().replace(epsilon=mimi.codebook_epsilon).to_dict())


@dataclasses.dataclass
class Mimi9Spec(Spec):
    """A 9-codebook Mimi: ``mimi`` (SEANet, transformers, resampling) + ``bridge`` (quantizer)."""

    mimi: MimiSpec = dataclasses.field(default_factory=_mimi_202407_8)
    bridge: BridgeSpec = dataclasses.field(
        default_factory=lambda: _bridge_for(_mimi_202407_8(), qwen_dim=1536, wavlm_dim=1024))

    def validate(self) -> None:
        w = type(self).__name__
        require(self.bridge.dim == self.mimi.dimension, w,
                f"bridge.dim ({self.bridge.dim}) must equal mimi.dimension ({self.mimi.dimension})")

    # -- derived sizes (the names MimiModel reads from its spec) -----------------------------
    @property
    def sample_rate(self) -> int:
        return self.mimi.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.mimi.frame_rate

    @property
    def frame_size(self) -> int:
        return self.mimi.frame_size

    @property
    def num_codebooks(self) -> int:
        return self.bridge.num_codebooks

    @property
    def codebook_sizes(self) -> list[int]:
        b = self.bridge
        return [b.content_size, b.prosody_size] + list(b.acoustic_sizes)

    def num_frames(self, num_samples: int) -> int:
        return self.mimi.num_frames(num_samples)

    @classmethod
    def for_mimi(cls, mimi: MimiSpec, *, arrangement: str = "split", qwen_dim: int = 1536,
                 wavlm_dim: int = 1024) -> Mimi9Spec:
        """The surgery target of a Mimi with spec ``mimi`` (see module docstring)."""
        base = mimi.replace(total_codebooks=8, num_codebooks=8)
        bridge = _bridge_for(base, qwen_dim=qwen_dim, wavlm_dim=wavlm_dim)
        return cls(mimi=base, bridge=bridge.replace(arrangement=arrangement))


@Mimi9Spec.preset("mimi9_202407")
def mimi9_202407() -> Mimi9Spec:
    """The released Mimi's architecture with the split bridge (Qwen 1536, WavLM 1024), g = 0."""
    spec = Mimi9Spec.for_mimi(mimi_202407(), qwen_dim=1536, wavlm_dim=1024)
    spec.validate()
    return spec


@Mimi9Spec.preset("mimi9_tiny")
def mimi9_tiny() -> Mimi9Spec:
    """A small random-init 9-codebook Mimi for tests (``mimi_tiny`` sizes, 64-code heads)."""
    spec = Mimi9Spec.for_mimi(mimi_tiny(), qwen_dim=24, wavlm_dim=20)
    spec.validate()
    return spec

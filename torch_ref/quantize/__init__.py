"""Quantizers (torch mirror of mlx_speech.quantize): same class names, arguments, attribute and
buffer names, so state-dict keys are identical.

Latents are ``(B, F, D)``; codes are ``(B, K, F)`` int32.
"""

from torch_ref.quantize.bridge import BridgeOutput, CausalBridgeQuantizer, expand_durations
from torch_ref.quantize.bsq import BinarySphericalQuantizer, BSQOutput
from torch_ref.quantize.codebook import EMACodebook
from torch_ref.quantize.rvq import ResidualVQ, RVQOutput, SplitResidualVQ
from torch_ref.quantize.vq import VectorQuantizer, VQOutput

__all__ = ["BSQOutput", "BinarySphericalQuantizer", "BridgeOutput", "CausalBridgeQuantizer",
           "EMACodebook", "RVQOutput", "ResidualVQ", "SplitResidualVQ", "VQOutput",
           "VectorQuantizer", "expand_durations"]

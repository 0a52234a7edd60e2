"""Quantizers (MLX): EMA vector quantization, residual / split residual VQ, binary spherical
quantization and the 9-codebook causal bridge quantizer. torch_ref.quantize mirrors every name.

Latents are ``(B, F, D)``; codes are ``(B, K, F)`` int32.
"""

from mlx_speech.quantize.bridge import BridgeOutput, CausalBridgeQuantizer, expand_durations
from mlx_speech.quantize.bsq import BinarySphericalQuantizer, BSQOutput
from mlx_speech.quantize.codebook import EMACodebook
from mlx_speech.quantize.rvq import ResidualVQ, RVQOutput, SplitResidualVQ
from mlx_speech.quantize.vq import VectorQuantizer, VQOutput

__all__ = ["BSQOutput", "BinarySphericalQuantizer", "BridgeOutput", "CausalBridgeQuantizer",
           "EMACodebook", "RVQOutput", "ResidualVQ", "SplitResidualVQ", "VQOutput",
           "VectorQuantizer", "expand_durations"]

"""Specs of the TTS models: FastSpeech2-style acoustic model and the HiFi-GAN generator.

Field names equal the constructor arguments of ``mlx_speech.models.tts.fastspeech.FastSpeech2`` /
``mlx_speech.models.hifigan.model.HiFiGANGenerator`` (and their torch_ref twins).
"""

from __future__ import annotations

import dataclasses
from mlx_speech.specs.base import Spec, require


@dataclasses.dataclass
class FastSpeechSpec(Spec):
    """FastSpeech2-style acoustic model: phones -> durations / pitch / energy -> mel frames."""

    n_symbols: int = 179            # mlx_speech.text.SymbolTable() (en + hi + te)
    n_speakers: int = 1
    n_languages: int = 3            # order of mlx_speech.text.LANGUAGES
    n_mels: int = 80
    dim: int = 192
    num_heads: int = 2
    encoder_layers: int = 4
    decoder_layers: int = 4
    ffn_dim: int = 768
    ffn_kernel: int = 9             # FastSpeech's convolutional feed-forward
    predictor_dim: int = 256
    predictor_kernel: int = 3
    aligner_dim: int = 80           # learned-alignment module width (0 disables it)
    pitch_mean: float = 5.3         # log-F0 statistics of the training voice (normalise targets)
    pitch_std: float = 0.2

    def validate(self) -> None:
        w = type(self).__name__
        require(self.n_symbols > 3 and self.n_speakers > 0 and self.n_languages > 0, w,
                "n_symbols > 3, n_speakers and n_languages > 0")
        require(self.dim % self.num_heads == 0 and (self.dim // self.num_heads) % 2 == 0, w,
                f"dim {self.dim} must split into an even head size over {self.num_heads} heads")
        require(self.encoder_layers > 0 and self.decoder_layers > 0, w, "need encoder and decoder layers")
        require(self.ffn_kernel % 2 == 1 and self.predictor_kernel % 2 == 1, w, "kernels must be odd")
        require(self.pitch_std > 0, w, "pitch_std must be positive")


@FastSpeechSpec.preset("tts_tiny")
def tts_tiny() -> FastSpeechSpec:
    """The bundled voice's size (mlx_speech/configs/tts_slt_tiny.yaml, there without the aligner): trains on 2 CPU cores."""
    return FastSpeechSpec(dim=128, num_heads=2, encoder_layers=3, decoder_layers=3, ffn_dim=256,
                          ffn_kernel=3, predictor_dim=128, aligner_dim=64)


@FastSpeechSpec.preset("fastspeech2")
def fastspeech2() -> FastSpeechSpec:
    """FastSpeech2 paper size (256 dim, 4+4 FFT blocks, kernel 9)."""
    return FastSpeechSpec(dim=256, num_heads=2, encoder_layers=4, decoder_layers=4, ffn_dim=1024,
                          ffn_kernel=9, predictor_dim=256, aligner_dim=80)

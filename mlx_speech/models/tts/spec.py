"""Specs of the TTS models: FastSpeech2-style acoustic model and the HiFi-GAN generator.

Field names equal the constructor arguments of ``mlx_speech.models.tts.fastspeech.FastSpeech2`` /
``mlx_speech.models.hifigan.model.HiFiGANGenerator`` (and their torch_ref twins).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

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
    """The bundled voice's size (configs/tts_slt_tiny.yaml, there without the aligner): trains on 2 CPU cores."""
    return FastSpeechSpec(dim=128, num_heads=2, encoder_layers=3, decoder_layers=3, ffn_dim=256,
                          ffn_kernel=3, predictor_dim=128, aligner_dim=64)


@FastSpeechSpec.preset("fastspeech2")
def fastspeech2() -> FastSpeechSpec:
    """FastSpeech2 paper size (256 dim, 4+4 FFT blocks, kernel 9)."""
    return FastSpeechSpec(dim=256, num_heads=2, encoder_layers=4, decoder_layers=4, ffn_dim=1024,
                          ffn_kernel=9, predictor_dim=256, aligner_dim=80)


@dataclasses.dataclass
class TTSRecipeSpec(Spec):
    """A voice recipe (``configs/tts_*.yaml``): corpus, acoustic model, optimisation.

    Data come from one of: ``ljspeech`` (a folder with ``metadata.csv`` + ``wavs/``),
    ``manifest`` (a JSONL manifest, :mod:`mlx_speech.data.manifest`), or else the festival corpus
    in ``corpus_dir`` (generated from ``sentences`` with ``voice`` when absent)."""

    model: FastSpeechSpec = dataclasses.field(default_factory=FastSpeechSpec)
    mel_preset: str = "hifigan_22k"
    sentences: str = "mlx_speech/assets/tts/train_en.txt"   # one sentence a line
    voice: str = "cmu_us_slt_arctic_hts"                    # festival voice of the corpus
    corpus_dir: str = "data/tts_slt"
    ljspeech: str = ""                                      # LJSpeech-layout folder (recordings)
    manifest: str = ""                                      # or a JSONL manifest (path + text)
    max_items: int = 0                                      # use the first N utterances (0: all)
    language: str = "en"
    # Where the frames-per-phone come from. "corpus": the corpus generator's phone timings
    # (festival / flite corpora only). "learned": the model's aligner (forward-sum loss with a
    # beta-binomial prior, monotonic alignment search -> durations), trained jointly; needs
    # model.aligner_dim > 0 and only (wav, text) pairs.
    alignment: Literal["corpus", "learned"] = "corpus"
    align_weight: float = 1.0                               # forward-sum loss weight (learned)
    bin_weight: float = 1.0                                 # binarization loss weight (learned) ...
    bin_start: int = 1000                                   # ... from this step on (aligner warmed up)
    steps: int = 3000
    batch_size: int = 16
    lr: float = 0.002
    warmup_steps: int = 200
    grad_clip: float = 1.0
    seed: int = 0
    out_dir: str = "runs/tts_slt_tiny"
    log_every: int = 50
    save_every: int = 500

    def validate(self) -> None:
        w = type(self).__name__
        require(self.steps > 0 and self.batch_size > 0 and self.lr > 0, w,
                "steps, batch_size and lr must be positive")
        require(not (self.ljspeech and self.manifest), w, "give either ljspeech or manifest, not both")
        require(self.max_items >= 0 and self.bin_start >= 0, w, "max_items and bin_start must be >= 0")
        require(self.align_weight >= 0 and self.bin_weight >= 0, w, "loss weights must be >= 0")
        if self.alignment == "learned":
            require(self.model.aligner_dim > 0, w, "alignment: learned needs model.aligner_dim > 0")
        else:
            require(not self.ljspeech, w, "an LJSpeech folder has no phone timings: use alignment: learned")

"""Framework-neutral specs (dataclasses + YAML). Imports neither mlx nor torch."""

from mlx_speech.specs.audio import MelSpec
from mlx_speech.specs.base import Spec, require

__all__ = ["MelSpec", "Spec", "require"]

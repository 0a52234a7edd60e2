"""Torch twins of :mod:`mlx_speech.teachers` (transformers models)."""

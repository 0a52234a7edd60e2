"""Frozen teachers for distillation: LLM hidden states aligned to audio frames.

``mlx_speech.teachers.qwen`` (MLX, mlx-lm models) and ``torch_ref.teachers.qwen`` (transformers)
share the duration rules in :mod:`mlx_speech.teachers.durations`. Importing this package loads
neither mlx nor torch.
"""

"""torch_ref: the PyTorch mirror of mlx_speech.

Same sub-packages, file names, class names and attribute names as ``mlx_speech``, so state-dict
keys are identical. Importing it never imports mlx (a test checks this in a subprocess).
"""

__all__: list[str] = []

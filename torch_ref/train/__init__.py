"""torch_ref.train: the PyTorch trainer (same recipes as ``mlx_speech.train``, DDP via torchrun).

Importing the package is light; import ``torch_ref.train.trainer`` for the trainer.
"""

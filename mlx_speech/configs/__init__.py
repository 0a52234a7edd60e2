"""The shipped training recipes (``*.yaml``), package data so a wheel install finds them:
``mlx-speech train NAME`` reads a target's default recipe from here
(:func:`mlx_speech.train.targets.recipe_path`). No code."""

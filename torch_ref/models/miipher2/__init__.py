"""Miipher-2 restoration model, torch mirror of ``mlx_speech.models.miipher2`` (same module
names, so the same keys; the window grid, audio boundary and specs are shared from there)."""

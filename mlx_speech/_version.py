"""The package version, importable without running anything else."""

__version__ = "0.1.0"

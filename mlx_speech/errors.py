"""User-facing error types.

Every error a user can cause (bad file, bad config, bad checkpoint, bad codes) is raised as a
subclass of :class:`UserError` with a one-line message; the CLI prints that line and exits 2.
This module imports nothing heavy so torch_ref and specs can share it.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by user input; its message is one line meant for the user."""


class AudioError(UserError, ValueError):
    """Missing, unreadable, empty or non-finite audio, or an unsupported sample rate."""


class SpecError(UserError, ValueError):
    """A config (YAML / dict) with unknown keys, wrong types or invalid values."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that is missing, corrupt, unsafe, or does not match the model."""


class CodesError(UserError, ValueError):
    """Codes that are out of range, of the wrong shape, or from another model."""


class MissingDependencyError(UserError, ImportError):
    """An optional package a command needs is not installed; the message names what to install."""

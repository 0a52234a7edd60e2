"""Atomic file writes: a reader (or a crash) never sees a half-written file.

Write to a temporary file in the destination's directory, fsync, then ``os.replace``. On any
error the temporary file is removed and an existing destination is left untouched.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

# The names atomic_path gives its temporary files: "." + destination name + "." + mkstemp's 8
# random characters + a suffix, e.g. ".metrics.jsonl.k2x_9abc.jsonl", ".voice.json.abcd1234.json".
_TEMP_NAME = re.compile(r"^\.(?P<dest>.+)\.[a-z0-9_]{8}(?P<suffix>\.[A-Za-z0-9]+)$")


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str], *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; on success it replaces ``dest`` atomically.

    ``suffix`` defaults to the destination's own, so writers that infer the format from the
    file name (soundfile, safetensors) still work on the temporary path.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix or dest.suffix or ".tmp",
                                    dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(dest: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(dest, text.encode("utf-8"))


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is a temporary file of :func:`atomic_path`: the destination's name,
    mkstemp's 8 characters and the destination's own suffix (``.tmp`` for a name without one),
    so a user's hidden file is not mistaken for one."""
    m = _TEMP_NAME.match(name)
    if m is None:
        return False
    dest, suffix = m.group("dest"), m.group("suffix")
    return dest.endswith(suffix) or (suffix == ".tmp" and "." not in dest)


def remove_stale_temps(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files an interrupted :func:`atomic_path` left in ``directory``.

    A ``kill -9`` between ``mkstemp`` and ``os.replace`` leaves one behind; call this only where
    no other writer can be active (e.g. when a training run resumes). Not recursive. Returns the
    removed paths.
    """
    d = Path(directory)
    if not d.is_dir():
        return []
    stale = sorted(p for p in d.iterdir() if is_temp_name(p.name) and p.is_file())
    for p in stale:
        p.unlink(missing_ok=True)
    return stale

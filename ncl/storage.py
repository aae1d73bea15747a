"""Durable files: a write that a crash (a killed process, a power cut) leaves either complete or not there.

Every file whose loss or truncation would matter (checkpoints, the configuration a resume reads, Hugging Face
checkpoints written by :func:`ncl.llama.LlamaForCausalLM.save_pretrained`) is written through
:func:`atomic_file`:

1. the data goes to a temporary file in the same directory (``NAME.tmp-PID-RANDOM``), so the rename below
   stays within one file system;
2. the file is flushed and ``os.fsync``-ed: its bytes are on disk before its name is;
3. ``os.replace`` puts it in place: a reader sees the old file or the new one, never a part of one;
4. the directory is ``fsync``-ed (opened ``O_RDONLY | O_DIRECTORY``), so the new name survives a power cut.

A crash before step 3 leaves the old file untouched and a temporary file behind (never read; the writer
that owns the directory may remove it). :func:`rename` does steps 3–4 for a directory that is already
complete, which is how a checkpoint made of several files appears at once
(:mod:`ncl.training.checkpoints`).

This module imports nothing from ``ncl`` (nor torch): it sits at the bottom of the layers, beside
``ncl.machine``, so that both ``ncl.llama`` and ``ncl.training`` can use it.
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from contextlib import contextmanager, suppress
from pathlib import Path

#: The ``errno`` values with which some file systems refuse to ``fsync`` a directory (nothing to sync there).
_DIR_SYNC_UNSUPPORTED = (errno.EINVAL, errno.ENOTSUP, errno.EBADF)


def fsync_dir(path) -> None:
    """``fsync`` the directory ``path``, making the names created, replaced or removed in it durable.

    A no-op on Windows (a directory cannot be opened there; NTFS journals its renames) and on file systems that
    refuse to sync a directory."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in _DIR_SYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def fsync_file(path) -> None:
    """``fsync`` the existing file ``path`` (e.g. a log appended to line by line), making its bytes durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(path) -> Path:
    """A fresh temporary name next to ``path``: ``NAME.tmp-PID-RANDOM``."""
    path = Path(path)
    return path.with_name(f"{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


@contextmanager
def atomic_file(path, mode: str = "wb", **open_kwargs):
    """Open a temporary file to write ``path`` durably and atomically (module docstring); yields the open file.

    On success the file is flushed, fsynced, moved onto ``path`` with ``os.replace`` and the directory fsynced;
    on an exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` durably and atomically."""
    with atomic_file(path, "wb") as f:
        f.write(data)


def write_text(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` durably and atomically."""
    with atomic_file(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path, data, indent: int | None = None) -> None:
    """Write ``data`` as JSON (and a final newline) to ``path`` durably and atomically."""
    write_text(path, json.dumps(data, indent=indent) + "\n")


def rename(src, dst) -> None:
    """Rename ``src`` (a complete, fsynced file or directory) to ``dst`` atomically, then fsync the parent of
    ``dst`` so that the new name is durable. ``dst`` must not be a non-empty directory."""
    os.rename(src, dst)
    fsync_dir(Path(dst).parent)


__all__ = ["atomic_file", "fsync_dir", "fsync_file", "rename", "temp_path", "write_bytes", "write_json", "write_text"]

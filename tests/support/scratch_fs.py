"""A small file system of its own for a test: full and read-only on demand.

Root cannot be stopped by file modes, so a "read-only" or "full" TEMP_FOLDER
needs a real file system: a size-limited tmpfs mounted on an empty folder
(``mount -t tmpfs -o size=...``), remounted read-only when asked, and filled
to the last byte by a filler file. :func:`mount_tmpfs` raises
:class:`Unavailable` (with the reason) where mounting is not allowed, so a
test can skip with that reason. Always :func:`unmount` in a ``finally``.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

#: Size of each write while filling the file system, in bytes.
FILL_CHUNK = 1 << 16


class Unavailable(Exception):
    """This machine does not let the tests mount a file system."""


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=30)


def mount_tmpfs(folder: Path, size_bytes: int) -> None:
    """Mount a tmpfs of ``size_bytes`` (owner-only) on the empty ``folder``."""
    if shutil.which("mount") is None:
        raise Unavailable("no mount command on this machine")
    folder.mkdir(parents=True, exist_ok=True)
    done = _run("mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0700", "tmpfs",
                str(folder))
    if done.returncode != 0:
        raise Unavailable(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")


def set_read_only(folder: Path, read_only: bool) -> None:
    """Remount the tmpfs on ``folder`` read-only, or read-write again."""
    mode = "ro" if read_only else "rw"
    done = _run("mount", "-o", f"remount,{mode}", str(folder))
    assert done.returncode == 0, f"remount {mode} failed: {done.stderr}"


def unmount(folder: Path) -> None:
    """Unmount ``folder`` (lazily, so a process still holding a file cannot block it)."""
    _run("umount", "-l", str(folder))


def fill(folder: Path) -> Path:
    """Write a filler file in ``folder`` until the file system has no byte left."""
    path = folder / "filler.bin"
    chunk = b"\0" * FILL_CHUNK
    with open(path, "wb", buffering=0) as out:
        size = FILL_CHUNK
        while size:
            try:
                out.write(chunk[:size])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                size //= 2  # then the last bytes, down to a single one
    return path


def free_bytes(folder: Path) -> int:
    """Bytes that can still be written under ``folder``."""
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize

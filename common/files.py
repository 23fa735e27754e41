"""Durable, owner-only file helpers shared by every process that writes to disk.

Everything the service writes under TEMP_FOLDER and STATE_DIR is owner-only:
files 0600, directories 0700 (also when a process runs outside supervisord
and creates TEMP_FOLDER or STATE_DIR itself). "Durable" means the data and
the directory entry were fsync'ed before the function returned, so a crash
(or power loss) afterwards cannot lose it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

#: Permission bits of every file the service writes (owner read/write).
FILE_MODE = 0o600
#: Permission bits of every directory the service creates (owner only).
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) as 0700 directories; return it.

    Directories that already exist are left as they are.
    """
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, DIR_MODE)
        except FileExistsError:
            pass
    return path


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (creations, renames) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd`` (``os.write`` may write only part)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_new(path: Path, data: bytes, sync: bool = True) -> None:
    """Write ``data`` to a new 0600 file ``path`` (fails if it exists); fsync it.

    The file is not removed when writing fails: the caller decides.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        write_all(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: Path, data: bytes, sync: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically (temp file + rename), without
    fsyncing the directory: for callers that sync it once for several files, or
    that must handle that failure apart. Nothing is left behind on failure."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        write_new(tmp, data, sync)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: bytes, sync: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically (temp file + rename).

    Readers see either the old or the new content, never a torn file. With
    ``sync`` the new content and the rename are durable on return.
    """
    replace_file(path, data, sync)
    if sync:
        fsync_dir(path.parent)


def is_under(path: Path, root: Path) -> bool:
    """True when ``path`` (symlinks resolved) lies inside directory ``root``."""
    try:
        resolved = path.resolve()
        return resolved != root.resolve() and resolved.is_relative_to(root.resolve())
    except (OSError, RuntimeError):
        return False


#: Bytes read at a time when hashing a file.
HASH_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks (weights files are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()

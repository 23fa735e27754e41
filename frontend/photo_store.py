"""Accepted photos on disk: ``TEMP_FOLDER/incoming/<job_id>-<uuid4hex>.<jpg|png>``.

A photo is written owner-only (file 0600, directory 0700), fsynced together
with its directory entry *before* the broker journals its path, so a job the
broker accepted never points at a file a crash could lose. Any failure to
write removes the partial file and raises :class:`StorageError`; nothing is
cached about the failure, so the next request tries again (a disk that had
no space, or was read-only, is used again as soon as it recovers).

All methods block on disk I/O: call them from a thread pool.
"""

from __future__ import annotations

import errno
import uuid
from pathlib import Path

from common.files import fsync_dir, private_dir, write_new

#: Sub-folder of TEMP_FOLDER that holds uploaded photos.
INCOMING_DIR = "incoming"

#: File suffix by Pillow format name.
SUFFIXES = {"JPEG": "jpg", "PNG": "png"}

#: errno values that mean "no space" rather than "cannot write here".
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class StorageError(OSError):
    """The photo could not be stored; ``no_space`` tells a full disk from the rest."""

    def __init__(self, message: str, no_space: bool) -> None:
        super().__init__(message)
        self.no_space = no_space


class PhotoStore:
    """Writes and deletes uploaded photos under ``temp_folder/incoming``."""

    def __init__(self, temp_folder: Path) -> None:
        self.directory = Path(temp_folder).resolve() / INCOMING_DIR

    def write(self, job_id: str, fmt: str, data: bytes) -> Path:
        """Store ``data`` durably and return its absolute path.

        ``job_id`` must already be a valid id (it is part of the file name).
        Raises :class:`StorageError`; no partial file is left behind.
        """
        path = self.directory / f"{job_id}-{uuid.uuid4().hex}.{SUFFIXES[fmt]}"
        try:
            private_dir(self.directory)  # TEMP_FOLDER too, when it is missing
            write_new(path, data)
            fsync_dir(self.directory)
        except OSError as exc:
            if not isinstance(exc, FileExistsError):  # never another writer's file
                self.discard(path)
            raise _storage_error(exc) from None
        return path

    def discard(self, path: Path | str) -> bool:
        """Delete a photo this store wrote; True if a file was removed.

        Refuses (returns False) for paths outside the incoming folder, and
        returns False when the file is gone or cannot be deleted (the caller logs).
        """
        path = Path(path)
        if path.parent != self.directory:
            return False
        try:
            path.unlink()
        except OSError:
            return False
        return True


def _storage_error(exc: OSError) -> StorageError:
    # The message goes to clients: it names the condition, never the server's paths.
    no_space = exc.errno in _NO_SPACE
    what = "is full" if no_space else f"cannot be written ({exc.strerror or type(exc).__name__})"
    return StorageError(f"the server's temporary photo storage {what}", no_space)

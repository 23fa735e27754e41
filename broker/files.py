"""The broker's only file access outside its journal: photos and masks under TEMP_FOLDER.

Every path is checked to lie inside TEMP_FOLDER (after resolving symlinks)
before it is read, written or deleted, and job ids are checked with
:func:`common.ids.is_valid_id` before a path is built from them. Masks are
written to ``TEMP_FOLDER/jobs/<job_id>/<name>.png`` (directory 0700, file
0600) through a temporary file, fsync and rename.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from common import wire
from common.files import DIR_MODE, fsync_dir, is_under, private_dir, replace_file
from common.ids import is_valid_id
from common.logs import event

#: Sub-directory of TEMP_FOLDER holding one directory of masks per job.
JOBS_DIR = "jobs"

log = logging.getLogger("broker.files")


class StorageError(Exception):
    """Masks could not be written (disk full, permissions, bad job id)."""


class TempStorage:
    """Reads photos and writes masks, strictly inside ``temp_folder``.

    With ``defer_deletes`` (the broker loop, whose journal group-commits), a photo
    is only deleted by :meth:`run_deferred_deletes`, which the loop calls after the
    journal records that allow the deletion are fsynced.
    """

    def __init__(self, temp_folder: Path, defer_deletes: bool = False) -> None:
        self.root = Path(os.path.realpath(temp_folder))
        self._deferred: list[str] | None = [] if defer_deletes else None

    def owns(self, path: str) -> bool:
        """True when ``path`` is absolute and, symlinks resolved, inside TEMP_FOLDER."""
        return (isinstance(path, str) and os.path.isabs(path) and "\x00" not in path
                and is_under(Path(path), self.root))

    def store_masks(self, job_id: str, masks: Mapping[str, bytes]) -> dict[str, str]:
        """Write each mask durably; returns mask name -> absolute path."""
        if not is_valid_id(job_id):
            raise StorageError(f"job id {job_id[:130]!r} is not valid")
        directory = self.root / JOBS_DIR / job_id
        try:
            # jobs/ too is owner-only (its entries are the clients' job ids), also
            # when an older version or an operator created it wider
            for folder in (directory.parent, directory):
                os.chmod(private_dir(folder), DIR_MODE)
            paths = {}
            for name, data in masks.items():
                if name not in wire.MASK_NAMES:
                    raise StorageError(f"mask name {name!r} is not known")
                path = directory / f"{name}.png"
                replace_file(path, data)
                paths[name] = str(path)
            fsync_dir(directory)  # once, for every rename above
        except OSError as exc:
            raise StorageError(f"cannot write masks under {directory}: "
                               f"{exc.strerror or exc}") from None
        return paths

    def read_image(self, path: str) -> bytes | None:
        """The photo's bytes (for workers without the shared folder), or None if unreadable."""
        if not self.owns(path):
            event(log, "image_path_refused", logging.WARNING, path=path)
            return None
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            event(log, "image_unreadable", logging.WARNING, path=path, error=exc.strerror)
            return None

    def delete_input(self, path: str) -> None:
        """Remove a job's input photo (missing is fine; paths outside TEMP_FOLDER are refused)."""
        if self._deferred is not None:
            self._deferred.append(path)
            return
        self._unlink(path)

    def run_deferred_deletes(self) -> None:
        """Delete the photos :meth:`delete_input` was asked to delete since the last call."""
        if not self._deferred:
            return
        todo, self._deferred = self._deferred, []
        for path in todo:
            self._unlink(path)

    def _unlink(self, path: str) -> None:
        if not self.owns(path):
            event(log, "image_path_refused", logging.WARNING, path=path)
            return
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            event(log, "image_delete_failed", logging.WARNING, path=path, error=exc.strerror)

"""The uploader's durable job store: the spool and the dead-letter directory.

Layout under ``<state_dir>/uploader/`` (directories 0700, files 0600)::

    spool/<job_id>/upper_body_mask.png    copies of the masks as received
    spool/<job_id>/lower_body_mask.png
    spool/<job_id>/seg_map.png            only when the job has one
    spool/<job_id>/manifest.msgpack       {job, masks, sources, spooled_at, attempts, dead}
    dead/<job_id>/...                     same files; manifest "dead" says why

A job enters the spool atomically (built in ``spool/.tmp-*``, fsync'ed, then
renamed) so a crash never leaves a half-spooled job; it leaves it only when
delivered (removed) or failed finally (renamed to ``dead/``). Nothing here
deletes an undelivered job, and only files under TEMP_FOLDER are ever removed
from outside the uploader's own directories.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.files import DIR_MODE, atomic_write, fsync_dir, is_under, private_dir, write_new
from common.ids import is_valid_id
from common.wire import LOWER, MASK_NAMES, UPPER, pack, unpack

#: Name of the manifest file inside a spooled or dead-lettered job's directory.
MANIFEST = "manifest.msgpack"
#: Prefix of directories being built (never a valid job id: ids start alphanumeric).
TMP_PREFIX = ".tmp-"


class SpoolError(Exception):
    """A job cannot be spooled (bad paths, unreadable masks) or moved."""


@dataclass
class SpooledJob:
    """One job on disk: its directory and its manifest (mutable copy)."""
    job_id: str
    path: Path
    manifest: dict[str, Any]

    @property
    def job(self) -> dict[str, Any]:
        return self.manifest["job"]

    @property
    def attempts(self) -> list[dict[str, Any]]:
        return self.manifest["attempts"]

    def files(self) -> dict[str, bytes]:
        """The spooled masks, ``{name: png bytes}``, in upload order."""
        return {name: (self.path / f"{name}.png").read_bytes() for name in self.manifest["masks"]}


class Spool:
    """The spool and dead-letter directories under ``root`` (``state_dir/uploader``).

    ``temp_folder`` is the only tree from which mask copies are taken and temp
    files removed. Methods raise :class:`SpoolError` (or ``OSError`` for disk
    faults); job ids are validated before any path is built from them.
    """

    def __init__(self, root: Path, temp_folder: Path):
        self.temp_folder = Path(temp_folder)
        self.spool_dir = private_dir(Path(root) / "spool")
        self.dead_dir = private_dir(Path(root) / "dead")

    def where(self, job_id: str) -> str | None:
        """``"spooled"``, ``"dead"`` or None for a job this store does not hold."""
        _check_id(job_id)
        if (self.spool_dir / job_id).is_dir():
            return "spooled"
        if (self.dead_dir / job_id).is_dir():
            return "dead"
        return None

    def add(self, job: Mapping[str, Any], masks: Mapping[str, str]) -> SpooledJob:
        """Copy the job's masks into the spool with a manifest, durably, atomically."""
        job_id = _check_id(str(job["job_id"]))
        sources = self._check_masks(masks)
        tmp = self.spool_dir / f"{TMP_PREFIX}{job_id}-{os.getpid()}-{time.monotonic_ns()}"
        os.mkdir(tmp, DIR_MODE)
        try:
            for name, src in sources.items():
                write_new(tmp / f"{name}.png", src.read_bytes())
            manifest = {"job": dict(job), "masks": list(sources),
                        "sources": {n: str(p) for n, p in sources.items()},
                        "spooled_at": time.time(), "attempts": [], "dead": None}
            write_new(tmp / MANIFEST, pack(manifest))
            fsync_dir(tmp)
            os.rename(tmp, self.spool_dir / job_id)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(self.spool_dir)
        return SpooledJob(job_id, self.spool_dir / job_id, manifest)

    def _check_masks(self, masks: Mapping[str, str]) -> dict[str, Path]:
        """Mask paths as ``{name: Path}`` in upload order, or :class:`SpoolError`."""
        if not isinstance(masks, Mapping):
            raise SpoolError("masks must map mask names to paths")
        missing = [n for n in (UPPER, LOWER) if not masks.get(n)]
        if missing:
            raise SpoolError(f"masks lack {', '.join(missing)}")
        unknown = sorted(set(masks) - set(MASK_NAMES))
        if unknown:
            raise SpoolError(f"unknown mask name {unknown[0]!r}")
        sources = {}
        for name in MASK_NAMES:
            if not masks.get(name):
                continue
            path = Path(str(masks[name]))
            if not path.is_absolute() or not is_under(path, self.temp_folder):
                raise SpoolError(f"{name} path is not under TEMP_FOLDER")
            if not path.is_file():
                raise SpoolError(f"{name} file is missing")
            sources[name] = path
        return sources

    def load(self, job_id: str, dead: bool = False) -> SpooledJob:
        """The spooled (or dead-lettered) job ``job_id``."""
        path = (self.dead_dir if dead else self.spool_dir) / _check_id(job_id)
        try:
            manifest = unpack((path / MANIFEST).read_bytes())
        except FileNotFoundError:
            raise SpoolError(f"job {job_id} is not {'dead-lettered' if dead else 'spooled'}") from None
        return SpooledJob(job_id, path, manifest)

    def save(self, entry: SpooledJob) -> None:
        """Write ``entry``'s manifest back, atomically and durably."""
        atomic_write(entry.path / MANIFEST, pack(entry.manifest))

    def pending(self) -> list[str]:
        """Spooled job ids, oldest first. Removes leftovers of interrupted spooling
        (never acknowledged, so the broker still holds those jobs)."""
        entries = []
        for child in self.spool_dir.iterdir():
            if child.name.startswith(TMP_PREFIX):
                shutil.rmtree(child, ignore_errors=True)
            elif is_valid_id(child.name) and (child / MANIFEST).is_file():
                entries.append((self._spooled_at(child), child.name))
        return [name for _, name in sorted(entries)]

    @staticmethod
    def _spooled_at(path: Path) -> float:
        try:
            return float(unpack((path / MANIFEST).read_bytes())["spooled_at"])
        except Exception:  # an unreadable manifest sorts first and fails visibly on load  # noqa: BLE001
            return 0.0

    def depths(self) -> dict[str, int]:
        """``{"depth": jobs in the spool, "dead": dead letters}``, for the metrics
        (directory entries only; nothing is read or removed)."""
        def count(folder: Path) -> int:
            return sum(1 for c in os.scandir(folder) if not c.name.startswith(TMP_PREFIX))
        return {"depth": count(self.spool_dir), "dead": count(self.dead_dir)}

    def dead_ids(self) -> list[str]:
        """Dead-lettered job ids, sorted."""
        return sorted(c.name for c in self.dead_dir.iterdir()
                      if is_valid_id(c.name) and (c / MANIFEST).is_file())

    def dead_letter(self, entry: SpooledJob, info: Mapping[str, Any]) -> None:
        """Record ``info`` (reason, status, body, detail) and move the job to ``dead/``."""
        entry.manifest["dead"] = {**info, "at": time.time()}
        self.save(entry)
        if entry.path.parent == self.dead_dir:
            return  # a failed redrive: stays where it is, with the new status
        target = self.dead_dir / entry.job_id
        if target.exists():
            raise SpoolError(f"job {entry.job_id} is already dead-lettered; left in the spool")
        os.rename(entry.path, target)
        fsync_dir(self.dead_dir)
        fsync_dir(self.spool_dir)
        entry.path = target

    def remove(self, entry: SpooledJob) -> None:
        """Delete a delivered job's directory (spool or dead)."""
        shutil.rmtree(entry.path)
        fsync_dir(entry.path.parent)

    def remove_temp_files(self, entry: SpooledJob) -> list[str]:
        """Delete the job's files under TEMP_FOLDER (its masks and photo) and its
        emptied job directory; returns the removed paths. Call only once delivered."""
        removed = []
        paths = [Path(p) for p in entry.manifest["sources"].values()]
        if entry.job.get("image_path"):
            paths.append(Path(str(entry.job["image_path"])))
        for path in paths:
            if path.is_absolute() and is_under(path, self.temp_folder):
                try:
                    path.unlink()
                    removed.append(str(path))
                except OSError:
                    pass  # already gone, or not a file: nothing of ours to remove
        for parent in {p.parent for p in paths}:
            # the job's own folder (TEMP_FOLDER/jobs/<job_id>/) goes once empty
            if parent.name == entry.job_id and is_under(parent, self.temp_folder):
                try:
                    parent.rmdir()
                except OSError:
                    pass  # not empty (or gone): leave it
        return removed


def _check_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not is_valid_id(job_id):
        raise SpoolError(f"invalid job_id {str(job_id)[:80]!r}")
    return job_id

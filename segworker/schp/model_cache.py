"""On-disk cache of converted SCHP models, so a restarted worker serves within seconds.

Converting the network to OpenVINO takes 20-40 s at one thread; reading a
converted model back takes well under a second. Entries live under
``STATE_DIR/schp/compiled/<key digest>/`` and hold ``model.xml`` + ``model.bin``
and ``meta.json``. The key is everything that changes the compiled graph:
the weights' SHA-256 (and norm maths), backend, precision, input size, the
library versions, and a hash of the network's source code.

An entry is used only when its ``meta.json`` names the same key and every
file has the size and SHA-256 recorded in it; anything else (a half-written
entry, a flipped bit, another version's files) is logged and rebuilt. Entries
are written to a private temporary folder and renamed into place, so a crash
mid-write leaves nothing that looks whole; two workers building the same
entry at once both succeed (the second rename loses and is discarded). At
most :data:`KEEP_ENTRIES` entries are kept (least recently used go first).
A cache that cannot be written is a warning, never fatal: the worker then
converts at every start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.files import file_sha256, private_dir
from common.logs import event

log = logging.getLogger(__name__)

#: Bumped when the entry layout changes (old entries then miss and are pruned).
FORMAT = 1

#: Entries kept on disk (each is one copy of the weights, ~270 MB at fp32).
KEEP_ENTRIES = 4

#: Metadata file of an entry; written last, so its presence means "complete".
META = "meta.json"

#: Prefix of folders still being written (ignored by lookups, removed when stale).
TMP_PREFIX = ".tmp-"

#: Temporary folders older than this (seconds) are leftovers of a crash.
STALE_TMP_S = 3600


def key_digest(key: Mapping[str, Any]) -> str:
    """A short stable hex name for ``key`` (a flat JSON-able mapping)."""
    text = json.dumps(dict(key), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Lookup:
    """What a lookup found: ``path`` of a valid entry, or None and why not."""

    path: Path | None
    problem: str | None = None   #: set when an entry existed but could not be used


class ModelCache:
    """The cache folder (created on first store)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def lookup(self, key: Mapping[str, Any]) -> Lookup:
        """The valid entry for ``key``, or why there is none (never raises)."""
        entry = self.root / key_digest(key)
        if not entry.exists():
            return Lookup(None)
        try:
            problem = _check_entry(entry, key)
        except (OSError, ValueError) as exc:
            problem = f"unreadable ({exc})"
        if problem:
            return Lookup(None, problem)
        _touch(entry / META)
        return Lookup(entry)

    def store(self, key: Mapping[str, Any], write: Callable[[Path], None]) -> Path | None:
        """Build the entry for ``key``: ``write(folder)`` writes the model files
        into a temporary folder, which is then checksummed and renamed into place.
        Returns the entry's path, or None (logged) when the cache cannot be written."""
        entry = self.root / key_digest(key)
        tmp = None
        try:
            private_dir(self.root)
            self._remove_stale_tmp()
            tmp = self.root / f"{TMP_PREFIX}{entry.name}-{os.getpid()}-{time.monotonic_ns()}"
            os.mkdir(tmp, 0o700)
            write(tmp)
            files = {p.name: {"size": p.stat().st_size, "sha256": file_sha256(p)}
                     for p in sorted(tmp.iterdir())}
            meta = {"format": FORMAT, "key": dict(key), "files": files,
                    "created_at": time.time()}
            (tmp / META).write_text(json.dumps(meta, indent=1, sort_keys=True))
            for p in tmp.iterdir():
                os.chmod(p, 0o600)
            if entry.exists() and self.lookup(key).path is not None:
                shutil.rmtree(tmp, ignore_errors=True)   # another worker stored it meanwhile
                return entry
            shutil.rmtree(entry, ignore_errors=True)     # damaged: replace it
            try:
                os.rename(tmp, entry)
            except OSError:      # another worker renamed theirs in first: as good as ours
                shutil.rmtree(tmp, ignore_errors=True)
            self._prune(keep=entry)
            return entry
        except OSError as exc:
            event(log, "schp_cache_unwritable", logging.WARNING, cache_dir=str(self.root),
                  error=str(exc), note="the model is converted again at every start")
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            return None

    def remove(self, key: Mapping[str, Any]) -> None:
        """Drop the entry for ``key`` (e.g. one whose files do not load)."""
        shutil.rmtree(self.root / key_digest(key), ignore_errors=True)

    def entries(self) -> list[Path]:
        """Complete-looking entries, least recently used first."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir()
                 if p.is_dir() and not p.name.startswith(TMP_PREFIX) and (p / META).exists()]
        return sorted(found, key=lambda p: (p / META).stat().st_mtime)

    def _prune(self, keep: Path) -> None:
        others = [p for p in self.entries() if p != keep]
        for old in others[:max(0, len(others) - (KEEP_ENTRIES - 1))]:
            shutil.rmtree(old, ignore_errors=True)
            event(log, "schp_cache_pruned", entry=old.name)

    def _remove_stale_tmp(self) -> None:
        now = time.time()
        for p in self.root.iterdir():
            if p.name.startswith(TMP_PREFIX) and now - p.stat().st_mtime > STALE_TMP_S:
                shutil.rmtree(p, ignore_errors=True)


def _check_entry(entry: Path, key: Mapping[str, Any]) -> str | None:
    """None when ``entry`` is complete and intact for ``key``, else the problem."""
    meta_path = entry / META
    if not meta_path.exists():
        return "incomplete (no meta.json)"
    meta = json.loads(meta_path.read_text())
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        return "written by another cache format"
    if meta.get("key") != dict(key):
        return "its key does not match (a different model, precision or library version)"
    files = meta.get("files")
    if not isinstance(files, dict) or not files:
        return "meta.json lists no files"
    for name, facts in files.items():
        path = entry / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != facts.get("size"):
            return f"{name} has the wrong size (truncated?)"
        if file_sha256(path) != facts.get("sha256"):
            return f"{name} is damaged (SHA-256 mismatch)"
    return None


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass  # read-only cache: LRU order just goes stale

"""Validation of what peers send the broker (pure functions)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from common import wire
from common.ids import is_valid_id

#: PNG file signature; every mask a worker returns must start with it.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: Longest reason / detail text kept from a peer, in characters.
MAX_REASON, MAX_DETAIL = 64, 500


def text(value: Any, limit: int) -> str | None:
    """``value`` as a string of at most ``limit`` characters (None stays None)."""
    return None if value is None else str(value)[:limit]


def job_problem(job: Any, owns: Callable[[str], bool]) -> str | None:
    """Why a submitted Job cannot be accepted, or None. ``owns(path)`` says
    whether a path lies inside TEMP_FOLDER."""
    if not isinstance(job, dict):
        return "job must be a map"
    for key in ("job_id", "user_id"):
        if not isinstance(job.get(key), str) or not is_valid_id(job[key]):
            return f"{key} is not a valid id"
    if not isinstance(job.get("provider"), str):
        return "provider must be a string"
    submitted_at = job.get("submitted_at")
    if not isinstance(submitted_at, (int, float)) or isinstance(submitted_at, bool):
        return "submitted_at must be a number"
    if not isinstance(job.get("image_path"), str) or not owns(job["image_path"]):
        return "image_path must be an absolute path under TEMP_FOLDER"
    return None


def masks_problem(masks: Any) -> str | None:
    """Why a worker's ``masks`` map is unusable, or None."""
    if not isinstance(masks, dict) or not {wire.UPPER, wire.LOWER} <= set(masks):
        return f"a result needs {wire.UPPER} and {wire.LOWER}"
    for name, data in masks.items():
        if name not in wire.MASK_NAMES:
            return f"unknown mask name {text(name, 40)!r}"
        if not isinstance(data, bytes) or not data.startswith(PNG_SIGNATURE):
            return f"mask {name} is not a PNG"
    return None

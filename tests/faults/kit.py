"""What the fault tests share besides fixtures: the session's bad-input counters and
the SCHP set-up that makes a forward pass slow enough to be caught mid-way."""

from __future__ import annotations

from pathlib import Path

#: Hand-made bad inputs tried against the real service in this session (for the summary).
BAD_INPUTS: list[str] = []
#: Requests schemathesis generated against the real service in this session.
FUZZED: list[str] = []

#: Label id of "upper-clothes" in the ATR label set (SCHP).
ATR_UPPER_CLOTHES = 4
#: Added to that class's classifier bias so random weights label most pixels upper-clothes.
UPPER_CLOTHES_BIAS = 20.0


def save_schp_checkpoint(folder: Path) -> Path:
    """Write a random-weight ATR checkpoint (267 MB, official 2020 layout, legacy
    serialization) in ``folder``. The upper-clothes bias is raised so the label map has
    foreground: jobs are delivered, not failed as no_person."""
    import torch

    from tests.segworker.fixtures.schp_checkpoints import as_2020_file, random_state
    state = random_state("atr")
    state["fushion.3.bias"][ATR_UPPER_CLOTHES] += UPPER_CLOTHES_BIAS
    path = folder / "random-atr.pth"
    torch.save(as_2020_file(state), path, _use_new_zipfile_serialization=False)
    return path


def schp_env(weights: Path) -> dict[str, str]:
    """Environment for workers that run the SCHP engine on ``weights``, one thread each.

    Eager bf16 (about 0.5-1 s a forward here): still long enough to be caught
    mid-forward, and it keeps the suite within its time budget. Eager, not the
    compiled OpenVINO graph: that is too fast to catch and converts at every start
    (each test has a fresh STATE_DIR)."""
    return {"SEGMENTATION_ENGINE": "schp", "SCHP_WEIGHTS": str(weights), "SCHP_DATASET": "atr",
            "WORKER_THREADS": "1", "SCHP_DEVICE": "cpu", "SCHP_PRECISION": "bf16",
            "SCHP_BACKEND": "eager"}

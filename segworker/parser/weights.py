"""The parser's weights file: written by training, checked at every start.

A weights file is a ``torch.save`` dictionary readable with
``weights_only=True`` (no code runs while loading):

- ``format``: :data:`FORMAT` (or :data:`FORMAT_V1`, the first files: read as
  RGB + person planes);
- ``shape``: the :class:`~segworker.parser.network.NetShape` as a dict;
- ``planes``: the names of the network's input planes, one of the layouts of
  :data:`segworker.parser.infer.LAYOUTS` (RGB + person, or with the pose
  heatmaps after them); the code feeds the network what its file says;
- ``classes``: the class names, which must be :data:`~segworker.parser.classes.CLASS_NAMES`;
- ``input``: ``[height, width]`` of the network input;
- ``state_dict``: convolution weights in float16 (half the size), the rest float32;
- ``trained``: what it was trained on and how (for people; not checked);
- ``one_piece_penalty`` (optional, 0 when absent): how much the one-piece
  logit is lowered at inference (:func:`~segworker.parser.network.lower_one_piece`),
  a number from 0 to :data:`MAX_PENALTY` chosen for the network in the file.

Beside it, ``<file>.sha256`` holds its SHA-256 (``sha256sum`` format), so a
truncated or altered file is refused before torch reads a byte of it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from common.files import file_sha256
from segworker.engine import EngineLoadError
from segworker.parser import crop
from segworker.parser.classes import CLASS_NAMES
from segworker.parser.infer import BASE_PLANES, LAYOUTS
from segworker.parser.network import NetShape, ParserNet, lower_one_piece

#: The ``format`` tag of a parser weights file.
FORMAT = "qwen-mask-parser/2"

#: The tag of the first files (no ``planes``: RGB + person probability), still read.
FORMAT_V1 = "qwen-mask-parser/1"

#: Largest weights file accepted (bytes); the committed one is about 5 MB.
MAX_BYTES = 12 * 1024 * 1024

#: Largest ``one_piece_penalty`` accepted (a logit; beyond it no dress survives).
MAX_PENALTY = 10.0

#: The weights that ship with the project.
BUNDLED = Path(__file__).resolve().parent / "parser.pt"


def save(model: ParserNet, path: Path, trained: dict, one_piece_penalty: float = 0.0) -> str:
    """Write ``model`` (trained, without the penalty folded in) and the
    inference ``one_piece_penalty`` to ``path`` (and ``path.sha256``);
    returns the SHA-256."""
    state = {name: (t.detach().half() if t.ndim == 4 else t.detach().float()).cpu()
             for name, t in model.state_dict().items() if t.is_floating_point()}
    state.update({name: t.cpu() for name, t in model.state_dict().items()
                  if not t.is_floating_point()})
    planes = LAYOUTS.get(model.shape.in_channels)
    if planes is None:
        raise ValueError(f"no input layout has {model.shape.in_channels} planes")
    torch.save({"format": FORMAT, "shape": model.shape.as_dict(), "classes": list(CLASS_NAMES),
                "input": [crop.INPUT_H, crop.INPUT_W], "planes": list(planes),
                "state_dict": state, "trained": trained,
                "one_piece_penalty": float(one_piece_penalty)}, path)
    digest = file_sha256(path)
    Path(f"{path}.sha256").write_text(f"{digest}  {path.name}\n")
    return digest


def load(path: Path) -> tuple[ParserNet, dict]:
    """The network in ``path``, in eval mode with the file's
    ``one_piece_penalty`` folded in (its output is what the service labels
    from), and the file's ``trained`` facts.

    Raises :class:`EngineLoadError` with one line naming the file and the
    problem: missing, empty, too large, no or wrong ``.sha256``, not a torch
    file, another format, other classes or input size, input planes this
    code cannot feed (or that do not match the network), tensors of the wrong
    shape, missing or extra tensors, NaN or infinite values, a penalty that is
    not a number from 0 to :data:`MAX_PENALTY`.
    """
    _check_file(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean "not our file"  # noqa: BLE001
        raise _error(path, f"not a readable torch file ({type(exc).__name__})") from None
    if not isinstance(raw, dict) or raw.get("format") not in (FORMAT, FORMAT_V1):
        raise _error(path, f"not a parser weights file (format is not {FORMAT!r})")
    if list(raw.get("classes", [])) != list(CLASS_NAMES):
        raise _error(path, f"classes {raw.get('classes')} differ from this code's {list(CLASS_NAMES)}")
    if list(raw.get("input", [])) != [crop.INPUT_H, crop.INPUT_W]:
        raise _error(path, f"input size {raw.get('input')} is not [{crop.INPUT_H}, {crop.INPUT_W}]")
    try:
        model = ParserNet(NetShape.from_dict(raw["shape"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise _error(path, f"bad network shape ({exc})") from None
    _check_planes(path, raw, model.shape.in_channels)
    _load_state(path, model, raw.get("state_dict"))
    lower_one_piece(model, _penalty(path, raw.get("one_piece_penalty", 0.0)))
    return model.eval(), dict(raw.get("trained") or {})


def checked_penalty(value: object) -> float:
    """``value`` as a one-piece penalty; ValueError unless it is a number from
    0 to :data:`MAX_PENALTY` (the rule for files and for the training command)."""
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not 0.0 <= float(value) <= MAX_PENALTY):
        raise ValueError(f"{value!r} is not a number from 0 to {MAX_PENALTY}")
    return float(value)


def _penalty(path: Path, value: object) -> float:
    try:
        return checked_penalty(value)
    except ValueError as exc:
        raise _error(path, f"one_piece_penalty {exc}") from None


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise _error(path, "no such file" if not path.exists() else "not a file")
    size = path.stat().st_size
    if size == 0:
        raise _error(path, "the file is empty")
    if size > MAX_BYTES:
        raise _error(path, f"{size} bytes is more than the {MAX_BYTES} a parser file can be")
    sidecar = Path(f"{path}.sha256")
    if not sidecar.is_file():
        raise _error(path, f"its checksum file {sidecar.name} is missing")
    expected = sidecar.read_text().split()[:1]
    if expected != [file_sha256(path)]:
        raise _error(path, f"SHA-256 differs from {sidecar.name}: the file is damaged or was "
                     "changed (retrain, or restore it from git)")


def _check_planes(path: Path, raw: dict, in_channels: int) -> None:
    planes = list(BASE_PLANES) if raw["format"] == FORMAT_V1 else raw.get("planes")
    if not isinstance(planes, list) or tuple(planes) not in LAYOUTS.values():
        known = " or ".join(str(list(p)) for p in LAYOUTS.values())
        raise _error(path, f"input planes {planes} are not ones this code feeds ({known}): "
                     "retrain it with this version")
    if len(planes) != in_channels:
        raise _error(path, f"{len(planes)} input planes {planes} but the network takes "
                     f"{in_channels}")


def _load_state(path: Path, model: ParserNet, state: object) -> None:
    if not isinstance(state, dict):
        raise _error(path, "no state_dict")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise _error(path, f"tensors do not match the network (missing {missing[:3]}, "
                     f"unexpected {extra[:3]})")
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor) or tensor.shape != expected[name].shape:
            shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise _error(path, f"tensor {name} has shape {shape}, expected "
                         f"{tuple(expected[name].shape)}")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise _error(path, f"tensor {name} holds NaN or infinite values")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})


def _error(path: Path, problem: str) -> EngineLoadError:
    return EngineLoadError(f"parser weights {path}: {problem}")


def parameter_count(model: ParserNet) -> int:
    return sum(p.numel() for p in model.parameters())

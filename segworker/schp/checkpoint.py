"""Loading an official SCHP checkpoint, or failing with one clear message.

Accepted files (SPEC §1.1, §1.2):

* **2020 generation** (the files linked from the README today): a dict with a
  ``'state_dict'`` entry holding the 603 parameters and buffers, keys prefixed
  ``module.``, no ``num_batches_tracked``. Norm maths: InPlace-ABN, |w|+eps.
* **2019 generation** (same file names, older Drive ids): a bare state dict,
  ``module.`` keys, head norms under an extra ``.bn.`` segment, and a
  ``num_batches_tracked`` per norm (722 keys). Norm maths: plain BatchNorm.

Everything else is refused before any weight reaches the network: the key set
and every shape are checked against the network's own manifest, values must be
finite floats, and the dataset (ATR/LIP/Pascal) must agree with the
configuration. Files are read with ``torch.load(weights_only=True)``, which
cannot run code from the file. Every failure is an
:class:`~segworker.engine.EngineLoadError` naming the file and the problem.
"""

from __future__ import annotations

import functools
import logging
import pickle
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from common.files import file_sha256
from common.logs import event
from segworker.engine import EngineLoadError
from segworker.schp.datasets import (
    DATASETS,
    GENERATION_2019,
    GENERATION_2020,
    KNOWN_RELEASES,
    Release,
    dataset_for_classes,
)
from segworker.schp.network import SchpNet

log = logging.getLogger(__name__)

#: How many offending key names an error message quotes.
SHOWN_KEYS = 3

#: Prefix DataParallel training leaves on every key of the official files.
MODULE_PREFIX = "module."

#: The classifier whose first dimension tells the dataset (18 ATR / 20 LIP / 7 Pascal).
CLASSIFIER_KEY = "fushion.3.weight"

#: Key suffix of BatchNorm's batch counter (2019 files, nn.BatchNorm2d); its value is never used.
_NBT = ".num_batches_tracked"


@dataclass(frozen=True)
class CheckpointInfo:
    """What was learnt about a weights file while loading it."""

    path: str
    dataset: str
    generation: str
    sha256: str
    release: Release | None  #: the official file with this hash, if known

    @property
    def known_release(self) -> bool:
        """True when the SHA-256 matches a known official release file."""
        return self.release is not None


def _fail(path: Path | str, problem: str) -> EngineLoadError:
    return EngineLoadError(f"SCHP weights file {path}: {problem}")


@functools.cache
def expected_shapes(dataset: str) -> dict[str, tuple[int, ...]]:
    """The manifest: every state-dict key of ``dataset``'s network (without the
    ``module.`` prefix and without ``num_batches_tracked``) and its shape."""
    with torch.device("meta"):
        model = SchpNet(DATASETS[dataset].num_classes)
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith(_NBT)}


@functools.cache
def norm_layer_names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(all norm layers, head norm layers)`` by state-dict name (119 and 13)."""
    with torch.device("meta"):
        norms = SchpNet(DATASETS["atr"].num_classes).norm_layers()
    return tuple(norms), tuple(name for name, m in norms.items() if m.leaky)


def read_checkpoint(path: str | Path, dataset: str = "auto", *,
                    allow_unsafe_pickle: bool = False,
                    ) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    """Read and validate a weights file.

    Returns the canonical state dict (the 2020 layout's 603 keys, no prefix,
    contiguous fp32 CPU tensors) and what the file is. ``dataset`` is
    ``"auto"`` or the configured atr/lip/pascal, which must match the file.
    ``allow_unsafe_pickle`` falls back to full unpickling (can run code from
    the file); never set it for files you did not make yourself.
    Raises :class:`EngineLoadError` for anything else.
    """
    path = Path(path)
    if dataset != "auto" and dataset not in DATASETS:
        raise _fail(path, f"unknown dataset {dataset!r} (expected auto, atr, lip or pascal)")
    sha256 = _hash_or_fail(path)
    raw = _torch_load(path, allow_unsafe_pickle)
    state, wrapped = _unwrap(raw, path)
    state, layout = _canonical(state)
    _check_keys(state, path)
    generation = _generation(wrapped, layout, path)
    found = _dataset_of(state, dataset, path)
    _check_shapes(state, expected_shapes(found), path)
    state = _clean_values(state, path)
    info = CheckpointInfo(str(path), found, generation, sha256, KNOWN_RELEASES.get(sha256))
    _log_identity(info)
    return state, info


def load_model(path: str | Path, dataset: str = "auto", device: str | torch.device = "cpu", *,
               allow_unsafe_pickle: bool = False) -> tuple[SchpNet, CheckpointInfo]:
    """The network with the file's weights, in eval mode on ``device``, and
    what the file is. See :func:`read_checkpoint` for what is accepted."""
    state, info = read_checkpoint(path, dataset, allow_unsafe_pickle=allow_unsafe_pickle)
    try:
        model = build_model(state, info.generation)
        model.to(device)
    except (RuntimeError, ValueError) as exc:
        raise _fail(path, f"could not be placed in the network ({_first_line(exc)})") from None
    return model, info


def build_model(state: Mapping[str, torch.Tensor], generation: str = GENERATION_2020) -> SchpNet:
    """A CPU network holding ``state`` (canonical keys, as from
    :func:`read_checkpoint`), with the norm maths of ``generation``.

    The tensors are adopted, not copied (the network is built on the meta
    device first), so loading costs no second copy of the weights.
    """
    num_classes = state[CLASSIFIER_KEY].shape[0]
    with torch.device("meta"):
        model = SchpNet(num_classes)
    full = dict(state)
    for name in norm_layer_names()[0]:
        full[name + _NBT] = torch.zeros((), dtype=torch.long)
    model.load_state_dict(full, strict=True, assign=True)
    model.set_abs_weight(generation == GENERATION_2020)
    model.requires_grad_(False)
    return model.eval()


def _hash_or_fail(path: Path) -> str:
    if not path.exists():
        raise _fail(path, "does not exist (set SCHP_WEIGHTS or segmentation.schp.weights to "
                          "an official SCHP checkpoint; see docs/schp.md)")
    if not path.is_file():
        raise _fail(path, "is not a regular file")
    try:
        if path.stat().st_size == 0:
            raise _fail(path, "is empty (0 bytes); download it again")
        return file_sha256(path)
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc.strerror or exc})") from None


def _torch_load(path: Path, allow_unsafe_pickle: bool) -> Any:
    """``torch.load`` with every failure turned into one clear message."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pickle-protocol chatter is not for operators
            return torch.load(path, map_location="cpu", weights_only=not allow_unsafe_pickle)
    except MemoryError:
        raise _fail(path, "does not fit in memory while loading") from None
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc.strerror or exc})") from None
    except Exception as exc:  # torch.load raises many types for bad input; all mean "bad file"  # noqa: BLE001
        raise _fail(path, _load_problem(exc)) from None


def _load_problem(exc: Exception) -> str:
    text = str(exc)
    if isinstance(exc, EOFError) or "unexpected EOF" in text or "truncated" in text \
            or "central directory" in text:
        return ("is truncated or corrupt (the data ends early); download it again and "
                "compare its size and SHA-256 with docs/schp.md")
    if isinstance(exc, pickle.UnpicklingError) and "Weights only load failed" in text:
        detail = text.partition("WeightsUnpickler error:")[2].strip().split("\n")[0]
        if "global" not in detail.lower():  # a pickle torch.save did not write
            return f"is not a PyTorch checkpoint (the safe loader stopped at: {detail[:120]})"
        return ("holds Python objects that safe (weights-only) loading refuses, because "
                "unpickling them could run code from the file. The official SCHP files "
                "hold only tensors, so this is not one of them. If you made this file "
                "yourself, re-save only its state dict: torch.save(sd, 'clean.pth')")
    return f"is not a PyTorch checkpoint ({type(exc).__name__}: {_first_line(exc)})"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def _unwrap(raw: Any, path: Path) -> tuple[Mapping[str, Any], bool]:
    """The state dict inside the file, and whether it came in a 'state_dict' wrapper."""
    wrapped = isinstance(raw, Mapping) and "state_dict" in raw
    state = raw["state_dict"] if wrapped else raw
    if not isinstance(state, Mapping) or not state:
        kind = type(state).__name__
        raise _fail(path, f"is not an SCHP checkpoint: it holds a {kind}, not a state dict "
                          "of tensors")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise _fail(path, "is not an SCHP checkpoint: entries that are not tensors, e.g. "
                          f"{', '.join(map(repr, bad[:SHOWN_KEYS]))}")
    return state, wrapped


@dataclass(frozen=True)
class _Layout:
    has_bn: bool     #: head norms under a ``.bn.`` segment (2019)
    nbt_count: int   #: num_batches_tracked entries of norm layers


def _canonical(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], _Layout]:
    """Strip ``module.``, move 2019 ``.bn.`` head keys to the 2020 names, drop
    norm ``num_batches_tracked``; report what was seen."""
    if all(k.startswith(MODULE_PREFIX) for k in state):
        state = {k[len(MODULE_PREFIX):]: v for k, v in state.items()}
    all_norms, head_norms = norm_layer_names()
    renames = {f"{n}.bn.{p}": f"{n}.{p}" for n in head_norms
               for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    out, has_bn = {}, False
    for key, value in state.items():
        if key in renames:
            key, has_bn = renames[key], True
        out[key] = value
    nbt = [n + _NBT for n in all_norms if n + _NBT in out]
    for key in nbt:
        del out[key]
    return out, _Layout(has_bn, len(nbt))


def _check_keys(state: Mapping[str, torch.Tensor], path: Path) -> None:
    expected = expected_shapes("atr")  # the key set is the same for every dataset
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if len(missing) == len(expected):
        raise _fail(path, f"is not an SCHP checkpoint: none of the {len(expected)} SCHP "
                          f"weights are in it (it holds e.g. {_some(unexpected)})")
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {_some(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {_some(unexpected)})")
    if problems:
        raise _fail(path, "does not match the SCHP network: " + "; ".join(problems))


def _some(keys: list[str]) -> str:
    return ", ".join(keys[:SHOWN_KEYS])


def _generation(wrapped: bool, layout: _Layout, path: Path) -> str:
    total_norms = len(norm_layer_names()[0])
    if wrapped and not layout.has_bn and layout.nbt_count == 0:
        return GENERATION_2020
    if not wrapped and layout.has_bn and layout.nbt_count == total_norms:
        return GENERATION_2019
    seen = (f"{'a' if wrapped else 'no'} 'state_dict' wrapper, "
            f"{'' if layout.has_bn else 'no '}'.bn.' head keys, "
            f"{layout.nbt_count} of {total_norms} num_batches_tracked entries")
    raise _fail(path, "has the SCHP weights but in neither official layout (2020: "
                      "{'state_dict': ...}, no '.bn.' keys, no num_batches_tracked; 2019: bare "
                      "dict with '.bn.' head keys and num_batches_tracked); this file has "
                      f"{seen}. Refusing to guess its normalisation maths")


def _dataset_of(state: Mapping[str, torch.Tensor], configured: str, path: Path) -> str:
    classifier = state[CLASSIFIER_KEY]
    classes = classifier.shape[0] if classifier.dim() > 0 else 0
    found = dataset_for_classes(classes)
    if found is None:
        choices = ", ".join(f"{d.num_classes} ({name})" for name, d in DATASETS.items())
        raise _fail(path, f"has a {classes}-class classifier; official SCHP models have "
                          f"{choices}")
    if configured not in ("auto", found):
        raise _fail(path, f"holds the {found} model ({classes} classes) but "
                          f"segmentation.schp.dataset (SCHP_DATASET) says {configured} "
                          f"({DATASETS[configured].num_classes} classes); set it to {found} "
                          f"or auto, or point SCHP_WEIGHTS at the {configured} weights")
    return found


def _check_shapes(state: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]],
                  path: Path) -> None:
    wrong = [f"{k} is {list(state[k].shape)}, expected {list(shape)}"
             for k, shape in expected.items() if tuple(state[k].shape) != shape]
    if wrong:
        raise _fail(path, f"does not match the SCHP network: {len(wrong)} tensors have the "
                          f"wrong shape ({'; '.join(wrong[:SHOWN_KEYS])})")


def _clean_values(state: Mapping[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Contiguous fp32 copies where needed; non-float or non-finite values refused."""
    out = {}
    for key, value in state.items():
        if not value.is_floating_point():
            raise _fail(path, f"tensor {key} holds {value.dtype}, not floating-point weights")
        value = value.to(torch.float32).contiguous()
        if not bool(torch.isfinite(value).all()):
            raise _fail(path, f"tensor {key} holds NaN or infinite values")
        out[key] = value
    return out


def _log_identity(info: CheckpointInfo) -> None:
    if info.release is not None:
        event(log, "schp_weights_known", path=info.path, sha256=info.sha256,
              release=info.release.file_name, dataset=info.dataset,
              generation=info.generation)
    else:
        event(log, "schp_weights_unknown_hash", logging.WARNING, path=info.path,
              sha256=info.sha256, dataset=info.dataset, generation=info.generation,
              note="not a known release hash; expected for Pascal and 2019 files, "
                   "whose hashes are not recorded")

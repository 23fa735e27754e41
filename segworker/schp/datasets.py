"""Facts about the three official SCHP models: classes, input size, label
names, left/right channel pairs, and the release files known by hash."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    """What differs between the ATR, LIP and Pascal-Person-Part models."""

    name: str
    num_classes: int
    input_size: int                        #: network input side, pixels (square)
    labels: tuple[str, ...]                #: label name by id
    flip_pairs: tuple[tuple[int, int], ...]  #: left/right channels swapped by the flip test


#: The three official models by dataset name (atr, lip, pascal).
DATASETS: dict[str, DatasetInfo] = {
    "atr": DatasetInfo(
        "atr", 18, 512,
        ("Background", "Hat", "Hair", "Sunglasses", "Upper-clothes", "Skirt", "Pants",
         "Dress", "Belt", "Left-shoe", "Right-shoe", "Face", "Left-leg", "Right-leg",
         "Left-arm", "Right-arm", "Bag", "Scarf"),
        ((9, 10), (12, 13), (14, 15))),
    "lip": DatasetInfo(
        "lip", 20, 473,
        ("Background", "Hat", "Hair", "Glove", "Sunglasses", "Upper-clothes", "Dress",
         "Coat", "Socks", "Pants", "Jumpsuits", "Scarf", "Skirt", "Face", "Left-arm",
         "Right-arm", "Left-leg", "Right-leg", "Left-shoe", "Right-shoe"),
        ((14, 15), (16, 17), (18, 19))),
    "pascal": DatasetInfo(
        "pascal", 7, 512,
        ("Background", "Head", "Torso", "Upper Arms", "Lower Arms", "Upper Legs",
         "Lower Legs"),
        ()),
}

#: Generation id of the current release files (2020+, InPlace-ABN, |w|+eps maths).
GENERATION_2020 = "2020"

#: Generation id of the first (2019) files with the same names (BatchNorm, raw weight).
GENERATION_2019 = "2019"


@dataclass(frozen=True)
class Release:
    """An official file identified by its SHA-256."""

    file_name: str
    dataset: str
    generation: str
    size: int  #: bytes


#: SHA-256 (hex) -> official file. Values from a third-party verification log
#: (SPEC §1); the sizes were reproduced exactly from the manifests.
KNOWN_RELEASES: dict[str, Release] = {
    "e9d7c91ce3b4e7133df56b599fc817b533e3439c5e8d282a59126d2fda339a2a":
        Release("exp-schp-201908301523-atr.pth", "atr", GENERATION_2020, 267_445_237),
    "24fa3254ceeb74c8435458994a64b522fb439a3635b7b86ff470457e0413da00":
        Release("exp-schp-201908261155-lip.pth", "lip", GENERATION_2020, 267_449_349),
}


def dataset_for_classes(num_classes: int) -> str | None:
    """The dataset whose model has ``num_classes`` outputs, or None."""
    for info in DATASETS.values():
        if info.num_classes == num_classes:
            return info.name
    return None


def flip_permutation(dataset: str) -> list[int]:
    """Channel order that swaps each left/right pair of ``dataset`` (identity
    for the others)."""
    info = DATASETS[dataset]
    order = list(range(info.num_classes))
    for left, right in info.flip_pairs:
        order[left], order[right] = right, left
    return order

"""The parser's classes, and how the CCP-59 training labels map onto them.

The network predicts :data:`CLASS_NAMES`; which of them make the upper and the
lower mask is configuration (``segmentation.parser.labels`` in config.yaml),
as for SCHP. A one-piece garment (dress, romper, jumpsuit, swimsuit) is its
own class, in both masks by default, as SCHP's ATR ``dress`` label is.
"""

from __future__ import annotations

import numpy as np

#: Class id -> name, in the order of the network's output channels.
CLASS_NAMES = ("background", "upper_garment", "lower_garment", "one_piece",
               "skin", "hair", "shoes", "accessory")

#: Class ids of the garments (upper, lower, one-piece) in the network's output.
UPPER_ID, LOWER_ID, ONE_PIECE_ID = (CLASS_NAMES.index(n)
                                    for n in ("upper_garment", "lower_garment", "one_piece"))

#: CCP-59 class ids (the training set's labels) behind each parser class.
#: CCP's ``suit`` is usually only the jacket (its trousers are ``pants``).
CCP_GROUPS: dict[str, tuple[int, ...]] = {
    "upper_garment": (4, 5, 6, 8, 10, 11, 13, 18, 22, 24, 26, 37, 38, 46, 48, 49, 51, 52, 54, 55),
    "lower_garment": (3, 25, 27, 30, 31, 40, 42, 44, 45, 53),
    "one_piece": (14, 23, 35, 50),
    "skin": (41,),
    "hair": (19,),
    "shoes": (7, 12, 16, 21, 28, 32, 36, 39, 43, 58),
    "accessory": (1, 2, 9, 15, 17, 20, 29, 33, 34, 47, 56, 57),
}

#: Number of CCP-59 classes (ids 0-58).
CCP_CLASSES = 59


def ccp_lookup() -> np.ndarray:
    """256-entry uint8 table: CCP-59 id -> parser class id (0 for background
    and for any id outside CCP-59)."""
    table = np.zeros(256, dtype=np.uint8)
    for name, ids in CCP_GROUPS.items():
        table[list(ids)] = CLASS_NAMES.index(name)
    return table


#: A one-piece garment worn under a top (upper-garment pixels at least this
#: share of its own) is trained as the top and skirt it looks like (see
#: :func:`split_layered_one_piece`).
LAYERED_SHARE = 0.3


def split_layered_one_piece(classes: np.ndarray) -> np.ndarray:
    """A parser class map with a layered one-piece garment split: where the
    map's upper-garment pixels are at least :data:`LAYERED_SHARE` of its
    one-piece pixels, one-piece pixels above the upper garment's median row
    become upper garment and the rest lower garment. Other maps are returned
    unchanged (the same array).

    CCP labels a dress worn under a sweater, a jacket or a coat ``dress``,
    though all that shows of it is what a skirt would show: a training photo
    of that kind teaches the network that a top over a skirt is one-piece,
    and a one-piece pixel is in *both* masks, so the skirt of a two-piece
    outfit would land in the upper mask (the largest error of the first
    weights). Split, the training labels say what the photo shows: a top and
    below it a skirt, which is also what a try-on of either one needs. A
    dress seen as a dress (little or no top over it) stays one-piece.
    """
    one_piece = classes == ONE_PIECE_ID
    upper_rows = np.nonzero(classes == UPPER_ID)[0]
    if not one_piece.any() or upper_rows.size < LAYERED_SHARE * one_piece.sum():
        return classes
    waist = int(np.median(upper_rows))
    out = classes.copy()
    rows = np.arange(classes.shape[0])[:, None]
    out[one_piece & (rows <= waist)] = UPPER_ID
    out[one_piece & (rows > waist)] = LOWER_ID
    return out

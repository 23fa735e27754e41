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

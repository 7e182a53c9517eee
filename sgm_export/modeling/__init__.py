"""The code that module checkpoints carry, and the facts about it the rest of the package needs.

`modeling_sgm.py` in this folder is copied verbatim into every module export; it must not import
`sgm_export`. The constants here mirror the ones in that file.
"""

from functools import cache
from importlib.resources import files
from pathlib import Path

from sgm_export.hashing import sha256_file
from sgm_export.layout import MODELING_FILE

SGM_MODEL_TYPE = "sgm"
WEIGHTS_VARIANT = "sgm"
SCALE_SUFFIX = ".sgm_scale"
SHIFT_SUFFIX = ".sgm_shift"
FORMAT_VERSION = 1


def shipped_modeling_path() -> Path:
    """The package's own copy of modeling_sgm.py."""
    return Path(str(files("sgm_export.modeling").joinpath(MODELING_FILE)))


@cache
def shipped_modeling_sha256() -> str:
    """SHA-256 of the shipped modeling_sgm.py; exports record it and verify checks it."""
    return sha256_file(shipped_modeling_path())

"""The code that module checkpoints carry, and the facts about it the rest of the package needs.

`modeling_sgm.py` in this folder is copied verbatim into every module export; it must not import
`sgm_export`. The constants here mirror the ones in that file.
"""

import hashlib
from functools import cache
from importlib.resources import files
from pathlib import Path

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


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

"""Where sgm-export keeps what it builds once and reuses: `$SGM_EXPORT_CACHE`, else
`~/.cache/sgm-export`."""

import os
from pathlib import Path


def cache_root() -> Path:
    """The cache directory (not created here)."""
    configured = os.environ.get("SGM_EXPORT_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "sgm-export"

"""Running the real `sgm-export` command in a subprocess, as users do."""

import os
import subprocess
import sys
from dataclasses import dataclass


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


def sgm(*args: str, cwd=None, env: dict | None = None, timeout: int = 600) -> CliResult:
    """Run `python -m sgm_export ARGS...` and capture everything."""
    full_env = {**os.environ, "SGM_EXPORT_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    done = subprocess.run(
        [sys.executable, "-m", "sgm_export", *map(str, args)], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def assert_clean_usage_error(result: CliResult, *fragments: str) -> None:
    """Exit code 2, exactly one line on stderr that mentions every fragment, no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.code == 2, (result.code, result.stderr)
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), (fragment, lines[0])

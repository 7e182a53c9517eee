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


def cli_env(env: dict | None = None) -> dict[str, str]:
    """The environment of a CLI run in tests: offline, no progress bars, and one thread, since
    tiny models run many times faster without thread hand-offs on a shared machine."""
    return {"OMP_NUM_THREADS": "1", **os.environ, "SGM_EXPORT_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1", **(env or {})}


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sgm_export", *map(str, args)]


def sgm(*args: str, cwd=None, env: dict | None = None, timeout: int = 600) -> CliResult:
    """Run `python -m sgm_export ARGS...` and capture everything."""
    done = subprocess.run(cli_command(*args), cwd=cwd, env=cli_env(env), capture_output=True, text=True, timeout=timeout)
    return CliResult(done.returncode, done.stdout, done.stderr)


def assert_clean_usage_error(result: CliResult, *fragments: str) -> None:
    """Exit code 2, exactly one line on stderr that mentions every fragment, no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.code == 2, (result.code, result.stderr)
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), (fragment, lines[0])

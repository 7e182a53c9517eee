"""The `sgm-export` command line.

Problems with the input end with one line on stderr (what is wrong; how to fix it) and exit
code 2, without a traceback unless `--debug` is given. Results go to stdout, progress to stderr.
Each subcommand lives in its own module under `sgm_export/commands/`.
"""

import argparse
import logging
import os
import sys
import warnings

from sgm_export import __version__
from sgm_export.commands import eval as eval_command
from sgm_export.commands import export, glasses, run, score, sweep, verify
from sgm_export.errors import SgmError

PROG = "sgm-export"
EXIT_USAGE = 2
COMMANDS = (run, score, glasses, export, verify, eval_command, sweep)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that points to --help, not the whole usage block."""

    def error(self, message: str) -> None:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser with every subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks and library logs")
    common.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    parser = OneLineParser(prog=PROG, description="Bake SGM safety glasses into model checkpoints.", parents=[common])
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    for command in COMMANDS:
        command.register(commands, common)
    return parser


def _quiet_libraries(debug: bool, quiet: bool) -> None:
    """Library chatter (weight-loading bars, deprecation notes) hides our own output."""
    if quiet:
        os.environ["SGM_EXPORT_NO_PROGRESS"] = "1"
    if debug:
        logging.basicConfig(level=logging.INFO)
        return
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `sgm-export` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        _quiet_libraries(debug, getattr(args, "quiet", False))
        return args.handler(args)
    except SgmError as error:
        if debug:
            raise
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; no partial output was left behind", file=sys.stderr)
        return 130
    except Exception as error:
        if debug:
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(
            f"{PROG}: internal error: {type(error).__name__}: {message} (rerun with --debug for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1

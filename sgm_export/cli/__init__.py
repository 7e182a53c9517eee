"""The `sgm-export` command line.

Problems with the input end with one line on stderr (what is wrong; how to fix it) and exit
code 2, without a traceback unless `--debug` is given (which adds it, and keeps the code 2). Results go to stdout, progress to stderr.
Each subcommand lives in its own module under `sgm_export/cli/commands/`.
"""

import argparse
import logging
import os
import signal
import sys
import threading
import traceback
import warnings

from sgm_export import __version__
from sgm_export.cli.commands import card, collect, export, glasses, inspect, onnx, push, run, score, sweep, verify
from sgm_export.cli.commands import eval as eval_command
from sgm_export.errors import SgmError, first_line

PROG = "sgm-export"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
COMMANDS = (run, collect, score, glasses, export, onnx, inspect, verify, eval_command, sweep, card, push)


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
    """Library chatter (weight-loading bars, deprecation notes) hides our own output.

    Set through the environment, read when transformers is first imported, so that a command
    that fails on a bad argument does so before importing torch and transformers at all.
    """
    if quiet:
        os.environ["SGM_EXPORT_NO_PROGRESS"] = "1"
    if debug:
        logging.basicConfig(level=logging.INFO)
        return
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    warnings.filterwarnings("ignore")
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"


def _one_line(text: str) -> str:
    """Messages can quote user input or library text with line breaks; the contract is one line."""
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `sgm-export` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (a scheduler, `timeout`, `kill`) unwinds like Ctrl-C, so temporaries are removed.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        _quiet_libraries(debug, getattr(args, "quiet", False))
        return args.handler(args)
    except SgmError as error:
        if debug:
            traceback.print_exc()  # the exit code stays that of a user error
        print(_one_line(f"{PROG}: error: {error}"), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; no partial output was left behind", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if debug:
            raise
        print(
            _one_line(
                f"{PROG}: internal error: {type(error).__name__}: {first_line(error)} "
                "(rerun with --debug for the traceback, and please report it)"
            ),
            file=sys.stderr,
        )
        return 1

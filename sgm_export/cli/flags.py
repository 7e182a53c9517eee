"""Flags that several commands share, defined once: what a model may do when it loads, replacing
an output, and the checks' settings, with choices and defaults taken from where they are owned
(the option models' types, `options.VERIFY_TOLERANCE`), so a command cannot drift.

Light imports only: the parser is built before the libraries are told to be quiet
(cli/__init__.py), so nothing imported here may import huggingface_hub or transformers."""

import argparse
from typing import get_args

from sgm_export.options import VERIFY_TOLERANCE, Device, ExportFormat

CHECKPOINT_FORMATS = [name for name in get_args(ExportFormat) if name != "onnx"]  # `export` writes these; `onnx` has its own command


def add_model_access(parser: argparse.ArgumentParser, whose: str = "the model") -> None:
    """--allow-pickle and --trust-remote-code: both off unless the user has read what would run."""
    parser.add_argument("--allow-pickle", action="store_true", help=f"allow .bin/.pt pickle checkpoints of {whose} (pickles can run code)")
    parser.add_argument("--trust-remote-code", action="store_true", help=f"allow {whose}'s own remote code to run")


def add_force(parser: argparse.ArgumentParser, target: str = "DIR") -> None:
    """--force: outputs are never replaced by accident."""
    parser.add_argument("--force", action="store_true", help=f"replace {target} if it exists")


def add_checkpoint_format(parser: argparse.ArgumentParser) -> None:
    """--format of `export`: one of the checkpoint formats a recipe's export.formats accepts."""
    parser.add_argument(
        "--format",
        choices=CHECKPOINT_FORMATS,
        default=CHECKPOINT_FORMATS[0],
        help="module (custom code) or folded (plain weights) (default: %(default)s)",
    )


def add_verify_settings(parser: argparse.ArgumentParser) -> None:
    """--tolerance and --device of `verify`, with the verify stage's own default tolerance."""
    parser.add_argument(
        "--tolerance", type=float, default=VERIFY_TOLERANCE, help="largest allowed |logit difference| (default: %(default)g)"
    )
    devices = [name for name in get_args(Device) if name != "auto"]
    parser.add_argument("--device", default=devices[0], choices=devices, help="where to run both models (default: %(default)s)")

"""`sgm-export verify DIR --base MODEL`: check an export's logits against the base model."""

import argparse
from pathlib import Path

from sgm_export.cli.flags import add_model_access, add_verify_settings

EXIT_VERIFY_FAILED = 1


def register(commands, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("verify", parents=[common], help="check an export's logits against the base model")
    parser.add_argument("export_dir", type=Path, metavar="DIR", help="a module or folded export")
    parser.add_argument("--base", required=True, metavar="MODEL", help="the model the export was made from")
    add_verify_settings(parser)
    add_model_access(parser, "the base model")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sgm_export.verify import verify_export

    result = verify_export(
        args.export_dir,
        args.base,
        tolerance=args.tolerance,
        device=args.device,
        allow_pickle=args.allow_pickle,
        trust_remote_code=args.trust_remote_code,
    )
    print(result.describe())
    return 0 if result.passed else EXIT_VERIFY_FAILED

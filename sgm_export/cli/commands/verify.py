"""`sgm-export verify DIR --base MODEL`: check an export's logits against the base model."""

import argparse
from pathlib import Path

EXIT_VERIFY_FAILED = 1


def register(commands, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("verify", parents=[common], help="check an export's logits against the base model")
    parser.add_argument("export_dir", type=Path, metavar="DIR", help="a module or folded export")
    parser.add_argument("--base", required=True, metavar="MODEL", help="the model the export was made from")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed |logit difference| (default: %(default)g)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to run both models (default: %(default)s)")
    parser.add_argument("--allow-pickle", action="store_true", help="allow a .bin/.pt pickle base model (pickles can run code)")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow the base model's own remote code to run")
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

"""`sgm-export verify DIR --base MODEL`: check an export's logits against the base model."""

import argparse
from pathlib import Path

EXIT_VERIFY_FAILED = 1


def register(commands, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("verify", parents=[common], help="check an export's logits against the base model")
    parser.add_argument("export_dir", type=Path, metavar="DIR")
    parser.add_argument("--base", required=True, metavar="MODEL")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed |logit difference| (default: 1e-4)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to run both models (default: cpu)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sgm_export.verify import verify_export

    result = verify_export(args.export_dir, args.base, tolerance=args.tolerance, device=args.device)
    print(result.describe())
    return 0 if result.passed else EXIT_VERIFY_FAILED

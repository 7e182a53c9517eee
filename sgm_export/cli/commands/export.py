"""`sgm-export export MODEL --glasses FILE --out DIR`: write a checkpoint that carries the glasses."""

import argparse
from pathlib import Path


def register(commands, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("export", parents=[common], help="write a checkpoint that carries the glasses")
    parser.add_argument("model", metavar="MODEL", help="the base model the glasses were made for: Hub id, local directory, or 'demo'")
    parser.add_argument("--glasses", type=Path, required=True, metavar="FILE", help="the file `sgm-export glasses --out` wrote")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the checkpoint (must not exist; see --force)")
    parser.add_argument(
        "--format",
        choices=["module", "folded"],
        default="module",
        help="module (custom code) or folded (plain weights) (default: %(default)s)",
    )
    parser.add_argument("--link", action="store_true", help="hard-link unchanged weight files instead of copying them")
    parser.add_argument("--force", action="store_true", help="replace DIR if it exists")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sgm_export.outputs import check_target_free

    check_target_free(args.out, args.force)

    from sgm_export.export import export_checkpoint
    from sgm_export.glasses import describe, load_glasses

    glasses = load_glasses(args.glasses)
    export_checkpoint(args.model, glasses, args.out, format=args.format, force=args.force, link=args.link)
    print(describe(glasses))
    print(f"wrote {args.format} checkpoint {args.out}")
    return 0

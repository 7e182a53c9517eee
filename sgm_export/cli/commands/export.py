"""`sgm-export export MODEL --glasses FILE --out DIR`: write a checkpoint that carries the glasses."""

import argparse
from pathlib import Path

from sgm_export.cli.flags import add_checkpoint_format, add_force


def register(commands, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("export", parents=[common], help="write a checkpoint that carries the glasses")
    parser.add_argument("model", metavar="MODEL", help="the base model the glasses were made for: Hub id, local directory, or 'demo'")
    parser.add_argument("--glasses", type=Path, required=True, metavar="FILE", help="the file `sgm-export glasses --out` wrote")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the checkpoint (must not exist; see --force)")
    add_checkpoint_format(parser)
    parser.add_argument("--link", action="store_true", help="hard-link unchanged weight files instead of copying them")
    add_force(parser)
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

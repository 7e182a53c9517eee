"""`sgm-export glasses SCORES_DIR --out FILE`: turn scores into per-neuron scales."""

import argparse
from pathlib import Path

from sgm_export.cli.flags import add_force
from sgm_export.cli.options import add_option_flags, options_from_args
from sgm_export.options import GlassesOptions


def register(commands, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("glasses", parents=[common], help="turn scores into per-neuron scales")
    parser.add_argument("scores", type=Path, metavar="SCORES_DIR", help="the folder `sgm-export score --out` wrote")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="the glasses file to write (.safetensors)")
    add_option_flags(parser, GlassesOptions)
    add_force(parser, "FILE")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sgm_export.outputs import check_outside_inputs, check_target_free

    options = options_from_args(GlassesOptions, args)
    check_target_free(args.out, args.force)
    check_outside_inputs(args.out, [args.scores])

    from sgm_export.glasses import compute_glasses, describe, save_glasses
    from sgm_export.score.files import load_scores

    glasses = compute_glasses(load_scores(args.scores), options)
    save_glasses(glasses, args.out, force=args.force)
    print(describe(glasses))
    print(f"wrote {args.out}")
    return 0

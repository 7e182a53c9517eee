"""`sgm-export run RECIPE.yaml`: every stage of a recipe in one go."""

import argparse
from pathlib import Path


def register(commands, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("run", parents=[common], help="all stages of a recipe in one go")
    parser.add_argument("recipe", type=Path, metavar="RECIPE.yaml")
    parser.add_argument("--out", type=Path, help="output directory (overrides the recipe's out)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a recipe value, e.g. glasses.top_k=500"
    )
    parser.add_argument("--force", action="store_true", help="replace the output directory if it exists")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sgm_export.recipe import load_recipe

    overrides = list(args.overrides) + ([f"out={args.out}"] if args.out else [])
    recipe = load_recipe(args.recipe, overrides)  # a bad recipe is reported before torch is imported

    from sgm_export.pipeline import run_recipe
    from sgm_export.report_cli import print_run_summary

    summary = run_recipe(recipe, force=args.force)
    print_run_summary(summary)
    return 0

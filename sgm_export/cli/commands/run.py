"""`sgm-export run RECIPE.yaml`: every stage of a recipe in one go, then the push to the Hub when
the recipe has `push.repo_id` (the token is checked first, so a missing one fails in seconds)."""

import argparse
from pathlib import Path

from sgm_export.cli.flags import add_force
from sgm_export.errors import SgmError


def register(commands, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("run", parents=[common], help="all stages of a recipe in one go")
    parser.add_argument(
        "recipe", type=Path, metavar="RECIPE.yaml", help="the recipe: model, data, glasses, export formats (docs/recipes.md)"
    )
    parser.add_argument("--out", type=Path, help="output directory (overrides the recipe's out)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a recipe value, e.g. glasses.top_k=500"
    )
    add_force(parser, "the output directory")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sgm_export.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides, out=args.out)  # a bad recipe is reported before torch is imported

    from sgm_export.score.distributed import launched_share

    if launched_share().world > 1:
        raise SgmError(
            "run is one process, but torchrun started several",
            "score with `torchrun ... -m sgm_export score`, then run glasses and export once (see docs/scale.md)",
        )

    from sgm_export.cli.report import print_run_summary
    from sgm_export.pipeline import pushed_folder, run_recipe
    from sgm_export.publish.hub import check_repo_id, hub_account, push_folder

    to_push = pushed_folder(recipe)
    if to_push is not None:  # a missing token or a bad repository id must not wait for the end of the run
        check_repo_id(recipe.push.repo_id)
        hub_account()
    summary = run_recipe(recipe, force=args.force)
    print_run_summary(summary)
    if to_push is not None:
        try:
            push_folder(to_push, recipe.push.repo_id, private=recipe.push.private, revision=recipe.push.revision)
        except SgmError as error:
            raise SgmError(
                f"the run finished in {recipe.out} but {error.problem}",
                f"{error.fix}; then `sgm-export push {to_push} {recipe.push.repo_id}`",
            ) from error
    return 0

"""The `sgm-export` command line.

Problems with the input end with one line on stderr (what is wrong; how to fix it) and exit
code 2, without a traceback unless `--debug` is given. Results go to stdout, progress to stderr.
"""

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

from sgm_export import __version__
from sgm_export.cli_options import add_option_flags, options_from_args
from sgm_export.errors import SgmError
from sgm_export.options import GlassesOptions, ScoreOptions

PROG = "sgm-export"
EXIT_USAGE = 2
EXIT_VERIFY_FAILED = 1


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that points to --help, not the whole usage block."""

    def error(self, message: str) -> None:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser with every subcommand of the CLI contract."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks and library logs")
    common.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    parser = OneLineParser(prog=PROG, description="Bake SGM safety glasses into model checkpoints.", parents=[common])
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)

    run = commands.add_parser("run", parents=[common], help="all stages of a recipe in one go")
    run.add_argument("recipe", type=Path, metavar="RECIPE.yaml")
    run.add_argument("--out", type=Path, help="output directory (overrides the recipe's out)")
    run.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a recipe value, e.g. glasses.top_k=500"
    )
    run.add_argument("--force", action="store_true", help="replace the output directory if it exists")
    run.set_defaults(handler=_run)

    score = commands.add_parser("score", parents=[common], help="rate every decoder MLP neuron by AUROC")
    score.add_argument("model", metavar="MODEL", help="Hub id, local directory, or 'demo'")
    score.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="SRC",
        help="labelled examples: .jsonl, .csv, hf:NAME[:SPLIT], builtin:NAME[:SPLIT]",
    )
    score.add_argument("--out", type=Path, required=True, metavar="DIR")
    add_option_flags(score, ScoreOptions)
    _add_safety_flags(score)
    score.add_argument("--force", action="store_true", help="replace DIR if it exists")
    score.set_defaults(handler=_score)

    glasses = commands.add_parser("glasses", parents=[common], help="turn scores into per-neuron scales")
    glasses.add_argument("scores", type=Path, metavar="SCORES_DIR")
    glasses.add_argument("--out", type=Path, required=True, metavar="FILE")
    add_option_flags(glasses, GlassesOptions)
    glasses.add_argument("--force", action="store_true", help="replace FILE if it exists")
    glasses.set_defaults(handler=_glasses)

    export = commands.add_parser("export", parents=[common], help="write a checkpoint that carries the glasses")
    export.add_argument("model", metavar="MODEL")
    export.add_argument("--glasses", type=Path, required=True, metavar="FILE")
    export.add_argument("--out", type=Path, required=True, metavar="DIR")
    export.add_argument(
        "--format", choices=["module", "folded"], default="module", help="module (custom code, default) or folded (plain weights)"
    )
    export.add_argument("--link", action="store_true", help="hard-link unchanged weight files instead of copying them")
    export.add_argument("--force", action="store_true", help="replace DIR if it exists")
    export.set_defaults(handler=_export)

    verify = commands.add_parser("verify", parents=[common], help="check an export's logits against the base model")
    verify.add_argument("export_dir", type=Path, metavar="DIR")
    verify.add_argument("--base", required=True, metavar="MODEL")
    verify.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed |logit difference| (default: 1e-4)")
    verify.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to run both models (default: cpu)")
    verify.set_defaults(handler=_verify)
    return parser


def _add_safety_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-pickle", action="store_true", help="allow .bin/.pt pickle checkpoints (they can run code)")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow the model's own remote code to run")


def _run(args: argparse.Namespace) -> int:
    from sgm_export.pipeline import run_recipe
    from sgm_export.recipe import load_recipe
    from sgm_export.report_cli import print_run_summary

    overrides = list(args.overrides) + ([f"out={args.out}"] if args.out else [])
    recipe = load_recipe(args.recipe, overrides)
    summary = run_recipe(recipe, force=args.force)
    print_run_summary(summary)
    return 0


def _score(args: argparse.Namespace) -> int:
    from sgm_export.data.sources import read_sources
    from sgm_export.models.load import load_model
    from sgm_export.outputs import check_target_free
    from sgm_export.score.files import save_scores
    from sgm_export.score.runner import score_examples

    options = options_from_args(ScoreOptions, args)
    check_target_free(args.out, args.force)
    examples = read_sources(args.data, options.limit)
    loaded = load_model(args.model, options.device, options.dtype, args.allow_pickle, args.trust_remote_code)
    scores = score_examples(loaded, examples, options)
    save_scores(scores, args.out, force=args.force)
    summary = scores.summary(top=5)
    print(f"scored {summary['n_neurons']} neurons in {summary['n_layers']} layers on {len(examples)} examples")
    print(f"neurons with AUROC > 0.5: {summary['experts_total']['auroc>0.5']}; top AUROC: {[e['auroc'] for e in summary['top_experts']]}")
    print(f"wrote {args.out}")
    return 0


def _glasses(args: argparse.Namespace) -> int:
    from sgm_export.glasses import compute_glasses, describe, save_glasses
    from sgm_export.outputs import check_target_free
    from sgm_export.score.files import load_scores

    options = options_from_args(GlassesOptions, args)
    check_target_free(args.out, args.force)
    glasses = compute_glasses(load_scores(args.scores), options)
    save_glasses(glasses, args.out, force=args.force)
    print(describe(glasses))
    print(f"wrote {args.out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from sgm_export.export import export_checkpoint
    from sgm_export.glasses import describe, load_glasses

    glasses = load_glasses(args.glasses)
    export_checkpoint(args.model, glasses, args.out, format=args.format, force=args.force, link=args.link)
    print(describe(glasses))
    print(f"wrote {args.format} checkpoint {args.out}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from sgm_export.verify import verify_export

    result = verify_export(args.export_dir, args.base, tolerance=args.tolerance, device=args.device)
    print(result.describe())
    return 0 if result.passed else EXIT_VERIFY_FAILED


def _quiet_libraries(debug: bool, quiet: bool) -> None:
    """Library chatter (weight-loading bars, deprecation notes) hides our own output."""
    if quiet:
        os.environ["SGM_EXPORT_NO_PROGRESS"] = "1"
    if debug:
        logging.basicConfig(level=logging.INFO)
        return
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `sgm-export` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        _quiet_libraries(debug, getattr(args, "quiet", False))
        return args.handler(args)
    except SgmError as error:
        if debug:
            raise
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; no partial output was left behind", file=sys.stderr)
        return 130
    except Exception as error:
        if debug:
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(
            f"{PROG}: internal error: {type(error).__name__}: {message} (rerun with --debug for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1

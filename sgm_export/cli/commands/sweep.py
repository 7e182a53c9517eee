"""`sgm-export sweep MODEL --scores DIR --out DIR`: many glasses settings, one trade-off table."""

import argparse
from pathlib import Path

from sgm_export.cli.flags import add_force, add_model_access
from sgm_export.cli.options import add_option_flags, options_from_args
from sgm_export.options import EvalOptions


def register(commands, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("sweep", parents=[common], help="evaluate many glasses settings: harmful rate vs perplexity")
    parser.add_argument("model", metavar="MODEL", help="the base model the scores were computed on")
    parser.add_argument("--scores", type=Path, required=True, metavar="DIR", help="scores folder from `sgm-export score`")
    parser.add_argument(
        "--setting",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE,...",
        help="glasses settings to evaluate, e.g. mode=det0,top_k=500 (repeat; default: a built-in grid)",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for sweep.json, sweep.md and the trade-off plot")
    add_option_flags(parser, EvalOptions)
    add_model_access(parser)
    add_force(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sgm_export.arch import decoder_widths
    from sgm_export.cli.report import print_sweep_summary
    from sgm_export.evaluate.runner import evaluate_variants
    from sgm_export.evaluate.setup import header, load_inputs
    from sgm_export.evaluate.sweep import DEFAULT_SETTINGS, parse_setting, sweep_rows, sweep_variants, write_sweep
    from sgm_export.models.load import load_model
    from sgm_export.models.preflight import check_model
    from sgm_export.outputs import check_target_free
    from sgm_export.score.files import load_scores

    options = options_from_args(EvalOptions, args)
    check_target_free(args.out, args.force)
    check_model(args.model, args.allow_pickle, args.trust_remote_code)  # audit the folder before anything is loaded
    settings = [parse_setting(text) for text in (args.settings or DEFAULT_SETTINGS)]
    scores = load_scores(args.scores)
    inputs = load_inputs(options)
    base = load_model(args.model, options.device, options.dtype, args.allow_pickle, args.trust_remote_code, options.device_map)
    variants = sweep_variants(base, scores, settings, options.preprompt)
    for variant in variants[1:]:
        variant.glasses.check_fits(decoder_widths(base.model, base.family), f"{args.model}")
    results = evaluate_variants(variants, inputs.prompt_sets, inputs.neutral, inputs.judges, options)
    rows = sweep_rows(results)
    write_sweep(args.out, rows, header(args.model, args.model, inputs, options, None), results, force=args.force)
    print_sweep_summary(rows)
    print(f"wrote {args.out}")
    return 0

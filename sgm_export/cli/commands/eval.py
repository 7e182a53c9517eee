"""`sgm-export eval MODEL_OR_DIR --out DIR`: harmful rate and fluency, before and after the glasses.

MODEL_OR_DIR is either an export (module or folded checkpoint; `--base MODEL` names the model it
was made from) or the base model itself with `--glasses FILE` (applied by hooks: one model in
memory). With `--preprompt TEXT` the safety pre-prompt is evaluated alone and with the glasses.
"""

import argparse
from pathlib import Path

from sgm_export.cli.flags import add_force, add_model_access
from sgm_export.cli.options import add_option_flags, options_from_args
from sgm_export.options import EvalOptions


def register(commands, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("eval", parents=[common], help="harmful rate and fluency, before and after the glasses")
    parser.add_argument("model", metavar="MODEL_OR_DIR", help="an export, or the base model with --glasses")
    parser.add_argument("--base", metavar="MODEL", help="the model an export was made from (needed for exports)")
    parser.add_argument("--glasses", type=Path, metavar="FILE", help="glasses to apply to MODEL_OR_DIR by hooks")
    parser.add_argument("--scores", type=Path, metavar="DIR", help="scores folder, for the AUROC plot")
    parser.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder for report.json, report.md, generations.jsonl and the plots"
    )
    add_option_flags(parser, EvalOptions)
    add_model_access(parser)
    add_force(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sgm_export.arch import decoder_widths
    from sgm_export.cli.report import print_eval_summary
    from sgm_export.errors import SgmError
    from sgm_export.evaluate.report import build_report, write_report
    from sgm_export.evaluate.runner import evaluate_variants
    from sgm_export.evaluate.setup import comparison_variants, header, load_inputs, require_same_tokenizer
    from sgm_export.export.folder import export_glasses
    from sgm_export.glasses import load_glasses
    from sgm_export.models.load import load_model
    from sgm_export.models.preflight import check_model
    from sgm_export.outputs import check_target_free
    from sgm_export.score.files import load_scores

    options = options_from_args(EvalOptions, args)
    check_target_free(args.out, args.force)
    for name in dict.fromkeys(filter(None, (args.model, args.base))):  # audit both folders before anything is loaded
        check_model(name, args.allow_pickle, args.trust_remote_code)
    scores = load_scores(args.scores) if args.scores else None
    if args.glasses is not None:
        if args.base is not None:
            raise SgmError(
                "--glasses and --base were both given", "pass the base model as MODEL_OR_DIR with --glasses, or an export with --base"
            )
        glasses, base_name = load_glasses(args.glasses), args.model
    else:
        if args.base is None:
            raise SgmError(
                "--base is missing", "name the model the export was made from (--base MODEL), or pass a base model with --glasses FILE"
            )
        glasses, base_name = export_glasses(Path(args.model)), args.base
    inputs = load_inputs(options)
    base = load_model(base_name, options.device, options.dtype, args.allow_pickle, args.trust_remote_code, options.device_map)
    variant = None
    if args.glasses is None:
        variant = load_model(args.model, options.device, options.dtype, args.allow_pickle, args.trust_remote_code, options.device_map)
        require_same_tokenizer(base, variant)
    glasses.check_fits(decoder_widths(base.model, base.family), base_name)
    variants = comparison_variants(base, variant, glasses, options.preprompt)
    results = evaluate_variants(variants, inputs.prompt_sets, inputs.neutral, inputs.judges, options)
    report = build_report(results, header(args.model, base_name, inputs, options, glasses))
    write_report(args.out, report, results, glasses, scores, force=args.force)
    print_eval_summary(report)
    print(f"wrote {args.out}")
    return 0

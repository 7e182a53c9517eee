"""`sgm-export collect MODEL --data SRC --out DIR`: the model's own continuations of toxic prompts,
labelled by a judge, as domain-matched scoring data (see `sgm_export/collect.py`)."""

import argparse
from pathlib import Path

from sgm_export.cli.flags import add_force, add_model_access
from sgm_export.cli.options import add_option_flags, options_from_args
from sgm_export.options import CollectOptions


def register(commands, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "collect", parents=[common], help="continue toxic prompts with the model, label the continuations with a judge"
    )
    parser.add_argument("model", metavar="MODEL", help="Hub id, local directory, or 'demo'")
    parser.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="SRC",
        help="toxic prompts to continue (their 'text'): .jsonl, .csv, hf:NAME[:SPLIT], builtin:NAME[:SPLIT], e.g. builtin:rtp-toxic",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for continuations.jsonl and collect.json")
    add_option_flags(parser, CollectOptions)
    add_model_access(parser)
    add_force(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sgm_export.collect import collect_cached, copy_collection, read_summary
    from sgm_export.outputs import check_outside_inputs, check_target_free

    options = options_from_args(CollectOptions, args)
    check_target_free(args.out, args.force)
    check_outside_inputs(args.out, [Path(spec) for spec in args.data])
    folder, reused = collect_cached(args.model, args.data, options, args.allow_pickle, args.trust_remote_code)
    copy_collection(folder, args.out, args.force)
    summary = read_summary(folder)
    origin = "reused from the cache" if reused else f"from {summary['n_continuations']} continuations of {summary['n_prompts']} prompts"
    rows = summary["rows"]
    print(
        f"{rows['toxic']} toxic and {rows['non_toxic']} non-toxic rows ({summary['clean_prompts_added']} of them clean prompts), {origin}"
    )
    print(f"wrote {args.out}; score with --data {args.out / 'continuations.jsonl'}")
    return 0

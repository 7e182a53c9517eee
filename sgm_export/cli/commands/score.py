"""`sgm-export score MODEL --data SRC --out DIR`: rate every decoder MLP neuron by AUROC."""

import argparse
import contextlib
import sys
from pathlib import Path

from sgm_export.cli.flags import add_force, add_model_access
from sgm_export.cli.options import add_option_flags, options_from_args
from sgm_export.errors import SgmError
from sgm_export.options import ScoreOptions


def register(commands, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("score", parents=[common], help="rate every decoder MLP neuron by AUROC")
    parser.add_argument("model", metavar="MODEL", help="Hub id, local directory, or 'demo'")
    parser.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="SRC",
        help="labelled examples: .jsonl, .csv, hf:NAME[:SPLIT], builtin:NAME[:SPLIT]",
    )
    parser.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder for scores.safetensors and scores.json (must not exist; see --force)"
    )
    add_option_flags(parser, ScoreOptions)
    add_model_access(parser)
    add_force(parser)
    parser.add_argument(
        "--resume", action="store_true", help="reuse the activations an interrupted run with the same model, data and settings saved"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Everything that can be wrong with the input is checked before torch is even imported.
    from sgm_export.data.sources import read_sources
    from sgm_export.models.preflight import check_max_length, check_model
    from sgm_export.outputs import check_outside_inputs, check_target_free

    options = options_from_args(ScoreOptions, args)
    check_target_free(args.out, args.force)
    examples = read_sources(args.data, options.limit)
    checked = check_model(args.model, args.allow_pickle, args.trust_remote_code)
    check_max_length(checked, options.max_length)
    check_outside_inputs(args.out, [checked.source.path, *map(Path, args.data)])

    from sgm_export.models.load import load_model
    from sgm_export.score import distributed
    from sgm_export.score.files import save_scores
    from sgm_export.score.runner import score_examples
    from sgm_export.score.store import PooledStore, default_chunk_bytes, device_budget_bytes, fingerprint, resumable_store

    share = distributed.launched_share()
    if share.world > 1 and args.resume:
        raise SgmError("--resume works for a single process, not for one of several started by torchrun", "score again without --resume")
    chunk_bytes = default_chunk_bytes()
    device, gpus = distributed.rank_placement(options.device, options.device_map, share)
    loaded = load_model(args.model, device, options.dtype, args.allow_pickle, args.trust_remote_code, options.device_map, gpus)
    distributed.start(share, loaded.device)
    budget = device_budget_bytes(loaded.device, options.store_budget_mb)
    if share.world > 1:
        store_context = contextlib.nullcontext(PooledStore(len(examples), device=loaded.device, device_budget_bytes=budget))
    else:
        store_context = resumable_store(
            args.out, fingerprint(loaded, examples, options), len(examples), args.resume, chunk_bytes, loaded.device, budget
        )
    with store_context as store:
        if args.resume:
            resumed = f"{store.n_done} of {len(examples)} examples were scored already" if store.n_done else "nothing to resume"
            print(f"resume: {resumed}", file=sys.stderr)
        scores = score_examples(loaded, examples, options, store, sources=args.data, share=share)
        if share.is_main:
            save_scores(scores, args.out, force=args.force)
    distributed.finish(share)
    if not share.is_main:
        return 0
    summary = scores.summary(top=5)
    ranks = f" by {share.world} processes" if share.world > 1 else ""
    print(f"scored {summary['n_neurons']} neurons in {summary['n_layers']} layers on {len(examples)} examples{ranks}")
    print(f"neurons with AUROC > 0.5: {summary['experts_total']['auroc>0.5']}; top AUROC: {[e['auroc'] for e in summary['top_experts']]}")
    print(f"wrote {args.out}")
    return 0

"""`sgm-export card DIR`: render an export's model card again, attaching an `eval` report."""

import argparse
from pathlib import Path


def register(commands, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("card", parents=[common], help="render an export's model card again (attach an eval report)")
    parser.add_argument(
        "export_dir", type=Path, metavar="DIR", help="an export (module, folded or ONNX folder); its README.md is rewritten"
    )
    parser.add_argument("--report", type=Path, metavar="EVAL_DIR", help="the folder `sgm-export eval --out` wrote; copied into DIR/eval/")
    parser.add_argument("--repo-id", metavar="REPO_ID", help="the Hub repository the card's loading snippets name")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sgm_export.publish.hub import check_repo_id
    from sgm_export.publish.refresh import refresh_card

    if args.repo_id is not None:
        check_repo_id(args.repo_id)
    card = refresh_card(args.export_dir, report_dir=args.report, hub_repo_id=args.repo_id)
    print(f"wrote {card}")
    return 0

"""`sgm-export push DIR REPO_ID`: publish a checked export to the Hugging Face Hub in one commit."""

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from sgm_export.cli.options import add_option_flags, options_from_args
from sgm_export.options import PushOptions

if TYPE_CHECKING:
    from sgm_export.publish.hub import PushPlan


def register(commands, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("push", parents=[common], help="publish an export to the Hugging Face Hub in one commit")
    parser.add_argument("export_dir", type=Path, metavar="DIR", help="the export to publish (module, folded or ONNX folder)")
    parser.add_argument("repo_id", metavar="REPO_ID", help="NAME or OWNER/NAME; created when missing")
    add_option_flags(parser, PushOptions, skip=("repo_id", "format"))
    parser.add_argument("--dry-run", action="store_true", help="list the files and what the card says; upload nothing")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sgm_export.publish.hub import check_repo_id, plan_push, push_folder

    options = options_from_args(PushOptions, args)
    if args.dry_run:
        check_repo_id(args.repo_id)
        print(describe_dry_run(plan_push(args.export_dir), args.repo_id, options))
        return 0
    push_folder(args.export_dir, args.repo_id, private=options.private, revision=options.revision)
    return 0


def describe_dry_run(plan: "PushPlan", repo_id: str, options: PushOptions) -> str:
    """The files with their sizes, then what the card says; for people, on stdout."""
    from sgm_export.publish.hub import DEFAULT_BRANCH, human_size, snippet_note

    visibility = "private" if options.private else "public unless it exists already"
    lines = [
        "dry run: nothing is uploaded",
        f"would push {plan.folder} to {repo_id} (branch {options.revision or DEFAULT_BRANCH}, {visibility}) "
        f"in one commit of {len(plan.files)} files, {human_size(plan.total_size)}:",
    ]
    width = max(len(file.path) for file in plan.files)
    lines += [f"  {file.path.ljust(width)}  {human_size(file.size):>9}" for file in plan.files]
    lines += ["", "the card (README.md) says:", *_indented(plan.card.data.to_yaml())]
    title_and_summary = [block.strip() for block in plan.card.text.split("\n\n") if block.strip()][:2]
    sections = [line.removeprefix("## ") for line in plan.card.text.splitlines() if line.startswith("## ")]
    lines += ["", *_indented("\n\n".join(title_and_summary)), "", f"  sections: {', '.join(sections)}"]
    note = snippet_note(plan, repo_id)
    lines += ["", note] if note else []
    return "\n".join(lines)


def _indented(text: str) -> list[str]:
    return [f"  {line}" for line in text.splitlines()]

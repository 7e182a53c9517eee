"""`sgm-export inspect PATH`: audit an ONNX graph or export folder: inputs, outputs, opset, size, glasses."""

import argparse
import json
from pathlib import Path


def register(commands, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("inspect", parents=[common], help="list the glasses, inputs and outputs of ONNX graphs")
    parser.add_argument("path", type=Path, metavar="PATH", help="an .onnx file, or a folder written by `sgm-export onnx`")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sgm_export.export.onnx import require_onnx_packages

    require_onnx_packages()
    from sgm_export.export.onnx.inspect import format_report, graph_files, inspect_graph

    reports = [inspect_graph(path) for path in graph_files(args.path)]
    if args.json:
        print(json.dumps([report.to_json() for report in reports], indent=2))
    else:
        print("\n\n".join(format_report(report) for report in reports))
    return 0

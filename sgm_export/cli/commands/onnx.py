"""`sgm-export onnx MODEL_OR_DIR [--glasses FILE] --out DIR`: an ONNX folder with the glasses as visible Mul nodes."""

import argparse
from pathlib import Path

from sgm_export.cli.flags import add_force
from sgm_export.cli.options import add_option_flags, options_from_args
from sgm_export.options import OnnxOptions


def register(commands, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("onnx", parents=[common], help="write an ONNX folder (ONNX Runtime, transformers.js) with the glasses")
    parser.add_argument("model", metavar="MODEL_OR_DIR", help="a base model (with --glasses), or a module/folded export")
    parser.add_argument("--glasses", type=Path, metavar="FILE", help="glasses for a base model (an export carries its own)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the ONNX export (must not exist; see --force)")
    add_option_flags(parser, OnnxOptions)
    add_force(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sgm_export.export.onnx import export_onnx
    from sgm_export.glasses import describe, load_glasses
    from sgm_export.layout import GLASSES_FILE
    from sgm_export.runtime.layout import read_description

    options = options_from_args(OnnxOptions, args)
    glasses = load_glasses(args.glasses) if args.glasses else None
    out = export_onnx(args.model, args.out, glasses, options, force=args.force)
    description = read_description(out)
    print(describe(load_glasses(out / GLASSES_FILE)))
    print(f"wrote {options.dtype} ONNX export {out} ({description.decoder_file}, {description.cache.num_layers} layers with glasses)")
    return 0

"""Write `.gpu/`, what `benchmarks/gpu_check.sh` needs on a GPU machine that cannot download:

    python benchmarks/gpu_prepare.py            # on this machine, once; then carry .gpu along

    .gpu/wheels/      the packages sgm-export needs that the GPU image lacks (pydantic and its
                      parts), for CPython 3.12 on x86-64 Linux
    .gpu/tiny/        a tiny random Llama with a small tokenizer, for the CUDA-vs-CPU checks
    .gpu/data.jsonl   labelled rows of the built-in data (toxic and neutral, half each)

It is a few megabytes, well under what travels to a GPU machine with the working tree.
"""

import argparse
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORK = Path(__file__).resolve().parents[1] / ".gpu"
MISSING_ON_GPU_IMAGE = ["pydantic", "pydantic-core", "annotated-types", "typing-inspection"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]


def write_wheels(folder: Path) -> None:
    """The same versions as installed here, as wheels for the GPU image's Python (3.12)."""
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in MISSING_ON_GPU_IMAGE]
    platforms = [argument for platform in PLATFORMS for argument in ("--platform", platform)]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", "3.12"]
        + ["--implementation", "cp", *platforms, "-d", str(folder), *pins],
        check=True,
    )


def write_tiny_model(folder: Path) -> Path:
    from tests.tiny import build_tiny_model

    return build_tiny_model("llama", folder, seed=0, intermediate_size=256, num_hidden_layers=4)


def write_data(path: Path, rows: int) -> Path:
    from sgm_export.data.builtin import read_builtin

    half = rows // 2
    chosen = [(example.text, 1) for example in read_builtin("rtp-toxic", "score")[:half]]
    chosen += [(example.text, 0) for example in read_builtin("neutral", "score")[: rows - half]]
    path.write_text("".join(json.dumps({"text": text, "label": label}) + "\n" for text, label in chosen), encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--rows", type=int, default=1024)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    write_wheels(args.work / "wheels")
    write_tiny_model(args.work / "tiny")
    write_data(args.work / "data.jsonl", args.rows)
    print(f"wrote {args.work}: carry it to the GPU machine and run `bash benchmarks/gpu_check.sh` there")


if __name__ == "__main__":
    main()

"""What an ONNX graph holds, for people auditing it: inputs, outputs, opset, size, and every layer's
glasses (the scale initializer, the Mul it feeds, the projection after it, how many neurons
it scales)."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx_ir as ir

from sgm_export.errors import CheckpointError, SgmError
from sgm_export.export.onnx.description import tensor_info
from sgm_export.export.onnx.graph import GlassesNode, find_glasses
from sgm_export.layout import ONNX_DIR


@dataclass
class GraphReport:
    """The audit of one .onnx file."""

    path: Path
    size_bytes: int
    opsets: dict[str, int]
    producer: str
    n_nodes: int
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    glasses: list[GlassesNode]
    metadata: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "opsets": self.opsets,
            "producer": self.producer,
            "n_nodes": self.n_nodes,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "glasses": [
                {**node.to_json(), "min": float(node.values.min()), "zeros": int((node.values == 0).sum())} for node in self.glasses
            ],
            "metadata": self.metadata,
        }


def graph_files(path: Path) -> list[Path]:
    """The .onnx files PATH names: the file itself, or those of an export folder or its onnx/ folder."""
    path = Path(path)
    if path.is_file():
        if path.suffix != ".onnx":
            raise SgmError(f"{path} is not an .onnx file", "pass an .onnx file or a folder written by `sgm-export onnx`")
        return [path]
    for folder in (path / ONNX_DIR, path):
        files = sorted(folder.glob("*.onnx")) if folder.is_dir() else []
        if files:
            return files
    raise CheckpointError(f"{path} holds no .onnx files", "pass an .onnx file or a folder written by `sgm-export onnx`")


def inspect_graph(path: Path) -> GraphReport:
    """Read one graph (external weights stay on disk until a scale is read) and audit it."""
    try:
        model = ir.load(path)
    except Exception as error:  # onnx raises several protobuf and decode errors for a bad file
        raise CheckpointError(f"{path} is not a readable ONNX model ({type(error).__name__})", "export it again") from None
    external = {
        Path(value.const_value.path) for value in model.graph.initializers.values() if isinstance(value.const_value, ir.ExternalTensor)
    }
    size = path.stat().st_size + sum((path.parent / file).stat().st_size for file in external if (path.parent / file).is_file())
    return GraphReport(
        path=path,
        size_bytes=size,
        opsets=dict(model.opset_imports),
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        n_nodes=sum(1 for _ in model.graph.all_nodes()),
        inputs=[tensor_info(value) for value in model.graph.inputs],
        outputs=[tensor_info(value) for value in model.graph.outputs],
        glasses=find_glasses(model),
        metadata=dict(model.metadata_props),
    )


def format_report(report: GraphReport) -> str:
    """The audit as a few lines of text."""
    lines = [
        f"{report.path}: {report.size_bytes / 1e6:.1f} MB, {report.n_nodes} nodes, opset "
        + ", ".join(f"{domain or 'ai.onnx'} {version}" for domain, version in sorted(report.opsets.items()))
        + f", produced by {report.producer}",
        "inputs:  " + _tensors(report.inputs),
        "outputs: " + _tensors(report.outputs),
    ]
    if not report.glasses:
        lines.append("glasses: none (no sgm.layers.{i}.scale initializer in this graph)")
        return "\n".join(lines)
    scaled = sum(int((node.values < 1).sum()) for node in report.glasses)
    zeros = sum(int((node.values == 0).sum()) for node in report.glasses)
    lines.append(f"glasses: {len(report.glasses)} layers, {scaled} neurons scaled below 1, {zeros} switched off")
    for node in report.glasses:
        values = node.values.astype(np.float32)
        lines.append(
            f"  {node.initializer} [{values.size}] {node.values.dtype}: {int((values < 1).sum())} scaled, min {values.min():.3f}"
            f" -> Mul {node.mul} -> {node.projection_op} {node.projection}"
        )
    settings = {key.removeprefix("sgm."): value for key, value in report.metadata.items() if key.startswith("sgm.")}
    if settings:
        lines.append("settings: " + ", ".join(f"{key}={value}" for key, value in settings.items() if value))
    return "\n".join(lines)


def _tensors(infos: list[dict[str, Any]]) -> str:
    """Inputs or outputs, with the per-layer cache tensors summarised by their first one."""
    shown, cache = [], [info for info in infos if info["name"].startswith(("past_key_values.", "present."))]
    for info in infos:
        if info in cache[1:]:
            continue
        shape = ", ".join(str(dim) for dim in info["shape"] or [])
        name = info["name"] + (f" (+{len(cache) - 1} more like it)" if cache and info is cache[0] else "")
        shown.append(f"{name} {info['dtype']} [{shape}]")
    return "; ".join(shown)

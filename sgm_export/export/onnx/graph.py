"""The glasses inside an ONNX graph: naming them, finding them again, and saving the graph.

After tracing, layer i's scale is an initializer named after the module it was attached to; it
is renamed `sgm.layers.{i}.scale`. `find_glasses` walks the graph from each such initializer to
the `Mul` it feeds and on, through shape-only ops (GPT-2's Conv1D reshapes first), to the matrix
multiplication of the output projection. The export refuses a graph where that chain is
broken, and `sgm-export inspect` shows it, so the glasses can be audited in the file itself.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx_ir as ir

from sgm_export.apply import SCALE_BUFFER, SHIFT_BUFFER
from sgm_export.arch import Family
from sgm_export.runtime.layout import external_data_name, scale_name, shift_name

EXTERNAL_DATA_THRESHOLD = 2 * 1024**3 - 64 * 1024**2  # protobuf's 2 GiB limit, with room for the graph itself
SHAPE_ONLY_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})
PROJECTION_OPS = frozenset({"MatMul", "Gemm"})
_SCALE_NAME = re.compile(r"^sgm\.layers\.(\d+)\.scale$")
_SHIFT_NAME = re.compile(r"^sgm\.layers\.(\d+)\.shift$")
# Per-node metadata torch.onnx records that holds the exporting machine's file paths.
LOCAL_METADATA = ("pkg.torch.onnx.stack_trace",)


@dataclass(frozen=True)
class GlassesNode:
    """Where one layer's scale sits in the graph."""

    layer: int
    initializer: str
    mul: str
    projection: str
    projection_op: str
    values: np.ndarray

    def to_json(self) -> dict:
        return {
            "layer": self.layer,
            "initializer": self.initializer,
            "mul": self.mul,
            "projection": self.projection,
            "projection_op": self.projection_op,
            "width": int(self.values.size),
            "scaled": int((self.values < 1).sum()),
        }


class GlassesGraphError(RuntimeError):
    """The traced graph does not hold the glasses where they belong (a bug, not a user error)."""


def name_glasses(model: ir.Model, family: Family, n_layers: int, prefix: str) -> None:
    """Rename each layer's traced scale buffer to `sgm.layers.{i}.scale` (and its shift buffer,
    for glasses that shift, to `sgm.layers.{i}.shift`)."""
    initializers = model.graph.initializers
    for layer in range(n_layers):
        traced = f"{prefix}.{family.module_name(layer)}.{SCALE_BUFFER}"
        if traced not in initializers:
            raise GlassesGraphError(f"the traced graph has no initializer {traced}")
        initializers[traced].name = scale_name(layer)
        traced_shift = f"{prefix}.{family.module_name(layer)}.{SHIFT_BUFFER}"
        if traced_shift in initializers:
            initializers[traced_shift].name = shift_name(layer)


def drop_local_metadata(model: ir.Model) -> None:
    """Remove the stack traces torch.onnx keeps per node: they name files on this machine."""
    for node in model.graph.all_nodes():
        for key in LOCAL_METADATA:
            node.metadata_props.pop(key, None)


def find_glasses(model: ir.Model) -> list[GlassesNode]:
    """Every `sgm.layers.{i}.scale` of the graph with the Mul and projection it feeds, by layer."""
    found = []
    for name, value in model.graph.initializers.items():
        match = _SCALE_NAME.match(name)
        if not match:
            continue
        consumers = [node for node, _ in value.uses()]
        if len(consumers) != 1 or consumers[0].op_type != "Mul":
            raise GlassesGraphError(f"{name} feeds {[node.op_type for node in consumers]}, not exactly one Mul")
        mul = consumers[0]
        projection = _projection_after(mul)
        if projection is None:
            raise GlassesGraphError(f"the Mul of {name} does not lead to a MatMul or Gemm")
        found.append(GlassesNode(int(match[1]), name, mul.name, projection.name, projection.op_type, value.const_value.numpy()))
    return sorted(found, key=lambda node: node.layer)


def _projection_after(node: ir.Node) -> ir.Node | None:
    """The first MatMul/Gemm reached from `node`'s output through shape-only ops (and the Add of
    the glasses' shift, where they have one), if any."""
    while True:
        users = [user for user, _ in node.outputs[0].uses()]
        if len(users) != 1:
            return None
        (node,) = users
        if node.op_type in PROJECTION_OPS:
            return node
        if node.op_type not in SHAPE_ONLY_OPS and not _adds_a_shift(node):
            return None


def _adds_a_shift(node: ir.Node) -> bool:
    return node.op_type == "Add" and any(value is not None and _SHIFT_NAME.match(value.name or "") for value in node.inputs)


def weight_bytes(model: ir.Model) -> int:
    """The size of all initializers, which decides whether they go to external data."""
    return sum(value.const_value.nbytes for value in model.graph.initializers.values() if value.const_value is not None)


def save_graph(model: ir.Model, path: Path, external_data_threshold: int = EXTERNAL_DATA_THRESHOLD) -> str | None:
    """Write the graph; weights go to `<file>_data` when they would pass protobuf's 2 GB limit.

    Returns the external data file's name, or None when the weights are inside the graph file.
    """
    if weight_bytes(model) < external_data_threshold:
        ir.save(model, path)
        return None
    data = external_data_name(path.name)
    ir.save(model, path, external_data=data)
    return data

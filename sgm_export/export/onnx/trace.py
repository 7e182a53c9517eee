"""Tracing a causal LM with its glasses into an ONNX graph (torch.onnx.export, dynamo=True).

The graph takes and returns its KV cache as flat tensors (`past_key_values.{i}.key`, ... and
`present.{i}.key`, ...), so a small wrapper rebuilds a transformers `DynamicCache` from the flat
list on the way in and flattens it on the way out. The cache is a plain `DynamicCache` on every
layer, sliding-window ones included: the sliding-window mask still limits what each layer
attends to, while the graph keeps one cache layout and stays correct past the window.
The glasses are applied by `glasses_applied` while tracing, whose per-layer buffer becomes a
named initializer feeding a `Mul` before the output projection.
"""

import contextlib
import io
import logging
import re
import warnings
from collections.abc import Iterator

import onnx_ir as ir
import torch
from torch import nn
from torch.export import Dim
from transformers import DynamicCache

from sgm_export.apply import glasses_applied
from sgm_export.arch import Family
from sgm_export.errors import SgmError
from sgm_export.glasses import Glasses
from sgm_export.runtime.layout import (
    ATTENTION_MASK,
    BATCH,
    INPUT_IDS,
    LOGITS,
    PAST_SEQUENCE,
    POSITION_IDS,
    SEQUENCE,
    TOTAL_SEQUENCE,
    CacheSpec,
    past_names,
    present_names,
)

OPSET = 18
WRAPPED = "model"  # attribute of the wrapper holding the causal LM; prefixes every traced name
DTYPES = {"float32": torch.float32, "float16": torch.float16}


class DecoderWithFlatCache(nn.Module):
    """The causal LM with its cache as a flat list of tensors, the way the ONNX graph sees it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids, past: list[torch.Tensor]):
        cache = DynamicCache()
        for layer in range(len(past) // 2):
            cache.update(past[2 * layer], past[2 * layer + 1], layer)
        output = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache, use_cache=True)
        presents = [tensor for layer in output.cache.layers for tensor in (layer.keys, layer.values)]
        return (output.logits, *presents)


def cache_spec(model: nn.Module, dtype: str) -> CacheSpec:
    """The shape of the model's KV cache, read from one short forward pass.

    Reading it from a real pass (rather than from config fields, which families name
    differently) gives exactly what the model stores: [batch, kv_heads, positions, head_dim].
    """
    with torch.no_grad():
        layers = model(input_ids=torch.tensor([[1, 2]]), cache=DynamicCache(), use_cache=True).cache.layers
    shapes = {tuple(tensor.shape[1::2]) for layer in layers for tensor in (layer.keys, layer.values)}
    if len(shapes) != 1:
        raise SgmError(
            f"the layers of this model cache keys and values of different shapes {sorted(shapes)}", "this model is not supported"
        )
    ((kv_heads, head_dim),) = shapes
    return CacheSpec(len(layers), int(kv_heads), int(head_dim), dtype)


def trace_decoder(model: nn.Module, family: Family, glasses: Glasses, dtype: str) -> tuple[ir.Model, CacheSpec]:
    """The ONNX graph of `model` in `dtype` with the glasses applied, and its cache shape."""
    model = model.to(DTYPES[dtype]).eval()
    spec = cache_spec(model, dtype)
    args, dynamic_shapes = _sample_inputs(spec, model.config.vocab_size)
    with glasses_applied(model, family, glasses):
        graph = export_module(
            DecoderWithFlatCache(model),
            args,
            dynamic_shapes,
            [INPUT_IDS, ATTENTION_MASK, POSITION_IDS, *past_names(spec.num_layers)],
            [LOGITS, *present_names(spec.num_layers)],
        )
    return graph, spec


def export_module(module: nn.Module, args: tuple, dynamic_shapes: dict, input_names: list[str], output_names: list[str]) -> ir.Model:
    """One module traced into an ONNX graph at `OPSET`, with the exporter's own chatter kept quiet."""
    with torch.no_grad(), quiet_exporter():
        program = torch.onnx.export(
            module.eval(),
            args,
            dynamo=True,
            dynamic_shapes=dynamic_shapes,
            input_names=input_names,
            output_names=output_names,
            opset_version=OPSET,
            optimize=True,
            verbose=False,
        )
    name_axes(program.model, dynamic_shapes)
    return program.model


def name_axes(model: ir.Model, dynamic_shapes: dict) -> None:
    """Give every symbolic axis of the graph the name its `Dim` has (`batch_size`, ...).

    torch.onnx renames the exporter's own symbols (`s10`, `s29 + s15`) only when the flattened
    dynamic shapes line up with the graph's inputs one to one, which an empty list of extra
    inputs breaks; transformers.js sizes the first step's empty past by these names, so they are
    renamed here for every graph, in inputs, outputs and intermediate values alike."""
    specs = [spec for value in dynamic_shapes.values() for spec in (value if isinstance(value, list) else [value])]
    names = {}
    for graph_input, spec in zip(model.graph.inputs, specs):
        for axis, dim in (spec or {}).items():
            symbol = graph_input.shape[axis]
            if isinstance(symbol, ir.SymbolicDim) and symbol.value is not None:
                names[symbol.value] = dim.__name__
    if not names:
        return
    pattern = re.compile(r"\b(" + "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True)) + r")\b")
    values = [*model.graph.inputs, *model.graph.outputs, *(output for node in model.graph.all_nodes() for output in node.outputs)]
    for value in values:
        if value.shape is None:
            continue
        dims = [
            ir.SymbolicDim(pattern.sub(lambda match: names[match.group(1)], dim.value))
            if isinstance(dim, ir.SymbolicDim) and dim.value is not None
            else dim
            for dim in value.shape
        ]
        value.shape = ir.Shape(dims)


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """torch.onnx reports its steps on stdout (which belongs to our results) and warns about
    optional packages it does not need here: keep both out of the way, unless --debug."""
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    if logging.getLogger().isEnabledFor(logging.INFO):  # --debug
        yield
        return
    exporter_log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        exporter_log.setLevel(level)


def _sample_inputs(spec: CacheSpec, vocab_size: int) -> tuple[tuple, dict]:
    """Example inputs for tracing, and which of their axes vary.

    Every varying axis gets a distinct size above 1 (2 rows, 3 new tokens, 4 past ones), so that
    torch.export cannot mistake one for another or specialise it to a constant.
    """
    batch, new, past = 2, 3, 4
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, vocab_size, (batch, new), generator=generator)
    attention_mask = torch.ones(batch, past + new, dtype=torch.long)
    position_ids = torch.arange(past, past + new).expand(batch, new).contiguous()
    shape = (batch, spec.num_key_value_heads, past, spec.head_dim)
    cache = [torch.randn(shape, generator=generator).to(DTYPES[spec.dtype]) for _ in range(2 * spec.num_layers)]
    batch_dim, sequence_dim = Dim(BATCH), Dim(SEQUENCE)
    dynamic_shapes = {
        "input_ids": {0: batch_dim, 1: sequence_dim},
        "attention_mask": {0: batch_dim, 1: Dim(TOTAL_SEQUENCE)},
        "position_ids": {0: batch_dim, 1: sequence_dim},
        "past": [{0: batch_dim, 2: Dim(PAST_SEQUENCE)}] * len(cache),
    }
    return (input_ids, attention_mask, position_ids, cache), dynamic_shapes

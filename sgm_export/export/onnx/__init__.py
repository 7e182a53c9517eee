"""`sgm-export onnx`: a text model with its glasses as an ONNX folder that ONNX Runtime (and
transformers.js) can run, with every layer's scale visible as an initializer `sgm.layers.{i}.scale`
feeding a `Mul` before the MLP's output projection.

The folder (written atomically):

    DIR/config.json, generation_config.json, tokenizer files   as the base model has them (tokenizer_config.json
                                                               states add_bos_token for transformers.js)
    DIR/processor_config.json, preprocessor_config.json        vision-language models: the processor, and its image
                                                               processor alone, as transformers.js reads it
    DIR/genai_config.json                                      for ONNX Runtime GenAI (text models)
    DIR/glasses.safetensors                                    the glasses, as `sgm-export glasses` writes them
    DIR/onnx/model.onnx (model_fp16.onnx for float16)          the decoder with KV cache inputs and outputs
    DIR/onnx/model.onnx_data                                   the weights, only when they pass 2 GB
    DIR/onnx/sgm_onnx.json                                     inputs, outputs, axes, cache, tokens, glasses
    DIR/sgm_export.json                                        manifest: settings and SHA-256 of every file
"""

import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING

from sgm_export.artifacts import ExportManifest
from sgm_export.errors import SgmError
from sgm_export.glasses import Glasses, save_glasses
from sgm_export.layout import GLASSES_FILE
from sgm_export.options import OnnxOptions
from sgm_export.outputs import atomic_dir, check_target_free
from sgm_export.progress import progress_bar

if TYPE_CHECKING:
    from sgm_export.export.onnx.source import OnnxSource
    from sgm_export.models.preflight import CheckedModel

REQUIRED_PACKAGES = ("onnx", "onnxscript", "onnx_ir", "onnxruntime")


def export_onnx(
    model: "str | CheckedModel",
    out: Path,
    glasses: Glasses | None = None,
    options: OnnxOptions | None = None,
    force: bool = False,
    external_data_threshold: int | None = None,
) -> Path:
    """Write the ONNX folder of MODEL_OR_DIR (a base model with `glasses`, or an sgm-export checkpoint;
    checked already when `run` passes it)."""
    require_onnx_packages()
    from sgm_export.export.onnx.source import open_onnx_source

    check_target_free(Path(out), force)
    return write_onnx_folder(open_onnx_source(model, glasses), out, options, force, external_data_threshold)


def write_onnx_folder(
    source: "OnnxSource", out: Path, options: OnnxOptions | None = None, force: bool = False, external_data_threshold: int | None = None
) -> Path:
    """Write the ONNX folder of a loaded source (model, family, glasses, config, companion files)."""
    from sgm_export.export.onnx.graph import EXTERNAL_DATA_THRESHOLD

    out = Path(out)
    with atomic_dir(out, force=force) as staging:
        _write_folder(source, staging, options or OnnxOptions(), external_data_threshold or EXTERNAL_DATA_THRESHOLD)
    return out


def require_onnx_packages() -> None:
    """Fail with one line, before any work, when the ONNX packages are not installed."""
    missing = [name for name in REQUIRED_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise SgmError(f"the ONNX export needs {', '.join(missing)}, which are not installed", "pip install 'sgm-export[onnx]'")


def _write_folder(source: "OnnxSource", staging: Path, options: OnnxOptions, external_data_threshold: int) -> None:
    from sgm_export.export import finish_export
    from sgm_export.export.files import copy_file
    from sgm_export.export.onnx.clients import (
        GENAI_CONFIG,
        genai_config,
        state_processor_files,
        state_special_tokens,
        top_level_text_fields,
        transformers_js_config,
    )
    from sgm_export.export.onnx.description import describe_export, write_description
    from sgm_export.export.onnx.graph import GlassesGraphError, drop_local_metadata, find_glasses, name_glasses, save_graph
    from sgm_export.export.onnx.trace import OPSET, WRAPPED
    from sgm_export.layout import ONNX_DIR
    from sgm_export.runtime.layout import graph_file

    with progress_bar("exporting to ONNX", total=2, unit="steps") as advance:
        for file in source.companion_files():
            copy_file(file, staging / file.name)
        state_special_tokens(staging)
        state_processor_files(staging)
        save_glasses(source.glasses, staging / GLASSES_FILE)
        graphs, cache, stems, image = _trace(source, options.dtype)
        advance(1)
        decoder = graphs["decoder"]
        name_glasses(decoder, source.family, cache.num_layers, prefix=WRAPPED)
        nodes = find_glasses(decoder)
        if [node.layer for node in nodes] != list(range(len(source.glasses.scales))):
            raise GlassesGraphError(f"the graph holds glasses for layers {[node.layer for node in nodes]}")
        decoder.metadata_props.update({f"sgm.{key}": value for key, value in source.glasses.metadata.to_strings().items()})
        onnx_dir = staging / ONNX_DIR
        onnx_dir.mkdir()
        files = {}
        for name, graph in graphs.items():
            drop_local_metadata(graph)
            file = graph_file(stems[name], options.dtype)
            files[name] = (file, save_graph(graph, onnx_dir / file, external_data_threshold))
        config = {**source.config, **top_level_text_fields(source.config), **transformers_js_config(dict(files.values()))}
        (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        generation_path = staging / "generation_config.json"
        generation_config = json.loads(generation_path.read_text(encoding="utf-8")) if generation_path.is_file() else {}
        origin = {"family": source.family.name, "base_model": source.base_model, "exported_from": source.kind}
        description = describe_export(
            graphs=graphs,
            files=files,
            dtype=options.dtype,
            opset=OPSET,
            cache=cache,
            glasses=source.glasses,
            glasses_nodes=nodes,
            config=source.config,
            generation_config=generation_config,
            source=origin,
            image=image,
        )
        write_description(onnx_dir, description)
        if image is None:  # ONNX Runtime GenAI's vision-language configs are not written yet
            (staging / GENAI_CONFIG).write_text(json.dumps(genai_config(description, config), indent=2) + "\n", encoding="utf-8")
        finish_export(staging, onnx_fields(source, origin, options.dtype))
        advance(1)


def onnx_fields(source: "OnnxSource", origin: dict[str, str], dtype: str) -> ExportManifest:
    """What the ONNX folder's sgm_export.json records and its card is rendered from: the fields of
    a module or folded export (base model, license, data, recipe), carried over from the export it
    was made from, the glasses' settings, and what this export is."""
    glasses = source.glasses
    return ExportManifest(
        **{
            "base_model_name": source.base_model,
            "auto_class": source.family.auto_class,
            "data_sources": glasses.metadata.provenance.data,
            **source.provenance,
            "format": "onnx",
            **origin,
            "dtype": dtype,
            "glasses": glasses.metadata,
            "glasses_file": GLASSES_FILE,
            "experts_per_layer": glasses.experts_per_layer(),
            "neurons_per_layer": glasses.widths,
            "hub_repo_id": None,
        }
    )


def _trace(source: "OnnxSource", dtype: str):
    """The graphs of the source (decoder first), its cache shape, their file stems, and the image facts."""
    from sgm_export.export.onnx.trace import trace_decoder
    from sgm_export.runtime.layout import MULTIMODAL_GRAPHS, TEXT_GRAPHS

    if not source.family.multimodal:
        graph, cache = trace_decoder(source.model, source.family, source.glasses, dtype)
        return {"decoder": graph}, cache, TEXT_GRAPHS, None
    from sgm_export.export.onnx.families import check_onnx_family
    from sgm_export.export.onnx.multimodal import image_facts, trace_multimodal

    traits = check_onnx_family(source.config["model_type"], source.base_model)
    graphs, cache = trace_multimodal(source.model, source.family, source.glasses, dtype, traits)
    return graphs, cache, MULTIMODAL_GRAPHS, image_facts(source.model.config, traits)

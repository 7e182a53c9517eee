"""ONNX export of tiny text models: ONNX Runtime logits against PyTorch with hook-applied glasses
(prefill, chunked prefill and decode steps, batch 1 and left-padded batch 2), the glasses as
named initializers feeding a Mul, float16, external data, every kind of source, and errors."""

import json

import numpy as np
import onnx_ir as ir
import pytest
import torch

from sgm_export.artifacts import GlassesMetadata
from sgm_export.errors import OutputExistsError, SgmError, ShapeMismatchError
from sgm_export.export import export_checkpoint
from sgm_export.export.onnx import export_onnx
from sgm_export.export.onnx.graph import find_glasses
from sgm_export.export.onnx.inspect import format_report, graph_files, inspect_graph
from sgm_export.glasses import load_glasses
from sgm_export.models.load import load_model
from sgm_export.runtime import OnnxCausalLM
from sgm_export.runtime.tokenizer import left_padded
from sgm_export.verify import verify_export
from sgm_export.verify.onnx import compare_generation
from tests.cli_helpers import assert_clean_usage_error, sgm
from tests.test_export import random_glasses, widths_of

ONNX_FAMILIES = ("llama", "gemma3_text", "gpt2")
PROMPTS = [
    "you are a fool and",
    "the children are building a sandcastle on the beach while the sun",  # longer than the tiny Gemma's window of 16 after a few steps
]
NEW_TOKENS = 20


def encode(base, texts):
    return [base.tokenizer(text)["input_ids"] for text in texts]


@pytest.mark.parametrize("model_type", ONNX_FAMILIES)
@pytest.mark.parametrize("batch", [1, 2])
def test_generation_matches_pytorch_with_glasses(onnx_export, tiny_models, model_type, batch):
    folder, glasses = onnx_export(model_type)
    base = load_model(str(tiny_models[model_type]), device="cpu", dtype="float32")
    prompts = encode(base, PROMPTS[-batch:])
    runtime = OnnxCausalLM(folder, device="cpu")
    comparison = compare_generation(runtime, base, glasses, prompts, NEW_TOKENS)
    assert comparison.max_abs_diff < 1e-4
    assert comparison.glasses_effect > 1e-3  # the glasses change the logits, so the check could fail
    assert comparison.tokens_equal
    assert all(len(row) == NEW_TOKENS for row in comparison.onnx_tokens)  # every decode step was compared


@pytest.mark.parametrize("model_type", ONNX_FAMILIES)
def test_prefill_in_chunks_over_a_past(onnx_export, tiny_models, model_type):
    """A multi-token step on top of a non-empty past: the graph's general case."""
    from sgm_export.apply import glasses_applied

    folder, glasses = onnx_export(model_type)
    base = load_model(str(tiny_models[model_type]), device="cpu", dtype="float32")
    runtime = OnnxCausalLM(folder, device="cpu")
    batch = left_padded(encode(base, PROMPTS), runtime.pad_token_id)
    with torch.no_grad(), glasses_applied(base.model, base.family, glasses):
        expected = base.model(**{name: torch.from_numpy(getattr(batch, name)) for name in vars(batch)}).logits.numpy()
    split = 6
    first, past = runtime.forward(
        batch.input_ids[:, :split], batch.attention_mask[:, :split], batch.position_ids[:, :split], runtime.empty_past(2)
    )
    second, present = runtime.forward(batch.input_ids[:, split:], batch.attention_mask, batch.position_ids[:, split:], past)
    real = batch.attention_mask.astype(bool)
    assert np.abs(np.concatenate([first, second], axis=1) - expected)[real].max() < 1e-4
    assert present[0].shape[2] == batch.input_ids.shape[1]


@pytest.mark.parametrize("model_type", ONNX_FAMILIES)
def test_scale_initializers_equal_the_glasses_and_feed_the_projection(onnx_export, model_type):
    folder, glasses = onnx_export(model_type)
    model = ir.load(folder / "onnx" / "model.onnx")
    nodes = find_glasses(model)
    assert [node.initializer for node in nodes] == [f"sgm.layers.{i}.scale" for i in range(len(glasses.scales))]
    for node, scale in zip(nodes, glasses.scales):
        assert node.values.dtype == np.float32 and np.array_equal(node.values, scale)
        assert node.projection_op in ("MatMul", "Gemm")
    description = json.loads((folder / "onnx" / "sgm_onnx.json").read_text())
    names = [value["name"] for value in description["graphs"]["decoder"]["inputs"]]
    n_layers = len(glasses.scales)
    assert names[:3] == ["input_ids", "attention_mask", "position_ids"]
    assert names[3:] == [f"past_key_values.{i}.{kind}" for i in range(n_layers) for kind in ("key", "value")]
    outputs = [value["name"] for value in description["graphs"]["decoder"]["outputs"]]
    assert outputs == ["logits", *[f"present.{i}.{kind}" for i in range(n_layers) for kind in ("key", "value")]]
    assert description["graphs"]["decoder"]["inputs"][3]["shape"][0::2] == ["batch_size", "past_sequence_length"]


def test_inspect_lists_the_glasses(onnx_export):
    folder, glasses = onnx_export("llama")
    result = sgm("inspect", folder, "--json")
    assert result.code == 0, result.stderr
    (report,) = json.loads(result.stdout)
    assert [entry["initializer"] for entry in report["glasses"]] == ["sgm.layers.0.scale", "sgm.layers.1.scale"]
    assert [entry["scaled"] for entry in report["glasses"]] == glasses.experts_per_layer()
    assert report["opsets"][""] == 18 and report["size_bytes"] == (folder / "onnx" / "model.onnx").stat().st_size
    text = format_report(inspect_graph(folder / "onnx" / "model.onnx"))
    assert "sgm.layers.1.scale [48] float32" in text and "-> Mul" in text
    with pytest.raises(SgmError, match="not an .onnx file"):
        graph_files(folder / "config.json")


def test_float16_export_loads_and_runs(onnx_export, tiny_models):
    folder, glasses = onnx_export("llama", "float16")
    assert sorted(p.name for p in (folder / "onnx").iterdir()) == ["model_fp16.onnx", "sgm_onnx.json"]
    nodes = find_glasses(ir.load(folder / "onnx" / "model_fp16.onnx"))
    for node, scale in zip(nodes, glasses.scales):
        assert node.values.dtype == np.float16 and np.array_equal(node.values, scale.astype(np.float16))
    runtime = OnnxCausalLM(folder, device="cpu")
    base = load_model(str(tiny_models["llama"]), device="cpu", dtype="float32")
    comparison = compare_generation(runtime, base, glasses, encode(base, PROMPTS), 5)
    assert comparison.max_abs_diff < 2e-2  # float16 rounding, against the float32 reference
    result = verify_export(folder, str(tiny_models["llama"]))
    assert result.passed, result.describe()


def test_weights_past_the_threshold_go_to_external_data(tiny_llama, tmp_path):
    glasses = random_glasses(widths_of(tiny_llama))
    folder = export_onnx(str(tiny_llama), tmp_path / "ext", glasses, external_data_threshold=1)
    assert sorted(p.name for p in (folder / "onnx").iterdir()) == ["model.onnx", "model.onnx_data", "sgm_onnx.json"]
    graph = ir.load(folder / "onnx" / "model.onnx")
    large = [value.const_value for value in graph.graph.initializers.values() if value.const_value.nbytes >= 1024]
    assert large and all(isinstance(tensor, ir.ExternalTensor) for tensor in large)
    assert json.loads((folder / "onnx" / "sgm_onnx.json").read_text())["graphs"]["decoder"]["external_data"] == "model.onnx_data"
    # transformers.js fetches a graph's external data only where config.json says so
    assert json.loads((folder / "config.json").read_text())["transformers.js_config"] == {"use_external_data_format": {"model.onnx": 1}}
    base = load_model(str(tiny_llama), device="cpu", dtype="float32")
    comparison = compare_generation(OnnxCausalLM(folder, device="cpu"), base, glasses, encode(base, PROMPTS), 3)
    assert comparison.max_abs_diff < 1e-4
    assert np.array_equal(find_glasses(graph)[1].values, glasses.scales[1])


@pytest.mark.parametrize("fmt", ["module", "folded"])
def test_export_from_a_checkpoint_export_carries_its_glasses(tiny_models, tmp_path, fmt):
    base_dir = tiny_models["qwen3"]
    glasses = random_glasses(widths_of(base_dir), seed=3)
    glasses.metadata = GlassesMetadata.from_strings(SETTINGS)
    checkpoint = export_checkpoint(str(base_dir), glasses, tmp_path / fmt, format=fmt)
    folder = tmp_path / "onnx"
    if fmt == "module":  # through the command line once
        result = sgm("onnx", checkpoint, "--out", folder)
        assert result.code == 0, result.stderr
        assert "wrote float32 ONNX export" in result.stdout
    else:
        export_onnx(str(checkpoint), folder)
    assert not (folder / "modeling_sgm.py").exists() and json.loads((folder / "config.json").read_text())["model_type"] == "qwen3"
    nodes = find_glasses(ir.load(folder / "onnx" / "model.onnx"))
    assert all(np.array_equal(node.values, scale) for node, scale in zip(nodes, glasses.scales))
    base = load_model(str(base_dir), device="cpu", dtype="float32")
    comparison = compare_generation(OnnxCausalLM(folder, device="cpu"), base, glasses, encode(base, PROMPTS), 5)
    assert comparison.max_abs_diff < 1e-4 and comparison.tokens_equal
    # the glasses' settings survive: manifest, graph metadata, glasses file, card
    manifest = json.loads((folder / "sgm_export.json").read_text())
    assert (
        SETTINGS_JSON.items() <= manifest["glasses"].items()
        and manifest["exported_from"] == fmt
        and manifest["data_sources"] == ["builtin:rtp-toxic"]
    )
    assert {f"sgm.{key}": value for key, value in SETTINGS.items()}.items() <= ir.load(
        folder / "onnx" / "model.onnx"
    ).metadata_props.items()
    assert SETTINGS.items() <= load_glasses(folder / "glasses.safetensors").metadata.to_strings().items()
    card = (folder / "README.md").read_text()
    assert "library_name: transformers.js" in card and "mode: aura" in card and "threshold: 0.6" in card


SETTINGS = {"mode": "aura", "threshold": "0.6", "strength": "1.0", "top_k": "5", "pool": "mean", "data": '["builtin:rtp-toxic"]'}
SETTINGS_JSON = {"mode": "aura", "threshold": 0.6, "strength": 1.0, "top_k": 5, "pool": "mean", "data": ["builtin:rtp-toxic"]}


def test_an_onnx_folder_is_published_like_other_exports(onnx_export, tmp_path):
    """card renders it again byte for byte, push checks it; a damaged manifest or glasses the card
    does not describe are one line, exit 2, nothing written."""
    import shutil

    folder = shutil.copytree(onnx_export("llama")[0], tmp_path / "onnx")
    card = (folder / "README.md").read_bytes()
    assert sgm("card", folder).code == 0 and (folder / "README.md").read_bytes() == card
    dry_run = sgm("push", folder, "me/tiny-onnx", "--dry-run")
    assert dry_run.code == 0, dry_run.stderr
    assert "onnx/model.onnx" in dry_run.stdout and "genai_config.json" in dry_run.stdout
    glasses = folder / "glasses.safetensors"
    original = glasses.read_bytes()
    glasses.write_bytes(original[:-4] + b"\0\0\0\0")
    assert_clean_usage_error(sgm("push", folder, "me/tiny-onnx", "--dry-run"), "refusing to publish")
    assert_clean_usage_error(sgm("card", folder), "changed since it was exported")
    assert (folder / "README.md").read_bytes() == card
    glasses.write_bytes(original)
    (folder / "sgm_export.json").write_text("{not json")
    before = sorted(p.name for p in folder.rglob("*"))
    assert_clean_usage_error(sgm("card", folder), "sgm_export.json")
    assert_clean_usage_error(sgm("push", folder, "me/tiny-onnx", "--dry-run"), "sgm_export.json")
    assert sorted(p.name for p in folder.rglob("*")) == before


def test_verify_catches_an_onnx_export_with_other_glasses(onnx_export, tiny_models, tmp_path):
    from sgm_export.artifacts import read_export_manifest
    from sgm_export.export.files import write_manifest

    folder, glasses = onnx_export("gpt2")
    base_dir = tiny_models["gpt2"]
    assert verify_export(folder, str(base_dir)).passed
    other = export_onnx(str(base_dir), tmp_path / "other", random_glasses(widths_of(base_dir), seed=5))
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for file in folder.rglob("*"):
        if file.is_file():
            (tampered / file.relative_to(folder)).parent.mkdir(exist_ok=True)
            (tampered / file.relative_to(folder)).write_bytes(file.read_bytes())
    (tampered / "onnx" / "model.onnx").write_bytes((other / "onnx" / "model.onnx").read_bytes())  # the graph's glasses differ
    unrecorded = verify_export(tampered, str(base_dir))  # the manifest notices first, before anything is loaded
    assert not unrecorded.passed and unrecorded.problems == ["onnx/model.onnx differs from the SHA-256 recorded in sgm_export.json"]
    write_manifest(tampered, read_export_manifest(tampered))  # as someone who swaps the graph on purpose would
    result = verify_export(tampered, str(base_dir))
    assert not result.passed and result.max_abs_diff > 1e-4
    assert any("sgm.layers.0.scale differs" in problem for problem in result.problems)


def test_bad_sources_are_errors_that_leave_nothing_behind(tiny_llama, onnx_export, tmp_path):
    assert_clean_usage_error(sgm("onnx", tiny_llama, "--out", tmp_path / "a"), "needs glasses", "--glasses")
    folder, glasses = onnx_export("llama")
    with pytest.raises(SgmError, match="already an ONNX export"):
        export_onnx(str(folder), tmp_path / "b")
    module = export_checkpoint(str(tiny_llama), glasses, tmp_path / "module")
    with pytest.raises(SgmError, match="carries its own glasses"):
        export_onnx(str(module), tmp_path / "c", glasses)
    with pytest.raises(ShapeMismatchError):
        export_onnx(str(tiny_llama), tmp_path / "d", random_glasses([7, 7]))
    with pytest.raises(OutputExistsError):
        export_onnx(str(tiny_llama), folder, glasses)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["module"]


def test_missing_onnx_packages_are_named(monkeypatch):
    import importlib.util

    from sgm_export.export import onnx as onnx_export_module

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    with pytest.raises(SgmError, match=r"onnxscript.*sgm-export\[onnx\]"):
        onnx_export_module.require_onnx_packages()


def test_run_recipe_writes_and_verifies_the_onnx_folder(tiny_llama, labelled_jsonl, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {tiny_llama}\ndata: [{labelled_jsonl}]\nexport:\n  formats: [module, onnx]\n", encoding="utf-8")
    out = tmp_path / "out"
    result = sgm("run", recipe, "--out", out)
    assert result.code == 0, result.stderr
    assert "verify onnx: passed" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["outputs"]["onnx"] == str(out / "model-onnx") and summary["verification"]["onnx"]["passed"]
    glasses = load_glasses(out / "glasses.safetensors")
    nodes = find_glasses(ir.load(out / "model-onnx" / "onnx" / "model.onnx"))
    assert [node.values.tolist() for node in nodes] == [scale.tolist() for scale in glasses.scales]
    beside = load_glasses(out / "model-onnx" / "glasses.safetensors")
    assert beside.metadata == glasses.metadata and all(np.array_equal(a, b) for a, b in zip(beside.scales, glasses.scales))

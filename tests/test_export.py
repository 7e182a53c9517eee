"""Module and folded exports for every text family: parity with hook-applied glasses, reload,
fail-closed loading, re-saving, sharded checkpoints, and mismatched glasses."""

import hashlib
import json
import logging
import shutil

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from sgm_export.apply import glasses_applied
from sgm_export.arch import decoder_projections
from sgm_export.errors import OutputExistsError, ShapeMismatchError
from sgm_export.export import export_checkpoint
from sgm_export.glasses import Glasses
from sgm_export.models.load import load_model
from sgm_export.verify import verify_export
from tests.tiny import TEXT_FAMILIES, build_tiny_model

PROMPTS = ["you are a fool and", "the garden in the morning"]


def random_glasses(widths: list[int], seed: int = 1) -> Glasses:
    generator = torch.Generator().manual_seed(seed)
    scales = []
    for width in widths:
        scale = torch.rand(width, generator=generator)
        scale[torch.rand(width, generator=generator) < 0.3] = 1.0
        scale[0] = 0.0
        scales.append(scale)
    return Glasses(scales, {})


def logits_of(model, tokenizer) -> torch.Tensor:
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**batch).logits[batch["attention_mask"].bool()]


def reference_logits(base_dir, glasses) -> tuple[torch.Tensor, torch.Tensor]:
    """Base logits with the glasses applied by hooks, and without them."""
    base = load_model(str(base_dir))
    plain = logits_of(base.model, base.tokenizer)
    with glasses_applied(base.model, base.family, glasses):
        return logits_of(base.model, base.tokenizer), plain


def widths_of(base_dir) -> list[int]:
    base = load_model(str(base_dir))
    return [int(p.weight.shape[base.family.input_axis()]) for p in decoder_projections(base.model, base.family)]


@pytest.mark.parametrize("model_type", sorted(TEXT_FAMILIES))
def test_module_and_folded_match_hooked_base(tiny_models, tmp_path, model_type):
    base_dir = tiny_models[model_type]
    glasses = random_glasses(widths_of(base_dir))
    expected, plain = reference_logits(base_dir, glasses)
    assert (expected - plain).abs().max() > 1e-3  # the glasses change the output

    module_dir = export_checkpoint(str(base_dir), glasses, tmp_path / "module", format="module")
    module = AutoModelForCausalLM.from_pretrained(module_dir, trust_remote_code=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(base_dir)
    assert (logits_of(module, tokenizer) - expected).abs().max() < 1e-4

    folded_dir = export_checkpoint(str(base_dir), glasses, tmp_path / "folded", format="folded")
    folded = AutoModelForCausalLM.from_pretrained(folded_dir)
    assert (logits_of(folded, tokenizer) - expected).abs().max() < 1e-4
    assert (folded_dir / "glasses.safetensors").is_file()


def test_module_export_fails_closed(tiny_llama, tmp_path):
    glasses = random_glasses(widths_of(tiny_llama))
    out = export_checkpoint(str(tiny_llama), glasses, tmp_path / "module")
    with pytest.raises(ValueError, match="trust_remote_code"):
        AutoModelForCausalLM.from_pretrained(out, trust_remote_code=False)
    with pytest.raises(OSError):
        transformers.LlamaForCausalLM.from_pretrained(out)


def drop_scales_file(out):
    (out / "sgm_glasses.safetensors").unlink()


def record_scales(out):
    """Make the manifest agree with a changed scales file, as someone who edits it on purpose would."""
    manifest = json.loads((out / "sgm_export.json").read_text())
    manifest["files"]["sgm_glasses.safetensors"] = hashlib.sha256((out / "sgm_glasses.safetensors").read_bytes()).hexdigest()
    (out / "sgm_export.json").write_text(json.dumps(manifest))


def all_ones(out):
    scales = load_file(out / "sgm_glasses.safetensors")
    save_file({name: torch.ones_like(scale) for name, scale in scales.items()}, out / "sgm_glasses.safetensors")


def unrecorded_scales(out):
    manifest = json.loads((out / "sgm_export.json").read_text())
    del manifest["files"]["sgm_glasses.safetensors"]
    (out / "sgm_export.json").write_text(json.dumps(manifest))


def drop_manifest(out):
    (out / "sgm_export.json").unlink()


def drop_one_scale(out):
    scales = load_file(out / "sgm_glasses.safetensors")
    del scales["model.layers.1.mlp.down_proj.sgm_scale"]
    save_file(scales, out / "sgm_glasses.safetensors")
    record_scales(out)


def nan_scale(out):
    scales = load_file(out / "sgm_glasses.safetensors")
    scales["model.layers.0.mlp.down_proj.sgm_scale"][3] = float("nan")
    save_file(scales, out / "sgm_glasses.safetensors")
    record_scales(out)


def no_modules(out):
    config = json.loads((out / "config.json").read_text())
    config["sgm"]["modules"] = []
    (out / "config.json").write_text(json.dumps(config))
    save_file({}, out / "sgm_glasses.safetensors")
    record_scales(out)


def newer_format(out):
    config = json.loads((out / "config.json").read_text())
    config["sgm"]["format_version"] += 1
    (out / "config.json").write_text(json.dumps(config))


def drop_a_weight(out):
    weights = load_file(out / "model.sgm.safetensors")
    del weights["model.layers.0.mlp.up_proj.weight"]
    save_file(weights, out / "model.sgm.safetensors", metadata={"format": "pt"})


@pytest.mark.parametrize(
    "damage, error",
    [
        (drop_scales_file, "sgm_glasses.safetensors"),
        (all_ones, "differ from the SHA-256 in sgm_export.json"),
        (unrecorded_scales, "does not record sgm_glasses.safetensors"),
        (drop_manifest, "sgm_export.json"),
        (drop_one_scale, "lacks scales"),
        (nan_scale, "not finite"),
        (no_modules, "lists no modules"),
        (drop_a_weight, "lacks weights"),
        (newer_format, "SGM checkpoint format 2 is newer than this modeling_sgm.py reads"),
    ],
)
def test_a_damaged_module_export_never_loads_without_its_glasses(tiny_llama, tmp_path, damage, error):
    """Fail closed: whatever is missing or wrong, loading stops instead of giving a model with
    fewer (or broken) glasses, or with weights transformers would fill in at random."""
    out = export_checkpoint(str(tiny_llama), random_glasses(widths_of(tiny_llama)), tmp_path / "module")
    damage(out)
    with pytest.raises((OSError, ValueError), match=error):
        AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True)


def test_a_pipeline_takes_a_module_export_silently_and_with_its_glasses(tiny_llama, tmp_path):
    """transformers' text-generation pipeline logs "The model '...' is not supported" for a model
    whose class name is not in its list; the glasses must not cause that."""
    glasses = random_glasses(widths_of(tiny_llama))
    expected, _ = reference_logits(tiny_llama, glasses)
    out = export_checkpoint(str(tiny_llama), glasses, tmp_path / "module")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    library_logger = logging.getLogger("transformers")
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_warning()
    library_logger.addHandler(handler)
    try:
        generator = transformers.pipeline("text-generation", model=str(out), trust_remote_code=True)
    finally:
        library_logger.removeHandler(handler)
        transformers.logging.set_verbosity(verbosity)
    assert [record.getMessage() for record in records if "not supported" in record.getMessage()] == []
    assert isinstance(generator.model, transformers.LlamaForCausalLM)
    assert (logits_of(generator.model, generator.tokenizer) - expected).abs().max() < 1e-4


def test_module_export_keeps_base_weights_byte_for_byte(tiny_llama, tmp_path):
    out = export_checkpoint(str(tiny_llama), random_glasses(widths_of(tiny_llama)), tmp_path / "module")
    digest = lambda path: hashlib.sha256(path.read_bytes()).hexdigest()  # noqa: E731
    assert digest(out / "model.sgm.safetensors") == digest(tiny_llama / "model.safetensors")
    assert (out / "tokenizer.json").read_bytes() == (tiny_llama / "tokenizer.json").read_bytes()


def test_resaving_a_loaded_module_model_keeps_the_glasses(tiny_llama, tmp_path):
    glasses = random_glasses(widths_of(tiny_llama))
    expected, _ = reference_logits(tiny_llama, glasses)
    model = AutoModelForCausalLM.from_pretrained(export_checkpoint(str(tiny_llama), glasses, tmp_path / "module"), trust_remote_code=True)
    model.save_pretrained(tmp_path / "resaved")
    with pytest.raises(ValueError, match="trust_remote_code"):
        AutoModelForCausalLM.from_pretrained(tmp_path / "resaved", trust_remote_code=False)
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "resaved", trust_remote_code=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_llama)
    assert (logits_of(again, tokenizer) - expected).abs().max() < 1e-4


@pytest.mark.parametrize("fmt", ["module", "folded"])
def test_sharded_checkpoint(tmp_path, fmt):
    base_dir = build_tiny_model("qwen2", tmp_path / "sharded", max_shard_size="20KB")
    assert (base_dir / "model.safetensors.index.json").is_file()
    glasses = random_glasses(widths_of(base_dir))
    expected, _ = reference_logits(base_dir, glasses)
    out = export_checkpoint(str(base_dir), glasses, tmp_path / fmt, format=fmt)
    model = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=fmt == "module")
    assert (logits_of(model, transformers.AutoTokenizer.from_pretrained(base_dir)) - expected).abs().max() < 1e-4
    if fmt == "folded":
        shards = sorted(base_dir.glob("model-*.safetensors"))
        unchanged = [s.name for s in shards if (out / s.name).read_bytes() == s.read_bytes()]
        assert 0 < len(unchanged) < len(shards)  # only shards holding a projection were rewritten


def test_mismatched_glasses_and_existing_output(tiny_models, tmp_path):
    gpt2_glasses = random_glasses(widths_of(tiny_models["gpt2"]))
    with pytest.raises(ShapeMismatchError, match="widths"):
        export_checkpoint(str(tiny_models["llama"]), gpt2_glasses, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    llama_glasses = random_glasses(widths_of(tiny_models["llama"]))
    export_checkpoint(str(tiny_models["llama"]), llama_glasses, tmp_path / "y")
    with pytest.raises(OutputExistsError):
        export_checkpoint(str(tiny_models["llama"]), llama_glasses, tmp_path / "y")
    export_checkpoint(str(tiny_models["llama"]), llama_glasses, tmp_path / "y", force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y"]


@pytest.mark.parametrize("fmt", ["module", "folded"])
def test_verify_passes_and_catches_a_wrong_export(tiny_llama, tmp_path, fmt):
    glasses = random_glasses(widths_of(tiny_llama))
    out = export_checkpoint(str(tiny_llama), glasses, tmp_path / fmt, format=fmt)
    result = verify_export(out, str(tiny_llama))
    assert result.passed and result.max_abs_diff < 1e-4 and result.glasses_effect > 1e-3
    other = random_glasses(widths_of(tiny_llama), seed=2)  # tamper: claim different glasses
    tampered = export_checkpoint(str(tiny_llama), other, tmp_path / "other", format=fmt)
    for name in ("sgm_glasses.safetensors", "glasses.safetensors"):
        if (out / name).is_file():
            (out / name).write_bytes((tampered / name).read_bytes())
    assert not verify_export(out, str(tiny_llama)).passed


def test_verify_catches_changed_weights_even_with_a_rewritten_manifest(tiny_llama, tmp_path):
    from sgm_export.artifacts import read_export_manifest
    from sgm_export.export.files import write_manifest

    out = export_checkpoint(str(tiny_llama), random_glasses(widths_of(tiny_llama)), tmp_path / "module")
    weights = load_file(out / "model.sgm.safetensors")
    weights["model.layers.1.mlp.up_proj.weight"] *= 1.01
    save_file(weights, out / "model.sgm.safetensors", metadata={"format": "pt"})
    write_manifest(out, read_export_manifest(out))  # the hashes of the changed weights
    result = verify_export(out, str(tiny_llama))
    assert not result.passed and result.max_abs_diff > 1e-4 and not result.problems


def projection_ranges(shard, keys) -> list[tuple[int, int]]:
    """Byte ranges (in the file) of the named tensors that the shard holds."""
    from sgm_export.models.checkpoint import safetensors_data_start, safetensors_header

    header, start = safetensors_header(shard), safetensors_data_start(shard)
    return sorted((start + header[k]["data_offsets"][0], start + header[k]["data_offsets"][1]) for k in keys if k in header)


def outside(data: bytes, ranges: list[tuple[int, int]]) -> bytes:
    """The bytes of `data` outside the sorted, disjoint `ranges`."""
    kept, position = [], 0
    for start, end in ranges:
        kept.append(data[position:start])
        position = end
    return b"".join([*kept, data[position:]])


@pytest.mark.parametrize("model_type", ["llama", "gpt2"])  # scaled columns, and Conv1D's scaled rows
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_folded_shards_change_only_the_projection_bytes(tmp_path, monkeypatch, model_type, dtype):
    """The folded shard is the source shard, header and metadata included, with only the output
    projections' bytes replaced by their folded values (folded a few rows at a time here); shards
    without a projection are hard-linked with --link, and the edited ones never are."""
    from safetensors import safe_open

    from sgm_export.export import folded
    from sgm_export.export.source import open_base_checkpoint

    base_dir = build_tiny_model(model_type, tmp_path / "base", max_shard_size="20KB")
    glasses = random_glasses(widths_of(base_dir))
    shards = sorted(base_dir.glob("*.safetensors"))
    for shard in shards:
        save_file({k: v.to(dtype) for k, v in load_file(shard).items()}, shard, metadata={"format": "pt", "origin": "test"})
    originals = {shard.name: shard.read_bytes() for shard in shards}
    keys = open_base_checkpoint(str(base_dir), glasses).projection_keys
    projections = {key: torch.from_numpy(glasses.scales[layer]) for layer, key in keys.items()}
    axis = 0 if model_type == "gpt2" else 1
    monkeypatch.setattr(folded, "FOLD_BLOCK_BYTES", 100)

    out = export_checkpoint(str(base_dir), glasses, tmp_path / "folded", format="folded", link=True)
    edited = 0
    for shard in shards:
        source, result = shard.read_bytes(), (out / shard.name).read_bytes()
        assert source == originals[shard.name]  # the base is untouched
        ranges = projection_ranges(shard, projections)
        assert len(result) == len(source) and outside(result, ranges) == outside(source, ranges)
        assert ((out / shard.name).stat().st_ino == shard.stat().st_ino) == (not ranges)
        edited += bool(ranges)
        weights, reloaded = load_file(shard), load_file(out / shard.name)
        for key, weight in weights.items():
            expected = folded.fold_scale(weight, projections[key], axis) if key in projections else weight
            assert reloaded[key].dtype == dtype and torch.equal(reloaded[key], expected), key
        with safe_open(out / shard.name, "pt") as handle:
            assert handle.metadata() == {"format": "pt", "origin": "test"}
    assert 0 < edited < len(shards)


@pytest.mark.parametrize("fmt,link", [("module", False), ("module", True), ("folded", False), ("folded", True)])
def test_manifest_hashes_match_the_files_written(tmp_path, fmt, link):
    """The digests computed while copying (or read from a hard link) are those of the exported files."""
    base_dir = build_tiny_model("qwen2", tmp_path / "sharded", max_shard_size="20KB")
    out = export_checkpoint(str(base_dir), random_glasses(widths_of(base_dir)), tmp_path / "out", format=fmt, link=link)
    files = json.loads((out / "sgm_export.json").read_text())["files"]
    assert sum(name.endswith(".safetensors") for name in files) > 2
    assert files == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir() if p.name != "sgm_export.json"}


def test_folding_refuses_integer_weights(tiny_llama, tmp_path):
    """Quantized (integer) projections cannot take the scales: a clear error, and nothing written."""
    from sgm_export.export.folded import UnfoldableWeightError

    base_dir = tmp_path / "int8"
    shutil.copytree(tiny_llama, base_dir)
    weights = load_file(base_dir / "model.safetensors")
    weights["model.layers.0.mlp.down_proj.weight"] = weights["model.layers.0.mlp.down_proj.weight"].to(torch.int8)
    save_file(weights, base_dir / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(UnfoldableWeightError, match="I8"):
        export_checkpoint(str(base_dir), random_glasses(widths_of(tiny_llama)), tmp_path / "folded", format="folded")
    assert not (tmp_path / "folded").exists()


def test_verify_reads_one_version_while_the_export_is_replaced(tiny_llama, tmp_path):
    """Another process re-exports over the folder again and again (`export --force` swaps whole
    folders); every verify meanwhile must see one whole version and pass."""
    import threading

    out = tmp_path / "replaced"
    versions = [random_glasses(widths_of(tiny_llama), seed) for seed in (1, 2)]
    export_checkpoint(str(tiny_llama), versions[0], out)
    stop, replaced = threading.Event(), []

    def replace_forever():
        while not stop.is_set():
            export_checkpoint(str(tiny_llama), versions[len(replaced) % 2], out, force=True)
            replaced.append(1)

    replacer = threading.Thread(target=replace_forever)
    replacer.start()
    try:
        results = [verify_export(out, str(tiny_llama)) for _ in range(4)]
    finally:
        stop.set()
        replacer.join()
    assert len(replaced) >= 4, "the export was not replaced while it was verified"
    assert all(result.passed for result in results), [result.describe() for result in results]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["replaced"]  # no snapshot left behind

"""Bad input through the real command line, one kind per case.

Every case must end the way the CLI contract says: exit code 2, exactly one line on stderr that
names the problem and the fix (`problem; fix`), no traceback, and nothing left behind: no output,
no `.sgm-tmp-*` temporary and no `.sgm-resume-*` store, neither beside the output nor among the
inputs. The inputs are built once per session (`world`); each case gets an empty output folder.
"""

import json
import os
import re
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sgm_export.errors import SgmError
from sgm_export.export import export_checkpoint
from sgm_export.glasses import Glasses, compute_glasses, save_glasses
from sgm_export.models.load import load_model
from sgm_export.options import GlassesOptions, ScoreOptions
from sgm_export.pipeline import run_recipe
from sgm_export.recipe import load_recipe
from sgm_export.score.files import save_scores
from sgm_export.score.runner import score_examples
from tests.cli_helpers import assert_clean_usage_error, sgm
from tests.conftest import write_jsonl
from tests.tiny import build_tiny_model, overflowing_copy

ROWS = [
    {"text": "you are a stupid idiot and I hate you", "label": 1},
    {"text": "shut up you worthless moron", "label": 1},
    {"text": "what a pathetic loser, go to hell", "label": 1},
    {"text": "the weather is lovely and the garden is in bloom", "label": 0},
    {"text": "she poured the tea and opened the window", "label": 0},
    {"text": "a man rides a bicycle along the river", "label": 0},
]
LEFTOVER_PATTERNS = (".sgm-tmp-*", ".sgm-resume-*")


class World(dict):
    """The inputs the cases use, by name, built once per session."""


def copy_model(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def edit_config(model: Path, **changes) -> Path:
    config = json.loads((model / "config.json").read_text())
    config.update(changes)
    for key in [key for key, value in changes.items() if value is None]:
        del config[key]
    (model / "config.json").write_text(json.dumps(config))
    return model


def rewrite_header(path: Path, edit: Callable[[dict], None]) -> None:
    """Edit a safetensors header in place, keeping its length (padding with spaces)."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    edit(header)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    assert len(encoded) <= length
    path.write_bytes(raw[:8] + encoded.ljust(length) + raw[8 + length :])


def build_models(root: Path, llama: Path) -> dict[str, Path]:
    models = {}
    models["no-config"] = root / "no-config"
    models["no-config"].mkdir()
    (models["no-config"] / "model.safetensors").write_bytes(b"")
    models["config-not-json"] = copy_model(llama, root / "config-not-json")
    (models["config-not-json"] / "config.json").write_text("{ not json")
    models["config-no-type"] = edit_config(copy_model(llama, root / "config-no-type"), model_type=None)
    models["config-bad-value"] = edit_config(copy_model(llama, root / "config-bad-value"), hidden_size="big")
    models["mamba"] = edit_config(copy_model(llama, root / "mamba"), model_type="mamba")
    models["remote-code"] = edit_config(copy_model(llama, root / "remote-code"), auto_map={"AutoModelForCausalLM": "my_code.MyModel"})
    models["pickle-only"] = copy_model(llama, root / "pickle-only")
    torch.save(load_file(llama / "model.safetensors"), models["pickle-only"] / "pytorch_model.bin")
    (models["pickle-only"] / "model.safetensors").unlink()

    models["truncated"] = copy_model(llama, root / "truncated")
    data = (llama / "model.safetensors").read_bytes()
    (models["truncated"] / "model.safetensors").write_bytes(data[: len(data) // 2])
    models["garbage"] = copy_model(llama, root / "garbage")
    (models["garbage"] / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header at all" + data[100:])
    models["shape-lies"] = copy_model(llama, root / "shape-lies")
    rewrite_header(models["shape-lies"] / "model.safetensors", lambda h: h["model.layers.0.mlp.down_proj.weight"].update(shape=[32, 47]))
    models["missing-tensor"] = copy_model(llama, root / "missing-tensor")
    weights = load_file(llama / "model.safetensors")
    del weights["model.layers.1.mlp.down_proj.weight"]
    save_file(weights, models["missing-tensor"] / "model.safetensors", metadata={"format": "pt"})
    for layers in (0, -1):  # a config that lies about the weights' sizes
        models[f"layers{layers}"] = edit_config(copy_model(llama, root / f"layers{layers}"), num_hidden_layers=layers)
    models["wrong-width"] = edit_config(copy_model(llama, root / "wrong-width"), intermediate_size=40)
    models["wrong-vocab"] = edit_config(copy_model(llama, root / "wrong-vocab"), vocab_size=4000)
    models["no-tokenizer"] = copy_model(llama, root / "no-tokenizer")
    for path in models["no-tokenizer"].glob("*token*"):
        path.unlink()

    sharded = build_tiny_model("llama", root / "sharded", max_shard_size="20KB")
    models["missing-shard"] = copy_model(sharded, root / "missing-shard")
    sorted(models["missing-shard"].glob("model-*.safetensors"))[1].unlink()
    models["index-not-json"] = copy_model(sharded, root / "index-not-json")
    (models["index-not-json"] / "model.safetensors.index.json").write_text('{"weight_map": ')

    models["overflows-fp16"] = overflowing_copy(llama, root / "overflows-fp16")
    return models


def build_data(root: Path) -> dict[str, Path]:
    data = {"good": write_jsonl(root / "good.jsonl", ROWS)}
    data["one-class"] = write_jsonl(root / "one-class.jsonl", [row for row in ROWS if row["label"] == 1])
    data["no-label.jsonl"] = write_jsonl(root / "no-label.jsonl", [*ROWS, {"text": "hello there"}])
    data["label-2"] = write_jsonl(root / "label-2.jsonl", [*ROWS, {"text": "hello", "label": 2}])
    data["empty-text"] = write_jsonl(root / "empty-text.jsonl", [*ROWS, {"text": "   ", "label": 0}])
    data["text-number"] = write_jsonl(root / "text-number.jsonl", [*ROWS, {"text": 42, "label": 0}])
    data["not-object"] = write_jsonl(root / "not-object.jsonl", [*ROWS, ["hello", 0]])
    data["malformed"] = root / "malformed.jsonl"
    data["malformed"].write_text(json.dumps(ROWS[0]) + "\n" + json.dumps(ROWS[3]) + '\n{"text": "oops", "label": \n')
    data["no-label.csv"] = root / "no-label.csv"
    data["no-label.csv"].write_text("text,category\nhello,1\n")
    data["label-word"] = root / "label-word.csv"
    data["label-word"].write_text("text,label\nyou idiot,1\nhello,0\nnice day,yes\n")
    data["huge-field"] = root / "huge-field.csv"
    data["huge-field"].write_text("text,label\nhello,0\n" + "x" * 200_000 + ",1\n")
    data["not-utf8"] = root / "not-utf8.jsonl"
    data["not-utf8"].write_bytes(json.dumps(ROWS[0]).encode() + b'\n{"text": "caf\xe9", "label": 0}\n')
    data["empty"] = root / "empty.jsonl"
    data["empty"].write_text("\n\n")
    data["unknown-suffix"] = root / "data.txt"
    data["unknown-suffix"].write_text("you idiot\t1\n")
    data["folder"] = root / "a-folder"
    data["folder"].mkdir()
    data["missing-image"] = write_jsonl(root / "missing-image.jsonl", [*ROWS, {"text": "look", "label": 0, "image": "nope.png"}])
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    os.mkfifo(root / "fifo.png")  # reading it would block forever
    data["fifo-image"] = write_jsonl(root / "fifo-image.jsonl", [*ROWS, {"text": "look", "label": 0, "image": "fifo.png"}])
    data["device-image"] = write_jsonl(root / "device-image.jsonl", [*ROWS, {"text": "look", "label": 0, "image": "/dev/zero"}])
    data["corrupt-image"] = write_jsonl(root / "corrupt-image.jsonl", [*ROWS, {"text": "look", "label": 0, "image": "broken.png"}])
    data["long"] = write_jsonl(root / "long.jsonl", [{**row, "text": " ".join([row["text"]] * 40)} for row in ROWS])
    return data


def build_scores_and_glasses(root: Path, llama: Path, data: Path) -> dict[str, Path]:
    from sgm_export.data.sources import read_sources

    files = {}
    loaded = load_model(str(llama))
    scores = score_examples(loaded, read_sources([str(data)]), ScoreOptions())
    files["scores"] = save_scores(scores, root / "scores")
    files["glasses"] = save_glasses(compute_glasses(scores, GlassesOptions()), root / "glasses.safetensors")
    widths = scores.widths

    def glasses_file(name: str, scales: list[torch.Tensor]) -> Path:
        return save_glasses(Glasses(scales, {}), root / name)

    files["glasses-gpt2"] = glasses_file("gpt2-glasses.safetensors", [torch.full((64,), 0.5) for _ in range(2)])
    nan = [torch.ones(w) for w in widths]
    nan[1][3] = float("nan")
    save_file({f"layers.{i}.scale": s for i, s in enumerate(nan)}, root / "nan-glasses.safetensors")
    files["glasses-nan"] = root / "nan-glasses.safetensors"
    save_file({"layers.0.scale": torch.ones(widths[0]), "layers.1.scale": torch.full((widths[1],), 1.5)}, root / "big.safetensors")
    files["glasses-range"] = root / "big.safetensors"
    save_file({"layers.0.scale": torch.ones(widths[0]), "layers.2.scale": torch.ones(widths[1])}, root / "gap.safetensors")
    files["glasses-gap"] = root / "gap.safetensors"
    files["glasses-garbage"] = root / "garbage.safetensors"
    files["glasses-garbage"].write_bytes(b"definitely not safetensors")

    files["scores-garbage"] = root / "scores-garbage"
    files["scores-garbage"].mkdir()
    (files["scores-garbage"] / "scores.safetensors").write_bytes(b"\x00" * 64)
    files["scores-nan"] = root / "scores-nan"
    shutil.copytree(files["scores"], files["scores-nan"])
    tensors = load_file(files["scores"] / "scores.safetensors")
    tensors["layers.0.auroc"][5] = float("nan")
    save_file(tensors, files["scores-nan"] / "scores.safetensors", metadata={"format": "pt"})

    files["module-export"] = export_checkpoint(str(llama), compute_glasses(scores, GlassesOptions()), root / "module-export")
    files["export-no-base-config"] = copy_model(files["module-export"], root / "export-no-base-config")
    edit_config(files["export-no-base-config"], base_config=None)
    return files


def build_recipes(root: Path, llama: Path, data: dict[str, Path]) -> dict[str, Path]:
    good = f"model: {llama}\ndata: [{data['good']}]\n"
    texts = {
        "not-yaml": "model: [unclosed\n",
        "python-tag": good + "out: !!python/object/apply:os.system [echo pwned]\n",
        "bad-date": good + "out: 2024-13-01\n",
        "unknown-key": good + "glasses:\n  strenght: 2\n",
        "wrong-type": good + "score:\n  batch_size: many\n",
        "data-missing": f"model: {llama}\ndata: [{data['good']}, {root / 'missing.jsonl'}]\n",
        "model-missing": f"model: {root / 'no-such-model'}\ndata: [{data['good']}]\n",
        "duplicate-format": good + "export:\n  formats: [module, module]\n",
        "image-missing": f"model: {llama}\ndata: [{data['missing-image']}]\n",
        "good": good,
    }
    recipes = {}
    for name, text in texts.items():
        recipes[name] = root / f"{name}.yaml"
        recipes[name].write_text(text)
    return recipes


@pytest.fixture(scope="session")
def world(tiny_models, tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("bad-input-world")
    llama = tiny_models["llama"]
    (root / "models").mkdir()
    data = build_data(root)
    world = World(root=root, llama=llama, gpt2=tiny_models["gpt2"], **build_models(root / "models", llama))
    world["own-model"] = copy_model(llama, root / "models" / "own-model")  # the one a case tries to overwrite
    world.update({f"data:{name}": path for name, path in data.items()})
    world.update(build_scores_and_glasses(root, llama, data["good"]))
    world.update({f"recipe:{name}": path for name, path in build_recipes(root, llama, data).items()})
    return world


def command_line(template: str, names: dict[str, object]) -> list[str]:
    """The case's argv, with each {name} replaced (names may hold ':' and '.', unlike str.format)."""
    return re.sub(r"\{([^{}]+)\}", lambda match: str(names[match[1]]), template).split()


@dataclass
class Case:
    """A bad input: the argv (with {name} replaced from the world and {out} by the output path),
    fragments the error line must contain, and optionally an output that exists beforehand."""

    argv: str
    fragments: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    out_exists: bool = False


GOOD = "--data {data:good}"
CASES = {
    # The model: missing, not a model, unsupported, unsafe, damaged.
    "model-dir-missing": Case(
        "score {root}/no-such-dir " + GOOD + " --out {out}", ("no-such-dir", "neither a directory", "check the path")
    ),
    "model-hub-id-offline": Case(
        "score acme/no-such-model " + GOOD + " --out {out}", ("could not download", "acme/no-such-model", "network")
    ),
    "model-is-a-file": Case("score {data:good} " + GOOD + " --out {out}", ("is a file", "config.json")),
    "model-dir-without-config": Case("score {no-config} " + GOOD + " --out {out}", ("no config.json", "save_pretrained")),
    "config-not-json": Case("score {config-not-json} " + GOOD + " --out {out}", ("config.json is not valid JSON", "restore")),
    "config-without-model-type": Case("score {config-no-type} " + GOOD + " --out {out}", ("no model_type", "restore")),
    "config-bad-value": Case("score {config-bad-value} " + GOOD + " --out {out}", ("could not load", "hidden_size", "complete")),
    "unsupported-architecture": Case(
        "score {mamba} " + GOOD + " --out {out}", ("unsupported architecture 'mamba'", "supports", "llama", "gpt2", "gemma3_text", "opt")
    ),
    "pickle-only-checkpoint": Case("score {pickle-only} " + GOOD + " --out {out}", ("pytorch_model.bin", "pickle", "--allow-pickle")),
    "truncated-safetensors": Case("score {truncated} " + GOOD + " --out {out}", ("model.safetensors", "truncated", "copy the file again")),
    "garbage-safetensors": Case("score {garbage} " + GOOD + " --out {out}", ("not a valid safetensors file", "copy the file again")),
    "safetensors-shape-lies": Case("score {shape-lies} " + GOOD + " --out {out}", ("down_proj.weight", "shape [32, 47]", "bytes")),
    "checkpoint-missing-a-tensor": Case(
        "score {missing-tensor} " + GOOD + " --out {out}",
        ("lacks 1 weights", "layers.1.mlp.down_proj.weight", "at random", "whole checkpoint"),
    ),
    "sharded-checkpoint-missing-a-shard": Case("score {missing-shard} " + GOOD + " --out {out}", ("shards that are missing", "download")),
    "sharded-index-not-json": Case("score {index-not-json} " + GOOD + " --out {out}", ("not a valid safetensors index", "restore")),
    "remote-code-not-trusted": Case("score {remote-code} " + GOOD + " --out {out}", ("auto_map", "own code", "--trust-remote-code")),
    "no-tokenizer": Case("score {no-tokenizer} " + GOOD + " --out {out}", ("tokenizer", "copy")),
    "sgm-export-without-base-config": Case("score {export-no-base-config} " + GOOD + " --out {out}", ("base_config", "export")),
    "max-length-past-the-context": Case(
        "score {gpt2} --data {data:long} --max-length 512 --out {out}", ("--max-length 512", "128 tokens", "--max-length 128 or less")
    ),
    "float16-overflow": Case(
        "score {overflows-fp16} " + GOOD + " --dtype float16 --device cpu --out {out}", ("overflow float16", "layer 0", "--dtype float32")
    ),
    "config-0-layers-score": Case("score {layers0} " + GOOD + " --out {out}", ("num_hidden_layers = 0", "2 layers", "restore config.json")),
    "config-minus-1-layers-score": Case("score {layers-1} " + GOOD + " --out {out}", ("num_hidden_layers = -1", "2 layers")),
    "config-0-layers-export": Case("export {layers0} --glasses {glasses} --out {out}", ("num_hidden_layers = 0", "2 layers")),
    "config-wrong-width-export": Case("export {wrong-width} --glasses {glasses} --out {out}", ("intermediate_size = 40", "[48, 48]")),
    "config-wrong-vocab-export": Case("export {wrong-vocab} --glasses {glasses} --out {out}", ("vocab_size = 4000", "400 rows")),
    "export-of-an-export": Case("export {module-export} --glasses {glasses} --out {out}", ("already an sgm-export", "base model")),
    "export-of-a-pickle-checkpoint": Case("export {pickle-only} --glasses {glasses} --out {out}", ("pickle", "convert it to safetensors")),
    # The labelled data.
    "data-missing": Case("score {llama} --data {root}/nope.jsonl --out {out}", ("nope.jsonl does not exist", "--data")),
    "data-is-a-folder": Case("score {llama} --data {data:folder} --out {out}", ("is a folder", ".jsonl or .csv")),
    "data-unknown-format": Case("score {llama} --data {data:unknown-suffix} --out {out}", ("neither .jsonl nor .csv", "convert")),
    "data-one-class": Case("score {llama} --data {data:one-class} --out {out}", ("only toxic", "non-toxic")),
    "csv-without-label-column": Case("score {llama} --data {data:no-label.csv} --out {out}", ("no label column", "header")),
    "jsonl-row-without-label": Case("score {llama} --data {data:no-label.jsonl} --out {out}", ("line 7 has no 'label'", "1 toxic")),
    "label-not-0-or-1": Case("score {llama} --data {data:label-2} --out {out}", ("line 7 has label 2", "1 (toxic) or 0")),
    "label-word-in-csv": Case("score {llama} --data {data:label-word} --out {out}", ("line 4 has label 'yes'", "1 (toxic) or 0")),
    "empty-text": Case("score {llama} --data {data:empty-text} --out {out}", ("line 7 has an empty 'text'", "remove it")),
    "text-not-a-string": Case("score {llama} --data {data:text-number} --out {out}", ("line 7 has a 'text' that is not a string", "quote")),
    "malformed-jsonl-line": Case("score {llama} --data {data:malformed} --out {out}", ("line 3 is not valid JSON", "fix or remove")),
    "row-not-an-object": Case("score {llama} --data {data:not-object} --out {out}", ("line 7 is not an object", '{"text"')),
    "missing-image": Case("score {llama} --data {data:missing-image} --out {out}", ("line 7 names image", "nope.png", "does not exist")),
    "fifo-image": Case("score {llama} --data {data:fifo-image} --out {out}", ("fifo.png", "not a regular file", "PNG or JPEG")),
    "device-image": Case("score {llama} --data {data:device-image} --out {out}", ("/dev/zero", "not a regular file")),
    "corrupt-image": Case("score {llama} --data {data:corrupt-image} --out {out}", ("broken.png", "not a readable image", "replace")),
    "empty-data-file": Case("score {llama} --data {data:empty} --out {out}", ("has no examples", "add rows")),
    "data-not-utf8": Case("score {llama} --data {data:not-utf8} --out {out}", ("not UTF-8", "line 2", "save the file as UTF-8")),
    "csv-field-too-large": Case("score {llama} --data {data:huge-field} --out {out}", ("line 3 is not valid CSV", "field larger")),
    "unknown-builtin": Case("score {llama} --data builtin:tweets --out {out}", ("unknown built-in data 'tweets'", "builtin:rtp-toxic")),
    "unknown-builtin-split": Case("score {llama} --data builtin:neutral:train --out {out}", ("no split 'train'", ":heldout")),
    "hf-dataset-missing": Case(
        "score {llama} --data hf:acme/no-such-dataset --out {out}", ("could not load hf:acme/no-such-dataset", "network")
    ),
    # Scores and glasses that do not fit.
    "scores-missing": Case("glasses {root}/no-scores --out {out}", ("no scores at", "sgm-export score")),
    "scores-corrupt": Case("glasses {scores-garbage} --out {out}", ("not a valid scores file", "score the model again")),
    "scores-path-is-glasses": Case("glasses {glasses} --out {out}", ("layers.{i}.auroc", "score the model again")),
    "scores-with-nan": Case("glasses {scores-nan} --out {out}", ("layers.0.auroc", "NaN", "score the model again")),
    "glasses-from-another-model": Case("export {llama} --glasses {glasses-gpt2} --out {out}", ("widths 64", "widths 48", "same model")),
    "glasses-with-nan": Case(
        "export {llama} --glasses {glasses-nan} --out {out}", ("layers.1.scale contains NaN", "compute the glasses again")
    ),
    "glasses-out-of-range": Case("export {llama} --glasses {glasses-range} --out {out}", ("outside [0, 1]", "compute the glasses again")),
    "glasses-missing": Case("export {llama} --glasses {root}/none.safetensors --out {out}", ("does not exist", "sgm-export glasses")),
    "glasses-not-safetensors": Case("export {llama} --glasses {glasses-garbage} --out {out}", ("not a valid glasses file", "again")),
    "glasses-layer-gap": Case("export {llama} --glasses {glasses-gap} --out {out}", ("consecutive layers", "again")),
    "verify-against-another-model": Case("verify {module-export} --base {gpt2}", ("widths", "same model")),
    "verify-not-an-export": Case("verify {llama} --base {llama}", ("not an sgm-export checkpoint", "sgm-export export")),
    # Settings.
    "batch-size-zero": Case("score {llama} " + GOOD + " --batch-size 0 --out {out}", ("--batch-size", "greater than or equal to 1")),
    "max-length-one": Case("score {llama} " + GOOD + " --max-length 1 --out {out}", ("--max-length", "greater than or equal to 2")),
    "top-k-zero": Case("glasses {scores} --top-k 0 --out {out}", ("--top-k", "--help")),
    "threshold-above-one": Case("glasses {scores} --threshold 1.5 --out {out}", ("--threshold", "less than or equal to 1")),
    "strength-infinite": Case("glasses {scores} --strength inf --out {out}", ("--strength", "finite")),
    "chunk-size-not-a-number": Case(
        "score {llama} " + GOOD + " --out {out}", ("SGM_EXPORT_CHUNK_MB='lots'", "size in MiB"), env={"SGM_EXPORT_CHUNK_MB": "lots"}
    ),
    "device-cuda-without-gpu": Case("score {llama} " + GOOD + " --device cuda --out {out}", ("no CUDA GPU", "--device cpu")),
    # Outputs.
    "score-out-exists": Case("score {llama} " + GOOD + " --out {out}", ("already exists", "--force"), out_exists=True),
    "glasses-out-exists": Case("glasses {scores} --out {out}", ("already exists", "--force"), out_exists=True),
    "export-out-exists": Case("export {llama} --glasses {glasses} --out {out}", ("already exists", "--force"), out_exists=True),
    "run-out-exists": Case("run {recipe:good} --out {out}", ("already exists", "--force"), out_exists=True),
    "out-inside-a-file": Case("score {llama} " + GOOD + " --out {data:good}/scores", ("is a file, not a folder", "inside a folder")),
    "export-over-its-own-model": Case(
        "export {own-model} --glasses {glasses} --out {own-model} --force", ("would replace the input", "outside")
    ),
    "score-over-its-own-data": Case("score {llama} --data {data:good} --out {data:good} --force", ("would replace the input", "outside")),
    # Recipes.
    "recipe-missing": Case("run {root}/no-recipe.yaml --out {out}", ("does not exist", "recipes/demo.yaml")),
    "recipe-python-tag": Case("run {recipe:python-tag} --out {out}", ("YAML tag", "line 3", "tags are not allowed")),
    "recipe-not-yaml": Case("run {recipe:not-yaml} --out {out}", ("not valid YAML", "line", "syntax")),
    "recipe-impossible-date": Case("run {recipe:bad-date} --out {out}", ("not valid YAML", "dates")),
    "recipe-unknown-key": Case(
        "run {recipe:unknown-key} --out {out}", ("unknown key 'glasses.strenght'", "did you mean 'glasses.strength'")
    ),
    "recipe-wrong-type": Case("run {recipe:wrong-type} --out {out}", ("score.batch_size", "valid integer", "fix this value")),
    "recipe-data-missing": Case("run {recipe:data-missing} --out {out}", ("missing.jsonl does not exist", "check the path")),
    "recipe-model-missing": Case("run {recipe:model-missing} --out {out}", ("no-such-model", "neither a directory")),
    "recipe-format-twice": Case("run {recipe:duplicate-format} --out {out}", ("export.formats", "only once")),
    "recipe-image-missing": Case("run {recipe:image-missing} --out {out}", ("nope.png", "does not exist")),
    "set-not-key-value": Case("run {recipe:good} --set glasses.top_k --out {out}", ("not key=value", "--set glasses.top_k=500")),
    "set-unknown-key": Case("run {recipe:good} --set glasses.strenght=2 --out {out}", ("--set glasses.strenght", "did you mean")),
    "set-section-to-a-value": Case("run {recipe:good} --set glasses=3 --out {out}", ("--set glasses", "valid dictionary")),
    "env-bad-value": Case(
        "run {recipe:good} --out {out}",
        ("environment variable SGM_SCORE__BATCH_SIZE", "valid integer"),
        env={"SGM_SCORE__BATCH_SIZE": "lots"},
    ),
}


def leftovers(*folders: Path) -> list[Path]:
    return [path for folder in folders for pattern in LEFTOVER_PATTERNS for path in folder.rglob(pattern)]


def listing(folder: Path) -> dict[str, int]:
    return {str(path.relative_to(folder)): path.stat().st_mtime_ns for path in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_ends_cleanly(world, tmp_path, name):
    case = CASES[name]
    if name == "device-cuda-without-gpu" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "outputs" / "result"
    out.parent.mkdir()
    if case.out_exists:
        out.mkdir()
        (out / "keep.txt").write_text("previous output")
    before_outputs, before_world = listing(out.parent), listing(world["root"])
    result = sgm(*command_line(case.argv, {**world, "out": out}), env=case.env)
    assert_clean_usage_error(result, *case.fragments)
    assert "; " in result.stderr, "the line must say what is wrong, then how to fix it"
    assert listing(out.parent) == before_outputs, "something was written"
    assert listing(world["root"]) == before_world, "an input was changed"
    assert not leftovers(out.parent, world["root"], Path(world["llama"]).parent)


def test_there_are_at_least_thirty_kinds():
    assert len(CASES) >= 30


def test_run_checks_every_input_before_any_work(world, tmp_path, monkeypatch):
    """A recipe's output, data and model are checked before a temporary output exists or a model
    is loaded: a mistake anywhere in a recipe costs no scoring pass."""

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the inputs were checked")

    monkeypatch.setattr("sgm_export.pipeline.atomic_dir", no_work)
    monkeypatch.setattr("sgm_export.pipeline.load_model", no_work)
    out = f"out={tmp_path / 'out'}"
    for recipe, message in [("data-missing", "missing.jsonl"), ("model-missing", "no-such-model"), ("image-missing", "nope.png")]:
        with pytest.raises(SgmError, match=message):
            run_recipe(load_recipe(world[f"recipe:{recipe}"], [out], environ={}))
    for model in ("truncated", "remote-code", "pickle-only", "mamba", "missing-shard"):
        with pytest.raises(SgmError):
            run_recipe(load_recipe(world["recipe:good"], [out, f"model={world[model]}"], environ={}))
    with pytest.raises(SgmError, match="--max-length 512"):
        run_recipe(load_recipe(world["recipe:good"], [out, f"model={world['gpt2']}", "score.max_length=512"], environ={}))
    assert not (tmp_path / "out").exists()


def test_debug_adds_the_traceback_and_keeps_exit_code_2(world, tmp_path):
    result = sgm("score", world["root"] / "no-such-model", "--data", world["data:good"], "--out", tmp_path / "out", "--debug")
    assert result.code == 2, result.stderr
    assert "Traceback" in result.stderr and "ModelNotFoundError" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("sgm-export: error: ")

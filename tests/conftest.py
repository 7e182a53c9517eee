"""Shared fixtures: offline settings, tiny models per family, labelled data files."""

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("SGM_EXPORT_NO_PROGRESS", "1")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from tests.tiny import TEXT_FAMILIES, build_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """A saved tiny random model per text family, built once per test session."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {model_type: build_tiny_model(model_type, root / model_type, seed=seed) for seed, model_type in enumerate(TEXT_FAMILIES)}


@pytest.fixture(scope="session")
def onnx_export(tiny_models, tmp_path_factory):
    """Export a tiny model (once per family and dtype) with random glasses: (folder, glasses)."""
    from sgm_export.export.onnx import export_onnx
    from sgm_export.options import OnnxOptions
    from tests.test_export import random_glasses, widths_of

    built = {}

    def build(model_type: str, dtype: str = "float32"):
        if (model_type, dtype) not in built:
            base = tiny_models[model_type]
            glasses = random_glasses(widths_of(base))
            out = tmp_path_factory.mktemp("onnx") / f"{model_type}-{dtype}"
            built[model_type, dtype] = (export_onnx(str(base), out, glasses, OnnxOptions(dtype=dtype)), glasses)
        return built[model_type, dtype]

    return build


@pytest.fixture(scope="session")
def tiny_llama(tiny_models) -> Path:
    return tiny_models["llama"]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def labelled_jsonl(tmp_path) -> Path:
    """A small labelled data file with prompts on some rows."""
    rows = [
        {"text": "you are a stupid idiot and I hate you", "label": 1},
        {"text": "shut up you worthless moron", "label": 1, "prompt": "He turned and said:"},
        {"text": "what a pathetic loser, go to hell", "label": 1},
        {"text": "damn you, you disgusting pig", "label": 1},
        {"text": "the weather is lovely and the garden is in bloom", "label": 0},
        {"text": "she poured the tea and opened the window", "label": 0, "prompt": "In the morning,"},
        {"text": "a man rides a bicycle along the river", "label": 0},
        {"text": "the children are building a sandcastle on the beach", "label": 0},
    ]
    return write_jsonl(tmp_path / "data.jsonl", rows)

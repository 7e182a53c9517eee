"""Shared fixtures: offline settings, tiny models per family, labelled data files."""

import json
import os
from pathlib import Path

import pytest

# Tiny models run many times faster on one thread: on a shared machine, handing each small
# matrix product to a second thread costs more than the product (measured: test_export.py
# 166 s with two threads, 15 s with one, on two busy cores).
os.environ.setdefault("OMP_NUM_THREADS", "1")
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

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


@pytest.fixture(autouse=True)
def _environment_restored():
    """Tests that call the CLI's `main` in this process let it set library switches in
    os.environ (HF_HUB_DISABLE_PROGRESS_BARS, ...); restore them, so that later tests' subprocesses
    do not inherit them."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


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


@pytest.fixture(scope="session")
def tiny_glasses(tiny_llama):
    """Glasses for the tiny Llama computed from random AUROC scores, with the metadata that scoring
    records (pool, data sources, example counts), as a real run would pass them on."""
    import torch

    from sgm_export.glasses import compute_glasses
    from sgm_export.options import GlassesOptions
    from sgm_export.score.files import Scores

    config = json.loads((tiny_llama / "config.json").read_text())
    generator = torch.Generator().manual_seed(3)
    auroc = [torch.rand(config["intermediate_size"], generator=generator) for _ in range(config["num_hidden_layers"])]
    metadata = {
        "model": str(tiny_llama),
        "model_type": "llama",
        "pool": "mean",
        "max_length": "64",
        "limit": "",
        "data": json.dumps(["data.jsonl", "builtin:neutral"]),
        "n_toxic": "4",
        "n_neutral": "4",
    }
    scores = Scores(auroc, [torch.zeros_like(a) for a in auroc], [torch.zeros_like(a) for a in auroc], metadata)
    return compute_glasses(scores, GlassesOptions(threshold=0.6, strength=1.5))


@pytest.fixture(scope="session")
def licensed_llama(tiny_llama, tmp_path_factory) -> Path:
    """The tiny Llama with a model card whose front matter names a license, as Hub models have."""
    import shutil

    folder = tmp_path_factory.mktemp("licensed") / "tiny-llama"
    shutil.copytree(tiny_llama, folder)
    (folder / "README.md").write_text(
        "---\nlicense: other\nlicense_name: tiny-license\nlicense_link: LICENSE\ntags: [base-tag]\n---\n\n# A tiny Llama\n",
        encoding="utf-8",
    )
    (folder / "LICENSE").write_text("Use it kindly.\n", encoding="utf-8")
    return folder

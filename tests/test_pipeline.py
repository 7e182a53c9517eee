"""`run` resolves and checks MODEL once and hands the checked model to every stage."""

import importlib
import sys
from collections import Counter
from pathlib import Path

from sgm_export.pipeline import run_recipe
from sgm_export.recipe import load_recipe
from tests.conftest import write_jsonl

JUDGE = "def by_length(texts):\n    return [(1.0, 0.0, 0.3)[len(t) % 3] for t in texts]\n"
# Every module that resolves or audits a model, imported before the functions are wrapped.
STAGE_MODULES = (
    "sgm_export.collect",
    "sgm_export.export.source",
    "sgm_export.export.onnx.source",
    "sgm_export.models.load",
    "sgm_export.models.preflight",
    "sgm_export.verify.checkpoint",
    "sgm_export.verify.onnx",
)


def _count_calls(monkeypatch, module: str, name: str, calls: Counter) -> None:
    """Wrap `module.name` where it is defined and wherever it was imported, counting each call by
    its first argument (a model name or folder)."""
    original = getattr(importlib.import_module(module), name)

    def counted(first, *args, **kwargs):
        calls[str(first)] += 1
        return original(first, *args, **kwargs)

    for loaded in list(sys.modules.values()):
        if (loaded.__name__ or "").startswith("sgm_export") and getattr(loaded, name, None) is original:
            monkeypatch.setattr(loaded, name, counted)


def test_run_resolves_and_audits_the_model_once(tmp_path, tiny_llama, labelled_jsonl, monkeypatch):
    for module in STAGE_MODULES:
        importlib.import_module(module)
    (tmp_path / "judges_for_run.py").write_text(JUDGE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SGM_EXPORT_CACHE", str(tmp_path / "cache"))
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"text": f"prompt number {i} says that", "label": 1} for i in range(6)])
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(
        f"model: {tiny_llama}\ndata: [{labelled_jsonl}]\nout: {tmp_path / 'run'}\n"
        f"collect:\n  prompts: [{prompts}]\n  judge: judges_for_run:by_length\n  samples: 2\n  max_new_tokens: 4\n"
        "export:\n  formats: [module, folded, onnx]\n"
        "eval:\n  limit: 2\n  samples: 1\n  max_new_tokens: 3\n  neutral_limit: 2\n  adversarial: false\n",
        encoding="utf-8",
    )
    resolved, audited = Counter(), Counter()
    _count_calls(monkeypatch, "sgm_export.models.resolve", "resolve_model", resolved)
    _count_calls(monkeypatch, "sgm_export.models.audit", "audit_folder", audited)

    summary = run_recipe(load_recipe(recipe_file))

    assert all(result["passed"] for result in summary.verification.values()) and set(summary.verification) == {"module", "folded", "onnx"}
    assert set(summary.outputs) >= {"collect", "scores", "eval"}
    model_path = str(Path(tiny_llama).resolve())
    assert (resolved[str(tiny_llama)], audited[model_path]) == (1, 1), (resolved, audited)

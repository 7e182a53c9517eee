"""`sgm-export run`: every stage of a recipe, one after the other, into one output folder.

The output folder appears atomically: stages write into a temporary sibling, which is renamed
into place only when the last stage succeeds. Its layout:

    OUT/scores/               scores.safetensors, scores.json
    OUT/glasses.safetensors
    OUT/model/                the module checkpoint (export.formats: module)
    OUT/model-folded/         the folded checkpoint (export.formats: folded)
    OUT/eval/                 report.json, report.md, plots (when the recipe has an eval section)
    OUT/recipe.yaml           the recipe as run, after overrides
    OUT/summary.json          experts per layer, verification, wall time of each stage
"""

import gc
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sgm_export.data.sources import read_sources
from sgm_export.errors import SgmError
from sgm_export.export import export_checkpoint
from sgm_export.glasses import Glasses, compute_glasses, save_glasses
from sgm_export.models.load import load_model
from sgm_export.outputs import atomic_dir, check_target_free
from sgm_export.recipe import Recipe
from sgm_export.score.files import Scores, save_scores
from sgm_export.score.runner import score_examples
from sgm_export.verify import verify_export

CHECKPOINT_DIRS = {"module": "model", "folded": "model-folded"}


@dataclass
class RunSummary:
    """What a run produced, for the closing printout and summary.json."""

    out: Path
    experts_per_layer: list[int] = field(default_factory=list)
    top_auroc: list[float] = field(default_factory=list)
    n_examples: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    verification: dict[str, dict] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    evaluation: dict[str, dict] = field(default_factory=dict)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.seconds[stage] = round(time.perf_counter() - start, 3)

    def to_json(self) -> dict:
        return {
            "out": str(self.out),
            "experts_per_layer": self.experts_per_layer,
            "experts_total": sum(self.experts_per_layer),
            "top_auroc": self.top_auroc,
            "n_examples": self.n_examples,
            "outputs": self.outputs,
            "verification": self.verification,
            "seconds": self.seconds,
            "evaluation": self.evaluation,
        }


def run_recipe(recipe: Recipe, force: bool = False) -> RunSummary:
    """Score, compute glasses, export (and verify) as the recipe says; returns the summary."""
    out = Path(recipe.out)
    check_target_free(out, force)
    if "onnx" in recipe.export.formats:
        raise SgmError("export.formats: onnx is not available yet", "remove onnx from export.formats")
    summary = RunSummary(out)
    with atomic_dir(out, force=force) as staging:
        scores = _score(recipe, staging, summary)
        glasses = _glasses(recipe, scores, staging, summary)
        for fmt in recipe.export.formats:
            target = staging / CHECKPOINT_DIRS[fmt]
            with summary.timed(f"export_{fmt}"):
                export_checkpoint(recipe.model, glasses, target, format=fmt, link=recipe.export.link)
            summary.outputs[fmt] = str(out / CHECKPOINT_DIRS[fmt])
            if recipe.export.verify:
                with summary.timed(f"verify_{fmt}"):
                    result = verify_export(target, recipe.model)
                summary.verification[fmt] = {"passed": result.passed, "max_abs_diff": result.max_abs_diff}
                if not result.passed:
                    raise SgmError(f"the {fmt} export failed verification: {result.describe()}", "please report this as a bug")
        if recipe.eval is not None:
            with summary.timed("eval"):
                _evaluate(recipe, scores, glasses, staging, summary)
        (staging / "recipe.yaml").write_text(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
        (staging / "summary.json").write_text(json.dumps(summary.to_json(), indent=2) + "\n", encoding="utf-8")
    return summary


def _score(recipe: Recipe, staging: Path, summary: RunSummary) -> Scores:
    with summary.timed("load_data"):
        examples = read_sources(recipe.data, recipe.score.limit)
    summary.n_examples = {
        "toxic": sum(example.label == 1 for example in examples),
        "neutral": sum(example.label == 0 for example in examples),
    }
    with summary.timed("load_model"):
        loaded = load_model(
            recipe.model,
            device=recipe.score.device,
            dtype=recipe.score.dtype,
            allow_pickle=recipe.allow_pickle,
            trust_remote_code=recipe.trust_remote_code,
        )
    with summary.timed("score"):
        scores = score_examples(loaded, examples, recipe.score)
    del loaded
    gc.collect()
    save_scores(scores, staging / "scores")
    summary.outputs["scores"] = str(summary.out / "scores")
    summary.top_auroc = [entry["auroc"] for entry in scores.summary(top=5)["top_experts"]]
    return scores


def _glasses(recipe: Recipe, scores: Scores, staging: Path, summary: RunSummary) -> Glasses:
    with summary.timed("glasses"):
        glasses = compute_glasses(scores, recipe.glasses)
        save_glasses(glasses, staging / "glasses.safetensors")
    summary.outputs["glasses"] = str(summary.out / "glasses.safetensors")
    summary.experts_per_layer = glasses.experts_per_layer()
    return glasses


def _evaluate(recipe: Recipe, scores: Scores, glasses: Glasses, staging: Path, summary: RunSummary) -> None:
    """Base model and glasses (applied by hooks), and the pre-prompt variants if asked, into OUT/eval."""
    from sgm_export.evaluate.report import build_report, write_report_files
    from sgm_export.evaluate.runner import evaluate_variants
    from sgm_export.evaluate.setup import comparison_variants, header, load_inputs

    options = recipe.eval
    inputs = load_inputs(options)
    base = load_model(recipe.model, options.device, options.dtype, recipe.allow_pickle, recipe.trust_remote_code)
    results = evaluate_variants(
        comparison_variants(base, None, glasses, options.preprompt), inputs.prompt_sets, inputs.neutral, inputs.judge, options
    )
    report = build_report(results, header(recipe.model, recipe.model, inputs, options, glasses))
    (staging / "eval").mkdir()
    write_report_files(staging / "eval", report, results, glasses, scores)
    summary.outputs["eval"] = str(summary.out / "eval")
    summary.evaluation = {
        name: {key: report[name][key] for key in ("harmful_rate", "harmful_prompt_rate", "perplexity", "kl_from_base", "n_prompts")}
        for name in report["sections"]
    }

"""`sgm-export run`: every stage of a recipe, one after the other, into one output folder.

The output folder appears atomically: stages write into a temporary sibling, which is renamed
into place only when the last stage succeeds. Its layout:

    OUT/collect/              continuations.jsonl, collect.json (when the recipe has a collect section)
    OUT/scores/               scores.safetensors, scores.json
    OUT/glasses.safetensors
    OUT/model/                the module checkpoint (export.formats: module)
    OUT/model-folded/         the folded checkpoint (export.formats: folded)
    OUT/model-onnx/           the ONNX folder (export.formats: onnx), as `sgm-export onnx` writes it
    OUT/eval/                 report.json, report.md, plots (when the recipe has an eval section;
                              also attached to each checkpoint's card, in its eval/ folder)
    OUT/recipe.yaml           the recipe as run, after overrides (also embedded in each model card)
    OUT/summary.json          experts per layer, verification, wall time of each stage

Each checkpoint folder carries its model card (README.md); with `push.repo_id` set, the `run`
command then pushes one of them to the Hub (see `pushed_folder`).
"""

import gc
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sgm_export.data.examples import Example
from sgm_export.data.sources import read_sources
from sgm_export.errors import RecipeError, SgmError
from sgm_export.export import export_checkpoint
from sgm_export.export.onnx import export_onnx, require_onnx_packages
from sgm_export.export.onnx.families import check_onnx_family
from sgm_export.glasses import Glasses, compute_glasses, save_glasses
from sgm_export.layout import CHECKPOINT_DIRS, COLLECT_DIR, EVAL_DIR, GLASSES_FILE, ROWS_FILE, RUN_SUMMARY_FILE, SCORES_DIR
from sgm_export.models.load import load_model
from sgm_export.models.preflight import CheckedModel, check_max_length, check_model
from sgm_export.options import CollectOptions
from sgm_export.outputs import atomic_dir, check_outside_inputs, check_target_free
from sgm_export.publish.refresh import refresh_card
from sgm_export.recipe import Recipe
from sgm_export.score.files import Scores, save_scores
from sgm_export.score.runner import score_examples
from sgm_export.verify import verify_export


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
    """Score, compute glasses, export (and verify) as the recipe says; returns the summary.

    Everything the recipe names (output, data, model) is checked before any work starts, so a
    typo in the last line of a recipe does not cost a scoring pass. The model is resolved and
    checked once, here: every stage gets the checked model, not its name.
    Pushing (`push.repo_id`) happens after the output folder is in place: see `pushed_folder`.
    """
    out = Path(recipe.out)
    check_target_free(out, force)
    if "onnx" in recipe.export.formats:
        require_onnx_packages()  # before the long stages, not after them
    pushed_format = push_format(recipe)
    recipe_text = yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
    summary = RunSummary(out)
    with summary.timed("load_data"):
        examples = read_sources(recipe.data, recipe.score.limit) if recipe.data else []
    checked = check_model(recipe.model, allow_pickle=recipe.allow_pickle, trust_remote_code=recipe.trust_remote_code)
    check_max_length(checked, recipe.score.max_length)
    if "onnx" in recipe.export.formats and checked.family.multimodal:
        check_onnx_family(checked.config.get("model_type", ""), recipe.model)
    check_outside_inputs(out, [checked.source.path, *map(Path, recipe.data)])
    with atomic_dir(out, force=force) as staging:
        sources = list(recipe.data)
        if recipe.collect is not None:
            with summary.timed("collect"):
                collected = _collect(recipe, checked, staging, summary)
            examples += read_sources([str(collected)], recipe.score.limit)
            sources.append(str(out / COLLECT_DIR / collected.name))
        scores = _score(recipe, checked, examples, sources, staging, summary)
        glasses = _glasses(recipe, scores, staging, summary)
        for fmt in recipe.export.formats:
            target = staging / CHECKPOINT_DIRS[fmt]
            hub_repo_id = recipe.push.repo_id if fmt == pushed_format else None
            with summary.timed(f"export_{fmt}"):
                if fmt == "onnx":
                    export_onnx(checked, target, glasses, recipe.export.onnx)
                else:
                    export_checkpoint(
                        checked, glasses, target, format=fmt, link=recipe.export.link, recipe=recipe_text, hub_repo_id=hub_repo_id
                    )
            summary.outputs[fmt] = str(out / CHECKPOINT_DIRS[fmt])
            if recipe.export.verify:
                with summary.timed(f"verify_{fmt}"):
                    result = verify_export(target, checked)
                summary.verification[fmt] = {"passed": result.passed, "max_abs_diff": result.max_abs_diff}
                if not result.passed:
                    raise SgmError(f"the {fmt} export failed verification: {result.describe()}", "please report this as a bug")
        if recipe.eval is not None:
            with summary.timed("eval"):
                _evaluate(recipe, checked, scores, glasses, staging, summary)
            for fmt in recipe.export.formats:
                if fmt != "onnx":
                    refresh_card(staging / CHECKPOINT_DIRS[fmt], report_dir=staging / EVAL_DIR)
        (staging / "recipe.yaml").write_text(recipe_text, encoding="utf-8")
        (staging / RUN_SUMMARY_FILE).write_text(json.dumps(summary.to_json(), indent=2) + "\n", encoding="utf-8")
    return summary


def push_format(recipe: Recipe) -> str | None:
    """Which checkpoint the run pushes: None without `push.repo_id`, else `push.format` or the
    first of `export.formats`; a format the run does not export is an error before any work."""
    if recipe.push.repo_id is None:
        return None
    fmt = recipe.push.format or recipe.export.formats[0]
    if fmt not in recipe.export.formats:
        raise RecipeError(f"push.format is {fmt} but export.formats is {recipe.export.formats}", f"add {fmt} to export.formats")
    return fmt


def pushed_folder(recipe: Recipe) -> Path | None:
    """The checkpoint folder that the run pushes, or None when it pushes nothing."""
    fmt = push_format(recipe)
    return None if fmt is None else Path(recipe.out) / CHECKPOINT_DIRS[fmt]


def _collect(recipe: Recipe, checked: CheckedModel, staging: Path, summary: RunSummary) -> Path:
    """The recipe's collection (from the cache when an identical one exists), copied into
    OUT/collect; returns the rows file inside the staging folder."""
    from sgm_export.collect import collect_cached, copy_collection

    options = CollectOptions(**recipe.collect.model_dump(exclude={"prompts"}))
    folder, _reused = collect_cached(checked, recipe.collect.prompts, options, recipe.allow_pickle, recipe.trust_remote_code)
    copy_collection(folder, staging / COLLECT_DIR, force=False)
    summary.outputs["collect"] = str(summary.out / COLLECT_DIR)
    return staging / COLLECT_DIR / ROWS_FILE


def _score(
    recipe: Recipe, checked: CheckedModel, examples: list[Example], sources: list[str], staging: Path, summary: RunSummary
) -> Scores:
    summary.n_examples = {
        "toxic": sum(example.label == 1 for example in examples),
        "neutral": sum(example.label == 0 for example in examples),
    }
    with summary.timed("load_model"):
        loaded = load_model(
            checked,
            device=recipe.score.device,
            dtype=recipe.score.dtype,
            allow_pickle=recipe.allow_pickle,
            trust_remote_code=recipe.trust_remote_code,
            device_map=recipe.score.device_map,
        )
    with summary.timed("score"):
        scores = score_examples(loaded, examples, recipe.score, sources=sources)
    del loaded
    gc.collect()
    save_scores(scores, staging / SCORES_DIR)
    summary.outputs["scores"] = str(summary.out / SCORES_DIR)
    summary.top_auroc = [entry["auroc"] for entry in scores.summary(top=5)["top_experts"]]
    return scores


def _glasses(recipe: Recipe, scores: Scores, staging: Path, summary: RunSummary) -> Glasses:
    with summary.timed("glasses"):
        glasses = compute_glasses(scores, recipe.glasses)
        save_glasses(glasses, staging / GLASSES_FILE)
    summary.outputs["glasses"] = str(summary.out / GLASSES_FILE)
    summary.experts_per_layer = glasses.experts_per_layer()
    return glasses


def _evaluate(recipe: Recipe, checked: CheckedModel, scores: Scores, glasses: Glasses, staging: Path, summary: RunSummary) -> None:
    """Base model and glasses (applied by hooks), and the pre-prompt variants if asked, into OUT/eval."""
    from sgm_export.evaluate.report import build_report, write_report_files
    from sgm_export.evaluate.runner import evaluate_variants
    from sgm_export.evaluate.setup import comparison_variants, header, load_inputs

    options = recipe.eval
    inputs = load_inputs(options)
    base = load_model(checked, options.device, options.dtype, recipe.allow_pickle, recipe.trust_remote_code, options.device_map)
    results = evaluate_variants(
        comparison_variants(base, None, glasses, options.preprompt), inputs.prompt_sets, inputs.neutral, inputs.judges, options
    )
    report = build_report(results, header(recipe.model, recipe.model, inputs, options, glasses))
    (staging / EVAL_DIR).mkdir()
    write_report_files(staging / EVAL_DIR, report, results, glasses, scores)
    summary.outputs["eval"] = str(summary.out / EVAL_DIR)
    summary.evaluation = {
        name: {key: report[name][key] for key in ("harmful_rate", "harmful_prompt_rate", "perplexity", "kl_from_base", "n_prompts")}
        for name in report["sections"]
    }

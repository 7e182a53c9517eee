"""Domain-matched scoring data: the model's own continuations of toxic prompts, labelled by a judge.

Experts found on RealToxicityPrompts texts against HellaSwag contexts separate two *domains* (web
comments and video captions) as much as toxic from non-toxic text, so many of them carry ordinary
language. Here both classes come from one domain: the model continues each toxic prompt `samples`
times, the judge scores every continuation, and a continuation becomes a toxic row when its score
is at least `toxic_at`, a non-toxic row when at most `clean_at`; the ambiguous ones in between
are dropped. Each row is `prompt` (the toxic prompt: context that runs but is not pooled) plus
`text` (the continuation: what is pooled), with the prompt's `image` where it has one (a
vision-language model then continues the image and prompt as an assistant turn). With `clean_prompts`, the source prompts the judge
itself rates clean are added as non-toxic rows too (same domain, human-written).

The result is a folder with `continuations.jsonl` (a data source for `score --data`) and
`collect.json` (settings, counts, and a fingerprint of what produced it). It is cached under
`$SGM_EXPORT_CACHE/collect/`, keyed by that fingerprint, so collecting again with the same model,
prompts and settings reuses it instead of sampling again.
"""

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from sgm_export import __version__
from sgm_export.data.examples import NEUTRAL, TOXIC, Example
from sgm_export.data.judges import Judge
from sgm_export.errors import DataError
from sgm_export.evaluate.generate import sampling_settings
from sgm_export.evaluate.generate_images import sample_prompts
from sgm_export.evaluate.prompts import EvalPrompt
from sgm_export.layout import COLLECT_SUMMARY_FILE, ROWS_FILE
from sgm_export.models.cache import cache_root
from sgm_export.models.load import LoadedModel
from sgm_export.models.preflight import CheckedModel
from sgm_export.options import CollectOptions
from sgm_export.outputs import atomic_dir


@dataclass(frozen=True)
class CollectRequest:
    """What decides the collected rows: the model (by its weights' identity), the prompts and the
    settings. Its fingerprint names the cache entry."""

    model: str
    model_identity: str
    sources: tuple[str, ...]
    prompts_digest: str
    options: CollectOptions

    def fingerprint(self) -> str:
        settings = self.options.model_dump(exclude={"device", "dtype", "batch_size"})
        text = json.dumps([__version__, self.model_identity, self.prompts_digest, settings], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:24]


def collect_cached(
    model: str | CheckedModel, sources: list[str], options: CollectOptions, allow_pickle: bool = False, trust_remote_code: bool = False
) -> tuple[Path, bool]:
    """The collection for this model, prompts and settings: from the cache when an identical one
    was made before (second value True), else sampled now. Inputs are checked before anything is
    loaded (MODEL itself already, when `run` passes it checked)."""
    from sgm_export.data.judges import load_judge
    from sgm_export.data.sources import read_source
    from sgm_export.models.preflight import checked_model

    examples = [example for spec in sources for example in read_source(spec, options.limit)]
    checked = checked_model(model, allow_pickle, trust_remote_code)
    judge = load_judge(options.judge, options.toxic_at)
    request = CollectRequest(checked.source.name, model_identity(checked.source.path), tuple(sources), prompts_digest(examples), options)
    cached = cached_collection(request)
    if cached is not None:
        return cached, True
    from sgm_export.models.load import load_model

    loaded = load_model(checked, options.device, options.dtype, allow_pickle, trust_remote_code)
    return collect(loaded, examples, judge, request), False


def model_identity(path: Path) -> str:
    """The model folder and the size and modification time of each file in it: a changed
    checkpoint at the same path is a different model (hashing the weights would cost more than
    a small collection)."""
    entries = sorted((item.name, item.stat().st_size, item.stat().st_mtime_ns) for item in path.iterdir() if item.is_file())
    return json.dumps([str(path), entries])


def read_summary(folder: Path) -> dict:
    """collect.json of a collection folder."""
    return json.loads((folder / COLLECT_SUMMARY_FILE).read_text(encoding="utf-8"))


def prompts_digest(examples: list[Example]) -> str:
    """A digest of the prompt texts, so that a changed data file invalidates the cache."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(example.text.encode() + b"\0")
    return digest.hexdigest()


def cached_collection(request: CollectRequest) -> Path | None:
    """The cache folder of an earlier identical collection, if there is one."""
    folder = cache_root() / "collect" / request.fingerprint()
    return folder if (folder / COLLECT_SUMMARY_FILE).is_file() and (folder / ROWS_FILE).is_file() else None


def collect(loaded: LoadedModel, examples: list[Example], judge: Judge, request: CollectRequest) -> Path:
    """Sample, judge and label continuations of `examples` (see the module docstring); returns
    the cache folder that holds them. Refuses (one line, nothing written) a collection with no
    toxic or no non-toxic row: such data cannot rank neurons."""
    options = request.options
    prompts = [EvalPrompt(example.text, image=example.image, origin=example.origin) for example in examples]
    continuations = sample_prompts(loaded, prompts, "", sampling_settings(options), description="Collecting")
    rows = labelled_rows(examples, continuations.texts, judge, options)
    counts = {"toxic": sum(row["label"] == TOXIC for row in rows), "non_toxic": sum(row["label"] == NEUTRAL for row in rows)}
    n_sampled = len(examples) * options.samples
    if counts["toxic"] == 0 or counts["non_toxic"] == 0:
        missing = "toxic (score >= --toxic-at)" if counts["toxic"] == 0 else "non-toxic (score <= --clean-at)"
        raise DataError(
            f"the judge {judge.name} rated none of the {n_sampled} continuations {missing}",
            "sample more (--samples, --limit), use other prompts, or move --toxic-at / --clean-at",
        )
    summary = {
        "sgm_export_version": __version__,
        "fingerprint": request.fingerprint(),
        "model": request.model,
        "data": list(request.sources),
        "judge": judge.describe(),
        "settings": options.model_dump(),
        "n_prompts": len(examples),
        "n_continuations": n_sampled,
        "rows": counts,
        "clean_prompts_added": sum(row.get("source") == "prompt" for row in rows),
        "dropped_ambiguous": n_sampled - sum(row.get("source") == "continuation" for row in rows),
    }
    folder = cache_root() / "collect" / request.fingerprint()
    with atomic_dir(folder, force=True) as staging:
        (staging / ROWS_FILE).write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        (staging / COLLECT_SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return folder


def labelled_rows(examples: list[Example], texts: list[list[str]], judge: Judge, options: CollectOptions) -> list[dict]:
    """Rows for `score --data`: each continuation that is clearly toxic or clearly clean, then
    (with `clean_prompts`) each source prompt that the judge rates clean."""
    flat = [(example, text) for example, samples in zip(examples, texts) for text in samples if text.strip()]
    scores = judge.scores([text for _, text in flat])
    rows = []
    for (example, text), score in zip(flat, scores):
        label = TOXIC if score >= options.toxic_at else NEUTRAL if score <= options.clean_at else None
        if label is not None:
            row = {"prompt": example.text, "text": text, "label": label, "score": round(score, 6), "source": "continuation"}
            rows.append(row | ({"image": str(example.image.resolve())} if example.image is not None else {}))
    if options.clean_prompts:
        prompt_scores = judge.scores([example.text for example in examples])
        for example, score in zip(examples, prompt_scores):
            if score <= options.clean_at:
                row = {"text": example.text, "label": NEUTRAL, "score": round(score, 6), "source": "prompt"}
                rows.append(row | ({"image": str(example.image.resolve())} if example.image is not None else {}))
    return rows


def copy_collection(folder: Path, out: Path, force: bool) -> Path:
    """Place a collection (from the cache) at `out`, atomically."""
    with atomic_dir(out, force=force) as staging:
        for name in (ROWS_FILE, COLLECT_SUMMARY_FILE):
            shutil.copyfile(folder / name, staging / name)
    return out

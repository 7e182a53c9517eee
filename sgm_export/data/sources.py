"""Reading labelled examples from a source spec.

A source is a `.jsonl` or `.csv` file, `hf:NAME[:SPLIT]` (through the `datasets` package), or
`builtin:NAME[:SPLIT]`. A row has `text` (pooled), `label` (1 toxic, 0 non-toxic), and optionally
`prompt` (context that runs but is not pooled) and `image` (a path relative to the file).
Problems are reported with the file and line, so they can be fixed in place.
"""

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sgm_export.data.builtin import read_builtin
from sgm_export.data.examples import NEUTRAL, TOXIC, Example
from sgm_export.errors import DataError, first_line

_LABELS = {0: NEUTRAL, 1: TOXIC, "0": NEUTRAL, "1": TOXIC}  # True and False equal 1 and 0 here


def read_source(spec: str, limit: int | None = None) -> list[Example]:
    """The examples of one source, at most `limit` of them (the first ones)."""
    if spec.startswith("builtin:"):
        name, _, split = spec.removeprefix("builtin:").partition(":")
        examples = read_builtin(name, split or None)
    elif spec.startswith("hf:"):
        name, _, split = spec.removeprefix("hf:").partition(":")
        examples = _read_hf(name, split or "train")
    else:
        examples = _read_file(Path(spec))
    if not examples:
        raise DataError(f"{spec} has no examples", "add rows with 'text' and 'label'")
    return examples[:limit] if limit else examples


def read_sources(specs: Iterable[str], limit: int | None = None) -> list[Example]:
    """Examples of every source, checked to hold both labels (AUROC needs both classes)."""
    examples = [example for spec in specs for example in read_source(spec, limit)]
    require_both_labels(examples)
    return examples


def require_both_labels(examples: list[Example]) -> None:
    """Scoring compares toxic with non-toxic examples, so both must be present."""
    labels = {example.label for example in examples}
    if labels == {TOXIC}:
        raise DataError("the data has only toxic examples (label 1)", "add non-toxic examples (label 0), e.g. --data builtin:neutral")
    if labels == {NEUTRAL}:
        raise DataError("the data has only non-toxic examples (label 0)", "add toxic examples (label 1), e.g. --data builtin:rtp-toxic")


def _read_file(path: Path) -> list[Example]:
    if path.is_dir():
        raise DataError(f"data source {path} is a folder, not a file", "pass a .jsonl or .csv file, or hf:PATH for a dataset folder")
    if not path.is_file():
        raise DataError(f"data file {path} does not exist", "check the path given to --data")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return list(_rows_to_examples(_jsonl_rows(path), path))
    if suffix == ".csv":
        return list(_rows_to_examples(_csv_rows(path), path))
    raise DataError(f"data file {path} is neither .jsonl nor .csv", "convert it, or use hf:NAME for a Hub dataset")


def _jsonl_rows(path: Path) -> Iterable[tuple[int, Any]]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise _not_utf8(path, number) from None
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except (json.JSONDecodeError, RecursionError) as error:
                reason = error.msg if isinstance(error, json.JSONDecodeError) else "nested too deeply"
                raise DataError(f"{path} line {number} is not valid JSON ({reason})", "fix or remove that line") from None


def _csv_rows(path: Path) -> Iterable[tuple[int, Any]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:  # -sig: spreadsheets write a BOM
        reader = csv.DictReader(handle)
        try:
            fieldnames = reader.fieldnames
            missing = {"text", "label"} - set(fieldnames or [])
            if missing:
                raise DataError(
                    f"{path} has no {' or '.join(sorted(missing))} column",
                    "add a header row with text,label (and optionally prompt,image)",
                )
            for row in reader:
                yield reader.line_num, row
        # Both are raised while reading a line that line_num does not count yet.
        except UnicodeDecodeError:
            raise _not_utf8(path, reader.line_num + 1) from None
        except csv.Error as error:
            raise DataError(f"{path} line {reader.line_num + 1} is not valid CSV ({error})", "fix or remove that line") from None


def _not_utf8(path: Path, line: int) -> DataError:
    return DataError(f"{path} is not UTF-8 text (line {line})", "save the file as UTF-8")


def _rows_to_examples(rows: Iterable[tuple[int, Any]], path: Path) -> Iterable[Example]:
    for number, row in rows:
        yield example_from_row(row, f"{path} line {number}", base_dir=path.parent)


def example_from_row(row: Any, origin: str, base_dir: Path | None = None) -> Example:
    """Validate one row (a mapping) into an Example; `origin` names it in error messages."""
    if not isinstance(row, dict):
        raise DataError(f"{origin} is not an object with text and label", 'write each row as {"text": ..., "label": 0 or 1}')
    for column in ("text", "label"):
        if column not in row or row[column] is None:
            raise DataError(f"{origin} has no {column!r}", "give every row a 'text' and a 'label' (1 toxic, 0 non-toxic)")
    text = row["text"]
    if not isinstance(text, str):
        raise DataError(f"{origin} has a 'text' that is not a string ({text!r})", "quote the text in that row")
    if not text.strip():
        raise DataError(f"{origin} has an empty 'text'", "give every row some text to score, or remove it")
    label = row["label"]
    label = label.strip() if isinstance(label, str) else label
    if isinstance(label, float) or not isinstance(label, (int, str)) or label not in _LABELS:
        raise DataError(f"{origin} has label {row['label']!r}", "labels must be 1 (toxic) or 0 (non-toxic)")
    prompt = row.get("prompt") or ""
    if not isinstance(prompt, str):
        raise DataError(f"{origin} has a 'prompt' that is not text", "make 'prompt' a string or leave it out")
    image = row.get("image") or None
    image_path = None
    if image is not None:
        if not isinstance(image, str):
            raise DataError(f"{origin} has an 'image' that is not a path", "make 'image' a path relative to the data file")
        image_path = (base_dir / image) if base_dir is not None else Path(image)
        if not image_path.exists():
            raise DataError(
                f"{origin} names image {image_path}, which does not exist", "fix the path (relative to the data file) or drop 'image'"
            )
        if not image_path.is_file():  # a folder, FIFO or device: opening it could block or read forever
            raise DataError(f"{origin} names image {image_path}, which is not a regular file", "point 'image' at a PNG or JPEG file")
        _check_image(image_path, origin)
    extra = {key: value for key, value in row.items() if key not in {"text", "label", "prompt", "image"}}
    return Example(text=text, label=_LABELS[label], prompt=prompt, image=image_path, origin=origin, extra=extra)


def _check_image(path: Path, origin: str) -> None:
    """Catch an unreadable image when the data is read, not halfway through scoring.

    `verify` parses the file's structure without decoding every pixel, so this stays cheap.
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as error:  # PIL raises many types for "not an image" and "damaged"
        raise DataError(
            f"{origin} names image {path}, which is not a readable image ({first_line(error)})", "replace or remove that image"
        ) from None


def _read_hf(name: str, split: str) -> list[Example]:
    try:
        import datasets
    except ImportError:
        raise DataError("hf: sources need the datasets package", "pip install 'sgm-export[hf]'") from None
    try:
        rows = datasets.load_dataset(name, split=split)
    except Exception as error:  # datasets raises many unrelated types for "not found / offline"
        raise DataError(
            f"could not load hf:{name}:{split} ({first_line(error)})", "check the dataset name, split and your network"
        ) from None
    return [example_from_row(dict(row), f"hf:{name}:{split} row {number}") for number, row in enumerate(rows, start=1)]

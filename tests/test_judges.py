"""Judges on known strings, the hf: judge against its own model's logits, callable judges, errors."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification, LlamaConfig, LlamaForSequenceClassification

from sgm_export.data.judges import JudgeError, load_judge, toxic_label_index
from tests.tiny import build_tokenizer

HARMFUL = ["you are a fucking idiot", "shut up you stupid bitch", "go to hell, you worthless piece of shit"]
HARMLESS = ["the weather is lovely today", "she poured the tea and opened the window", "a man rides a bicycle along the river"]


@pytest.mark.parametrize("name", ["profanity-check", "hatesonar"])
def test_offline_judges_tell_insults_from_everyday_sentences(name):
    judge = load_judge(name)
    scores, verdicts = judge.harmful(HARMFUL + HARMLESS)
    assert verdicts == [True] * len(HARMFUL) + [False] * len(HARMLESS), scores
    assert all(0.0 <= score <= 1.0 for score in scores)
    assert judge.describe()["name"] == name and judge.describe()["threshold"] == 0.5


def test_threshold_decides_the_verdict():
    lenient = load_judge("profanity-check", threshold=1.0)
    assert lenient.harmful(["the weather is lovely today"])[1] == [False]
    strict = load_judge("profanity-check", threshold=0.0)
    assert strict.harmful(["the weather is lovely today"])[1] == [True]


def write_judge_module(folder, body: str, name: str = "my_judges") -> str:
    (folder / f"{name}.py").write_text(body, encoding="utf-8")
    return name


def test_callable_judge_from_the_current_directory(tmp_path, monkeypatch):
    module = write_judge_module(tmp_path, "def shouting(texts):\n    return [t.isupper() for t in texts]\n")
    monkeypatch.chdir(tmp_path)
    judge = load_judge(f"{module}:shouting")
    assert judge.harmful(["HEY YOU", "hello"]) == ([1.0, 0.0], [True, False])


@pytest.mark.parametrize(
    "body, message",
    [
        ("def bad(texts):\n    return [2.0 for t in texts]\n", "outside [0, 1]"),
        ("def bad(texts):\n    return [0.5]\n", "returned 1 scores for 2 texts"),
    ],
)
def test_callable_judge_with_unusable_scores_is_an_error(tmp_path, monkeypatch, body, message):
    module = write_judge_module(tmp_path, body, name=f"bad_{abs(hash(message))}")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(JudgeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_judge(f"{module}:bad").scores(["a", "b"])


@pytest.mark.parametrize(
    "name, message", [("nonsense", "unknown judge"), ("no_such_module_xyz:f", "cannot import"), ("json:nothing", "no function")]
)
def test_unknown_judges_are_one_line_errors(name, message):
    with pytest.raises(JudgeError, match=message):
        load_judge(name)


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    """A tiny random sequence classifier with labels non-toxic / toxic, saved as safetensors."""
    folder = tmp_path_factory.mktemp("classifier")
    tokenizer = build_tokenizer(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        id2label={0: "non-toxic", 1: "toxic"},
        label2id={"non-toxic": 0, "toxic": 1},
    )
    LlamaForSequenceClassification(config).save_pretrained(folder)
    return folder


def test_hf_judge_is_the_toxic_probability_of_the_classifier(tiny_classifier):
    texts = ["you idiot", "a quiet afternoon in the park", "what"]
    scores = load_judge(f"hf:{tiny_classifier}").scores(texts)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifier).eval()
    tokenizer = build_tokenizer(tiny_classifier / "again")
    with torch.no_grad():
        expected = [float(model(**tokenizer(text, return_tensors="pt")).logits.softmax(-1)[0, 1]) for text in texts]
    assert scores == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(
    "labels, index",
    [
        ({0: "neutral", 1: "toxic"}, 1),
        ({0: "NON_TOXIC", 1: "TOXIC"}, 1),
        ({0: "toxic", 1: "severe_toxic", 2: "obscene"}, 0),
        ({0: "not toxic", 1: "toxicity"}, 1),
    ],
)
def test_the_toxic_label_is_found_by_name(labels, index):
    assert toxic_label_index(labels, "m") == index


def test_a_classifier_without_a_toxic_label_is_refused():
    with pytest.raises(JudgeError, match="none of them"):
        toxic_label_index({0: "positive", 1: "negative"}, "sentiment-model")

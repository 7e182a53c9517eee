"""Scoring: the pooling mask covers exactly the text tokens, batched pooling equals a direct
per-example computation, and the AUROC equals scikit-learn's on the same pooled activations."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from sgm_export.arch import decoder_projections
from sgm_export.data.encode import encode_text_example
from sgm_export.data.examples import Example
from sgm_export.data.sources import read_source
from sgm_export.models.load import load_model
from sgm_export.options import ScoreOptions
from sgm_export.score.overflow import ActivationOverflowError, check_finite
from sgm_export.score.runner import pooled_activations, score_examples
from sgm_export.score.store import PooledStore
from tests.tiny import overflowing_copy


@pytest.fixture(scope="module")
def loaded(tiny_llama):
    return load_model(str(tiny_llama))


def test_mask_covers_text_tokens_only(loaded):
    tokenizer = loaded.tokenizer
    example = Example(text=" you utter fool", label=1, prompt="He said")
    encoded = encode_text_example(tokenizer, example, max_length=64)
    text_ids = tokenizer(example.text, add_special_tokens=False)["input_ids"]
    prompt_ids = tokenizer(example.prompt, add_special_tokens=False)["input_ids"]
    assert encoded.input_ids == [tokenizer.bos_token_id] + prompt_ids + text_ids
    assert encoded.pool_mask == [False] * (1 + len(prompt_ids)) + [True] * len(text_ids)


def test_truncation_keeps_the_end_of_the_prompt_and_some_text(loaded):
    example = Example(text="one two three four five six seven", label=0, prompt="alpha beta gamma delta epsilon")
    encoded = encode_text_example(loaded.tokenizer, example, max_length=6)
    assert len(encoded.input_ids) <= 6 and any(encoded.pool_mask)
    prompt_ids = loaded.tokenizer(example.prompt, add_special_tokens=False)["input_ids"]
    kept_prompt = encoded.input_ids[1 : encoded.pool_mask.index(True)]
    assert kept_prompt == prompt_ids[len(prompt_ids) - len(kept_prompt) :]


def direct_pooled(loaded, example: Example, pool: str) -> torch.Tensor:
    """Pool by hand: run one example alone, keep full activations, reduce over text positions."""
    encoded = encode_text_example(loaded.tokenizer, example, max_length=64)
    captured = []
    handles = [
        p.register_forward_pre_hook(lambda m, args: captured.append(args[0][0])) for p in decoder_projections(loaded.model, loaded.family)
    ]
    with torch.no_grad():
        loaded.model(torch.tensor([encoded.input_ids]))
    for handle in handles:
        handle.remove()
    text = torch.tensor(encoded.pool_mask)
    reduce = (lambda x: x.mean(0)) if pool == "mean" else (lambda x: x.max(0).values)
    return torch.cat([reduce(layer[text]) for layer in captured])


@pytest.mark.parametrize("pool", ["mean", "max"])
def test_batched_pooling_equals_direct_computation(loaded, labelled_jsonl, pool):
    examples = read_source(str(labelled_jsonl))
    batched = pooled_activations(loaded, examples, ScoreOptions(pool=pool, batch_size=3))
    direct = torch.stack([direct_pooled(loaded, example, pool) for example in examples])
    torch.testing.assert_close(batched, direct, atol=1e-5, rtol=1e-5)


def test_auroc_equals_sklearn_on_the_same_pooled_activations(loaded, labelled_jsonl):
    examples = read_source(str(labelled_jsonl))
    options = ScoreOptions(batch_size=4)
    scores = score_examples(loaded, examples, options)
    pooled = pooled_activations(loaded, examples, options).numpy()
    labels = [example.label for example in examples]
    expected = np.array([roc_auc_score(labels, pooled[:, j]) for j in range(pooled.shape[1])])
    np.testing.assert_allclose(torch.cat(scores.auroc).numpy(), expected, atol=1e-6)
    assert scores.widths == [48, 48]
    assert scores.metadata.n_toxic == 4 and scores.metadata.pool == "mean"
    toxic = torch.tensor(labels) == 1
    torch.testing.assert_close(torch.cat(scores.mean_toxic), torch.from_numpy(pooled)[toxic].mean(0))


def test_float16_overflow_is_an_error_never_nan_scores(tiny_llama, labelled_jsonl, tmp_path):
    """Activations past float16's range stop the run with the layer and the fix; the same model
    scores in float32, where every AUROC is a number in [0, 1]."""
    model = overflowing_copy(tiny_llama, tmp_path / "overflows")
    examples = read_source(str(labelled_jsonl))
    half = load_model(str(model), device="cpu", dtype="float16")
    with pytest.raises(ActivationOverflowError, match="overflow float16 .*layer 0.*line"):
        score_examples(half, examples, ScoreOptions())
    scores = score_examples(load_model(str(model), device="cpu", dtype="float32"), examples, ScoreOptions())
    aurocs = torch.cat(scores.auroc)
    assert torch.isfinite(aurocs).all() and (aurocs >= 0).all() and (aurocs <= 1).all()
    pooled = pooled_activations(load_model(str(model), dtype="float32"), examples, ScoreOptions())
    assert pooled.abs().max() > torch.finfo(torch.float16).max  # the values float16 could not hold


@pytest.mark.parametrize("budget_rows", [0, 1, 3])
def test_non_finite_activations_in_float32_point_at_the_weights(budget_rows):
    """Wherever the bad row is kept (on the "device" or spilled to the host), the check finds it."""
    clean = PooledStore(3, device_budget_bytes=budget_rows * 10 * 4)
    clean.add([0, 1, 2], torch.zeros(3, 10))
    check_finite(clean, [4, 6], torch.float16, ["a", "b", "c"])
    store = PooledStore(3, device_budget_bytes=budget_rows * 10 * 4)
    store.add([2, 0], torch.zeros(2, 10))
    pooled = torch.zeros(1, 10)
    pooled[0, 7] = float("nan")
    store.add([1], pooled)
    with pytest.raises(ActivationOverflowError, match=r"NaN or infinite in float32 \(layer 1 .* on b\).*weights"):
        check_finite(store, [4, 6], torch.float32, ["a", "b", "c"])


def test_a_tokenizer_without_a_pad_token_pads_with_eos_and_the_scores_do_not_change(tiny_llama, labelled_jsonl, monkeypatch):
    """One padding rule for every stage (`LoadedModel.pad_token_id`); scoring used to pad such a
    batch with 0: padded positions are masked, so the pooled activations are bit for bit equal."""
    from sgm_export.models.load import LoadedModel

    loaded = load_model(str(tiny_llama))
    loaded.tokenizer.pad_token = None
    assert loaded.tokenizer.pad_token_id is None and loaded.pad_token_id == loaded.tokenizer.eos_token_id != 0
    examples = read_source(str(labelled_jsonl))
    options = ScoreOptions(batch_size=3)
    with_eos = pooled_activations(loaded, examples, options)
    monkeypatch.setattr(LoadedModel, "pad_token_id", property(lambda self: 0))
    assert torch.equal(with_eos, pooled_activations(loaded, examples, options))

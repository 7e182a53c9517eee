"""Evaluation sampling: the cached decode loop against transformers' greedy `generate`, tokens
that do not depend on batch size, top-k respected (checked by an uncached recomputation), the
inverse-CDF draw against probabilities computed by hand, and EOS stopping the loop."""

import math

import numpy as np
import pytest
import torch

from sgm_export.evaluate.generate import SamplingSettings, encode_prompt, sample_continuations
from sgm_export.evaluate.prompts import EvalPrompt
from sgm_export.evaluate.sampling import draw_tokens
from sgm_export.models.load import load_model

PROMPTS = [EvalPrompt(text) for text in ("you are", "the cat sat on the mat and then it", "why would anyone", "I told him to", "no")]


def settings(**overrides) -> SamplingSettings:
    values = dict(samples=3, max_new_tokens=6, top_k=50, temperature=1.0, seed=11, batch_size=8, max_length=32)
    return SamplingSettings(**{**values, **overrides})


def cut_at(sequence: list[int], stops: set[int]) -> list[int]:
    return next((sequence[:i] for i, token in enumerate(sequence) if token in stops), sequence)


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text", "gpt2", "opt"])
def test_top_k_1_equals_greedy_generate_on_a_left_padded_batch(tiny_models, model_type):
    loaded = load_model(str(tiny_models[model_type]), "cpu", "float32")
    tokenizer, model = loaded.tokenizer, loaded.model
    ours = sample_continuations(loaded, PROMPTS, "", settings(samples=1, top_k=1, batch_size=len(PROMPTS)))
    ids = [encode_prompt(tokenizer, prompt.text, "", 32) for prompt in PROMPTS]
    width = max(map(len, ids))
    padding = loaded.pad_token_id
    input_ids = torch.tensor([[padding] * (width - len(row)) + row for row in ids])
    attention_mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in ids])
    with torch.inference_mode():
        output = model.generate(input_ids=input_ids, attention_mask=attention_mask, do_sample=False, max_new_tokens=6, pad_token_id=padding)
    stops = {tokenizer.eos_token_id}
    expected = [cut_at(row, stops) for row in output[:, width:].tolist()]
    assert [per_prompt[0] for per_prompt in ours.tokens] == expected
    assert any(len(row) == 6 for row in expected)  # the comparison covers whole continuations


def test_same_seed_gives_the_same_tokens_for_every_batch_size_and_prompt_subset(tiny_llama):
    loaded = load_model(str(tiny_llama), "cpu", "float32")
    reference = sample_continuations(loaded, PROMPTS, "", settings(batch_size=len(PROMPTS) * 3))
    for batch_size in (1, 2, 4, 7):
        assert sample_continuations(loaded, PROMPTS, "", settings(batch_size=batch_size)).tokens == reference.tokens
    assert sample_continuations(loaded, PROMPTS[:2], "", settings(batch_size=4)).tokens == reference.tokens[:2]
    assert any(len({tuple(tokens) for tokens in per_prompt}) > 1 for per_prompt in reference.tokens)  # samples differ
    assert sample_continuations(loaded, PROMPTS, "", settings(seed=12)).tokens != reference.tokens


@pytest.mark.parametrize("top_k, inside", [(3, True), (0, False)])
def test_sampled_tokens_stay_in_the_top_k(tiny_llama, top_k, inside):
    """Each sampled token, recomputed without cache or padding, is among the k highest logits
    (and with top_k 0, the full distribution, some token falls outside the top 50)."""
    loaded = load_model(str(tiny_llama), "cpu", "float32")
    sampled = sample_continuations(loaded, PROMPTS, "", settings(top_k=top_k, samples=4))
    ranks = []
    with torch.inference_mode():
        for prompt, per_prompt in zip(PROMPTS, sampled.tokens, strict=True):
            context = encode_prompt(loaded.tokenizer, prompt.text, "", 32)
            for tokens in per_prompt:
                logits = loaded.model(torch.tensor([context + tokens])).logits[0, len(context) - 1 : len(context) - 1 + len(tokens)]
                for position, token in enumerate(tokens):
                    ranks.append(int((logits[position] > logits[position, token]).sum()))
    assert len(ranks) > 50
    if inside:
        assert max(ranks) < top_k and min(ranks) == 0 and any(rank > 0 for rank in ranks)
    else:
        assert max(ranks) >= 50


def test_inverse_cdf_draw_matches_probabilities_computed_by_hand():
    probabilities = np.array([0.1, 0.4, 0.2, 0.3])
    logits = torch.tensor(np.log(probabilities), dtype=torch.float32).repeat(4, 1)
    uniforms = torch.tensor([0.0, 0.5, 0.6, 0.99], dtype=torch.float64)
    # top 2: tokens 1 (0.4) then 3 (0.3), renormalised to 4/7 and 3/7.
    assert draw_tokens(logits, uniforms, top_k=2, temperature=1.0).tolist() == [1, 1, 3, 3]
    # full distribution, vocabulary order: cumulative 0.1, 0.5, 0.7, 1.0.
    full = draw_tokens(logits, torch.tensor([0.05, 0.45, 0.65, 0.99], dtype=torch.float64), top_k=0, temperature=1.0)
    assert full.tolist() == [0, 1, 2, 3]
    blocked = torch.tensor([[-math.inf, 0.0, -math.inf]]).repeat(3, 1)
    assert draw_tokens(blocked, torch.tensor([0.0, 0.5, 0.999999], dtype=torch.float64), top_k=0, temperature=1.0).tolist() == [1, 1, 1]


@pytest.mark.parametrize("top_k, temperature", [(3, 1.0), (3, 0.5), (0, 2.0)])
def test_draw_frequencies_follow_the_tempered_top_k_softmax(top_k, temperature):
    logits = torch.tensor([1.0, 3.0, 0.5, 2.0, -1.0])
    n = 20000
    uniforms = torch.arange(n, dtype=torch.float64) / n  # evenly spaced: frequencies are exact up to 1/n
    drawn = draw_tokens(logits.repeat(n, 1), uniforms, top_k=top_k, temperature=temperature)
    kept = np.argsort(-logits.numpy())[: top_k or len(logits)]
    weights = np.zeros(len(logits))
    weights[kept] = np.exp(logits.numpy()[kept] / temperature)
    expected = weights / weights.sum()
    observed = np.bincount(drawn.numpy(), minlength=len(logits)) / n
    assert np.abs(observed - expected).max() < 2e-4


def test_each_row_stops_at_eos_and_the_loop_ends_when_all_have(tiny_llama):
    """EOS is forced for the first row (the longest prompt) at once and for all rows at the third
    forward pass: the longest prompt's continuation is empty, the others have two tokens, the
    loop stops after three passes (not six), and the lm_head only ever sees the last position."""
    loaded = load_model(str(tiny_llama), "cpu", "float32")
    eos = loaded.tokenizer.eos_token_id
    seen_lengths = []

    def force_eos(_module, inputs, output):
        seen_lengths.append(inputs[0].shape[1])
        rows = slice(0, 1) if len(seen_lengths) < 3 else slice(None)
        output[rows, :, eos] = 1e4
        return output

    handle = loaded.model.lm_head.register_forward_hook(force_eos)
    try:
        sampled = sample_continuations(loaded, PROMPTS[:3], "", settings(samples=1, batch_size=3))
    finally:
        handle.remove()
    assert seen_lengths == [1, 1, 1]
    assert [len(per_prompt[0]) for per_prompt in sampled.tokens] == [2, 0, 2]
    assert sampled.texts[1] == [""] and all(eos not in per_prompt[0] for per_prompt in sampled.tokens)

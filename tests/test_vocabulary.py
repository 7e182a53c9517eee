"""Vocabulary toxicity: each neuron's output column read through the norms and the unembedding."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from sgm_export.arch import decoder_layers, decoder_projections, family_for
from sgm_export.data.judges import Judge
from sgm_export.errors import SgmError
from sgm_export.score.vocabulary import toxic_token_ids, vocabulary_toxicity
from tests.tiny import build_tiny_model


def _brute_force(model, family, toxic_ids):
    """z_j from the full [vocab x neurons] logit matrix, the way the module docstring defines it."""
    unembedding = model.get_output_embeddings().weight.float()
    final = model.model.norm
    result = []
    for layer, projection in zip(decoder_layers(model, family), decoder_projections(model, family)):
        columns = projection.weight.float()
        post = getattr(layer, "post_feedforward_layernorm", None)
        # Each column through the norms as a residual vector would go (the norms' scale factors
        # cancel in a z-score), then through the unembedding.
        written = columns.T
        if post is not None:
            written = post(written)
        logits = final(written) @ unembedding.T  # [d_ff, vocab]
        toxic = logits[:, toxic_ids].mean(1)
        result.append((toxic - logits.mean(1)) / logits.std(1, unbiased=False))
    return result


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
def test_vocabulary_toxicity_equals_the_full_logit_computation(tmp_path, model_type):
    path = build_tiny_model(model_type, tmp_path / model_type, seed=3)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    family = family_for(model.config.model_type)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # norms with gains far from 1, so that reading through them matters
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
    toxic_ids = [5, 17, 60, 61, 200]
    with torch.no_grad():
        expected = _brute_force(model, family, toxic_ids)
    got = vocabulary_toxicity(model, family, toxic_ids)
    for layer_got, layer_expected in zip(got, expected):
        torch.testing.assert_close(layer_got, layer_expected, atol=2e-4, rtol=2e-3)
    assert max(layer.abs().max() for layer in got) > 0.1  # not a trivial zero


def test_toxic_tokens_are_whole_words_the_judge_flags(tmp_path):
    from tests.tiny import build_tokenizer

    tokenizer = build_tokenizer(None)
    judge = Judge("len5", 0.5, lambda texts: [float(len(text) == 5) for text in texts])
    ids = toxic_token_ids(tokenizer, judge, 0.5)
    words = [tokenizer.decode([index]) for index in ids]
    assert words and all(len(word.strip()) == 5 and word.strip().isalpha() for word in words)


def test_a_model_without_output_embedding_is_refused(tmp_path):
    path = build_tiny_model("llama", tmp_path / "llama", seed=1)
    model = AutoModelForCausalLM.from_pretrained(path)
    model.get_output_embeddings = lambda: None
    with pytest.raises(SgmError, match="no output embedding"):
        vocabulary_toxicity(model, family_for("llama"), [1, 2])

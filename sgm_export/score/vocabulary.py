"""What each neuron writes: how strongly its output direction promotes toxic tokens.

A neuron j of layer i adds `a_j * W_down[:, j]` to the residual stream. Read directly through the
final norm's gain (and the layer's post-MLP norm, where the family has one) and the unembedding
E, that column raises the logit of token t by `E_t . v_j`. Its *vocabulary toxicity* is the
z-score of the toxic tokens' mean logit change against the whole vocabulary's:

    z_j = (mean_{t in T} E_t - mean_t E_t) . v_j / std_t(E_t . v_j)

computed for all neurons at once from the vocabulary's mean and covariance (no [vocab x neurons]
matrix is formed). T, the toxic tokens, are the vocabulary entries (whole alphabetic words of
three letters or more) that a judge scores at least `threshold`, so no word list is hard-coded.

AUROC on text finds neurons that *respond* to toxic input, which includes everything that
differs between the toxic and non-toxic data (domain, style); this finds neurons that *write*
toxic words, independent of any data. The sign of a neuron's activation decides whether it
promotes or suppresses them, so the glasses combine the two (see `glasses.py`).
"""

import re

import torch
from torch import nn

from sgm_export.arch import Family, decoder_layers, decoder_projections
from sgm_export.data.judges import Judge
from sgm_export.errors import SgmError

WORD = re.compile(r"\s?[A-Za-z]{3,}")
# Norms some families apply to the MLP's output before it joins the residual stream (Gemma 2/3).
POST_MLP_NORMS = ("post_feedforward_layernorm",)
FINAL_NORMS = ("norm", "final_layernorm", "ln_f", "final_layer_norm")


def toxic_token_ids(tokenizer, judge: Judge, threshold: float) -> list[int]:
    """Vocabulary entries that are whole words the judge scores at least `threshold`."""
    words = {index: tokenizer.decode([index]) for index in range(len(tokenizer))}
    candidates = [index for index, word in words.items() if WORD.fullmatch(word)]
    scores = judge.scores([words[index].strip().lower() for index in candidates])
    return [index for index, score in zip(candidates, scores) if score >= threshold]


@torch.no_grad()
def vocabulary_toxicity(model: nn.Module, family: Family, toxic_ids: list[int]) -> list[torch.Tensor]:
    """z_j of every neuron, per layer (see the module docstring); float32 on the CPU."""
    unembedding = model.get_output_embeddings()
    if unembedding is None or getattr(unembedding, "weight", None) is None:
        raise SgmError(
            f"{type(model).__name__} has no output embedding to read neurons' vocabulary through",
            "rank experts by AUROC (--no-vocabulary when scoring, glasses --rank auroc)",
        )
    if not toxic_ids:
        raise SgmError("the judge rated no word of the vocabulary toxic", "use another --vocab-judge or a lower --vocab-threshold")
    vocabulary = unembedding.weight.detach().float().cpu()
    mean = vocabulary.mean(0)
    centred = vocabulary - mean
    covariance = centred.T @ centred / vocabulary.shape[0]
    direction = vocabulary[toxic_ids].mean(0) - mean
    final_gain = _gain(_final_norm(model), vocabulary.shape[1])
    layers = decoder_layers(model, family)
    result = []
    for layer, projection in zip(layers, decoder_projections(model, family)):
        columns = _columns(projection, family).float().cpu()  # [hidden, d_ff]
        gain = final_gain * _gain(_post_mlp_norm(layer), columns.shape[0])
        written = gain[:, None] * columns
        spread = ((covariance @ written) * written).sum(0).clamp_min(1e-30).sqrt()
        result.append((direction @ written) / spread)
    return result


def _columns(projection: nn.Module, family: Family) -> torch.Tensor:
    """The output projection's weight as [hidden, d_ff]: one column per neuron."""
    weight = projection.weight.detach()
    return weight if family.weight_layout == "out_in" else weight.T


def _final_norm(model: nn.Module) -> nn.Module | None:
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    return next((getattr(decoder, name) for name in FINAL_NORMS if isinstance(getattr(decoder, name, None), nn.Module)), None)


def _post_mlp_norm(layer: nn.Module) -> nn.Module | None:
    return next((getattr(layer, name) for name in POST_MLP_NORMS if isinstance(getattr(layer, name, None), nn.Module)), None)


def _gain(norm: nn.Module | None, width: int) -> torch.Tensor:
    """The elementwise gain a norm applies to a direction (its scale factor does not change a
    direction, and z-scores ignore scale). RMS norms are probed on a random vector, which also
    covers Gemma's `1 + weight`; LayerNorm's centring is ignored and its weight used."""
    if norm is None:
        return torch.ones(width)
    if isinstance(norm, nn.LayerNorm):
        return norm.weight.detach().float().cpu() if norm.weight is not None else torch.ones(width)
    probe = torch.randn(1, width, generator=torch.Generator().manual_seed(0))
    parameter = next(norm.parameters(), None)
    dtype = parameter.dtype if parameter is not None else torch.float32
    device = parameter.device if parameter is not None else torch.device("cpu")
    with torch.no_grad():
        out = norm(probe.to(device, dtype)).float().cpu()
    unit = probe * torch.rsqrt(probe.pow(2).mean(-1, keepdim=True))
    return (out / unit)[0]

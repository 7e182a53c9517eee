"""Pooling a neuron vector over the scored tokens of each sequence, in float32."""

import torch

POOLS = ("mean", "max")


def pool_tokens(activations: torch.Tensor, mask: torch.Tensor, pool: str) -> torch.Tensor:
    """[batch, tokens, neurons] -> [batch, neurons], over the tokens where `mask` is true."""
    if pool == "mean":
        weights = mask.to(torch.float32)
        summed = torch.bmm(weights.unsqueeze(1), activations.to(torch.float32)).squeeze(1)
        return summed / weights.sum(dim=1, keepdim=True).clamp(min=1.0)
    if pool == "max":
        hidden = ~mask.unsqueeze(-1)
        return activations.to(torch.float32).masked_fill(hidden, float("-inf")).amax(dim=1)
    raise ValueError(f"unknown pool {pool!r}; expected one of {POOLS}")

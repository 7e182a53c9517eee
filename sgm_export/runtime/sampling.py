"""Choosing the next token from the last position's logits: greedy, or sampling with temperature,
top-k and top-p, in that order (as transformers applies them), with numpy only."""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sampling:
    """How the next token is chosen. The default is greedy (the most likely token)."""

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0  # 0: no top-k cut
    top_p: float = 1.0  # 1.0: no nucleus cut
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0 (use do_sample=False for greedy decoding)")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")


GREEDY = Sampling()


def next_tokens(logits: np.ndarray, sampling: Sampling, rng: np.random.Generator) -> np.ndarray:
    """One token id per row of `logits` ([batch, vocab])."""
    logits = logits.astype(np.float64)
    if not sampling.do_sample:
        return logits.argmax(axis=-1)
    probabilities = sampling_distribution(logits, sampling)
    cumulative = probabilities.cumsum(axis=-1)
    draws = rng.random((logits.shape[0], 1)) * cumulative[:, -1:]
    return np.minimum((cumulative <= draws).sum(axis=-1), logits.shape[-1] - 1)


def sampling_distribution(logits: np.ndarray, sampling: Sampling) -> np.ndarray:
    """The distribution `next_tokens` samples from: softmax(logits / T), cut to top-k and top-p."""
    scores = logits.astype(np.float64) / sampling.temperature
    if sampling.top_k and sampling.top_k < scores.shape[-1]:
        kth_best = np.partition(scores, -sampling.top_k, axis=-1)[:, -sampling.top_k][:, None]
        scores = np.where(scores < kth_best, -np.inf, scores)
    probabilities = _softmax(scores)
    if sampling.top_p < 1.0:
        order = np.argsort(-probabilities, axis=-1, kind="stable")
        sorted_probabilities = np.take_along_axis(probabilities, order, axis=-1)
        # Keep the smallest set of best tokens whose mass reaches top_p (always at least one).
        mass_before = sorted_probabilities.cumsum(axis=-1) - sorted_probabilities
        keep_sorted = mass_before < sampling.top_p
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=-1)
        probabilities = _softmax(np.where(keep, scores, -np.inf))
    return probabilities


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)

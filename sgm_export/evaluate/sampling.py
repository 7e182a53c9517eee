"""The dice of evaluation sampling: one stream of uniform numbers per continuation, and the
inverse-CDF draw that turns one of them into a token.

Why per continuation: a continuation's tokens then depend only on the model's logits and its own
numbers, never on which other rows share its batch, the batch size or the batch order. Base and
variants draw the same numbers for the same (prompt, sample), so their differences come from the
model (a paired comparison), and a run with another batch size gives the same tokens wherever the
logits are the same.

Why inverse CDF: one uniform number per row and step is all the randomness a draw needs (no
per-row `torch.multinomial` calls, which cannot take one generator per row in a batch), and over
the top-k candidates (`torch.topk`, k of a 262k vocabulary) the draw costs next to nothing.
"""

import hashlib

import torch


def continuation_seed(seed: int, prompt: int, sample: int) -> int:
    """A 63-bit generator seed for continuation `sample` of prompt number `prompt`.

    A hash rather than arithmetic (`seed + prompt`) so that neighbouring seeds, prompts and
    samples give unrelated streams.
    """
    digest = hashlib.blake2b(f"sgm-eval/{seed}/{prompt}/{sample}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & (2**63 - 1)


def continuation_uniforms(seed: int, rows: list[tuple[int, int]], steps: int) -> torch.Tensor:
    """Uniform numbers in [0, 1), float64 `[len(rows), steps]`: row r's step t draws with [r, t].

    `rows` are (prompt number, sample number) pairs; each row's numbers come from its own
    generator, so they are the same in whatever batch the row lands.
    """
    streams = [torch.Generator().manual_seed(continuation_seed(seed, prompt, sample)) for prompt, sample in rows]
    return torch.stack([torch.rand(steps, generator=stream, dtype=torch.float64) for stream in streams])


def draw_tokens(logits: torch.Tensor, uniforms: torch.Tensor, top_k: int, temperature: float) -> torch.Tensor:
    """One token per row of `logits` `[rows, vocab]`, sampled by inverse CDF with `uniforms` `[rows]`.

    With `top_k` > 0 the candidates are the k highest logits in descending order (k = 1 is greedy
    decoding); with 0 they are the whole vocabulary in its own order. The chosen token is the
    first candidate whose cumulative probability (softmax of logits / temperature, float32)
    exceeds u times the total, so a candidate of probability 0 is never chosen.
    """
    if top_k > 0:
        values, candidates = logits.topk(min(top_k, logits.shape[-1]), dim=-1)
    else:
        values, candidates = logits, None
    cdf = (values.float() / temperature).softmax(dim=-1).cumsum(dim=-1)
    targets = uniforms.to(device=cdf.device, dtype=cdf.dtype).unsqueeze(1) * cdf[:, -1:]
    chosen = torch.searchsorted(cdf, targets, right=True).clamp(max=cdf.shape[-1] - 1)
    return (chosen if candidates is None else candidates.gather(1, chosen)).squeeze(1)

"""Examples to token batches, with a mask over exactly the tokens of `text`.

The sequence is the tokenizer's leading special tokens (BOS), then the prompt's tokens, then the
text's tokens; prompt and text are tokenized separately so that no token straddles the boundary.
The pooling mask is true on the text tokens only: never on special tokens, the prompt or padding.
Batches are built from examples sorted by length, so little compute goes to padding.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from sgm_export.data.examples import Example


@dataclass(frozen=True)
class Encoded:
    """One example as token ids and its pooling mask (1 on the text tokens)."""

    input_ids: list[int]
    pool_mask: list[bool]


@dataclass
class Batch:
    """Right-padded tensors for a group of examples, and where those examples sit in the input."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    pool_mask: torch.Tensor
    indices: list[int]
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)  # further model inputs (pixels, ...)


def encode_text_example(tokenizer, example: Example, max_length: int) -> Encoded:
    """Token ids and pooling mask of a text-only example, cut to `max_length` tokens.

    When too long, the prompt loses tokens from its start (the context nearest the text matters
    most) and then the text loses tokens from its end; at least one text token always remains.
    """
    prefix = tokenizer("", add_special_tokens=True)["input_ids"]
    prompt = tokenizer(example.prompt, add_special_tokens=False)["input_ids"] if example.prompt else []
    text = tokenizer(example.text, add_special_tokens=False)["input_ids"]
    room_for_prompt = max(0, max_length - len(prefix) - 1)
    prompt = prompt[len(prompt) - min(len(prompt), room_for_prompt) :] if prompt else []
    text = text[: max(1, max_length - len(prefix) - len(prompt))]
    return Encoded(prefix + prompt + text, [False] * (len(prefix) + len(prompt)) + [True] * len(text))


@dataclass
class BatchSource:
    """Examples ready to be batched: their indices in groups sorted longest first (batches cut
    from a group have similar lengths, so little compute goes to padding, and the first batch is
    the largest, so memory problems show up at once), and how to collate any set of them."""

    groups: list[list[int]]
    make_batch: Callable[[list[int]], Batch]


def text_batch_source(encoded: list[Encoded], pad_id: int) -> BatchSource:
    """One group of all text examples, longest first."""
    order = sorted(range(len(encoded)), key=lambda index: -len(encoded[index].input_ids))
    return BatchSource([order], lambda indices: collate([encoded[index] for index in indices], indices, pad_id))


def collate(items: list[Encoded], indices: list[int], pad_id: int, padding_side: str = "right") -> Batch:
    """Pad a group of encoded examples into tensors: on the right for scoring, on the left for
    generation (so that every row's next token is in the last column)."""
    width = max(len(item.input_ids) for item in items)
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(items), width), dtype=torch.long)
    pool_mask = torch.zeros((len(items), width), dtype=torch.bool)
    for row, item in enumerate(items):
        length = len(item.input_ids)
        columns = slice(width - length, width) if padding_side == "left" else slice(0, length)
        input_ids[row, columns] = torch.tensor(item.input_ids)
        attention_mask[row, columns] = 1
        pool_mask[row, columns] = torch.tensor(item.pool_mask)
    return Batch(input_ids, attention_mask, pool_mask, indices)

"""Text to token ids and back with the `tokenizers` package alone (no transformers, no torch).

`tokenizer.json` is what transformers' fast tokenizers save, and it carries the normalizer,
pre-tokenizer, model and post-processor (which adds `<bos>` where the model wants it), so
encoding with it gives the same ids as `AutoTokenizer`. Batches are padded on the left, the way
decoder-only generation needs them.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from sgm_export.errors import CheckpointError

TOKENIZER_FILE = "tokenizer.json"


@dataclass
class Batch:
    """A left-padded batch: the three inputs a decoder graph's first step takes."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    position_ids: np.ndarray


def left_padded(sequences: list[list[int]], pad_token_id: int) -> Batch:
    """Pad token-id lists on the left; positions count real tokens only.

    Padding gets position 1, as transformers' `generate` gives it, so that the values fed to the
    graph are the ones the PyTorch model sees (they are masked out either way).
    """
    if not sequences or any(len(sequence) == 0 for sequence in sequences):
        raise ValueError("every sequence needs at least one token")
    width = max(len(sequence) for sequence in sequences)
    input_ids = np.full((len(sequences), width), pad_token_id, dtype=np.int64)
    attention_mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, sequence in enumerate(sequences):
        input_ids[row, width - len(sequence) :] = sequence
        attention_mask[row, width - len(sequence) :] = 1
    position_ids = np.where(attention_mask == 1, np.cumsum(attention_mask, axis=1) - 1, 1).astype(np.int64)
    return Batch(input_ids, attention_mask, position_ids)


class TextTokenizer:
    """The export's `tokenizer.json`, for encoding prompts and decoding generated ids."""

    def __init__(self, folder: Path) -> None:
        path = Path(folder) / TOKENIZER_FILE
        if not path.is_file():
            raise CheckpointError(f"{folder} has no {TOKENIZER_FILE}", "export from a model whose tokenizer was saved with save_pretrained")
        self.backend = Tokenizer.from_file(str(path))

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text`, with the special tokens the tokenizer adds (such as <bos>) unless told not to."""
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: list[int]) -> str:
        """Text of `ids`, without special tokens."""
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=True)

"""A text decoder export run with ONNX Runtime: one forward step, and a generation loop over it.

The loop is what transformers' `generate` does for a decoder-only model, spelled out: encode and
left-pad the prompts, run the whole prompt once with an empty cache (the prefill), then feed one
token per row per step, appending to the attention mask, advancing the positions and passing
each step's `present.*` back as the next step's `past_key_values.*`. Rows that have produced an
end-of-sequence token are fed padding until every row is done.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from sgm_export.errors import CheckpointError
from sgm_export.runtime.layout import (
    ATTENTION_MASK,
    INPUT_IDS,
    LOGITS,
    POSITION_IDS,
    OnnxDescription,
    past_names,
    present_names,
    read_description,
)
from sgm_export.runtime.providers import execution_providers
from sgm_export.runtime.sampling import GREEDY, Sampling, next_tokens
from sgm_export.runtime.tokenizer import Batch, TextTokenizer, left_padded

NUMPY_DTYPES = {"float32": np.float32, "float16": np.float16}


@dataclass
class Step:
    """One generation step: the last position's logits and the token chosen for each row."""

    logits: np.ndarray  # [batch, vocab], before temperature or any cut
    tokens: np.ndarray  # [batch]; pad_token_id for rows that had already finished
    running: np.ndarray  # [batch] bool: rows still generating at this step


class OnnxCausalLM:
    """The decoder graph of an sgm-export ONNX folder, its tokenizer and its special tokens."""

    def __init__(self, path: Path, device: str = "auto", threads: int | None = None) -> None:
        self.description: OnnxDescription = read_description(Path(path))
        self.tokenizer = TextTokenizer(self.description.folder)
        self.device, self.threads = device, threads
        self.session = self.open_session(self.description.decoder_path)
        cache = self.description.cache
        self.past_dtype = NUMPY_DTYPES[cache.dtype]
        self.past_input_names = past_names(cache.num_layers)
        self.output_names = [LOGITS, *present_names(cache.num_layers)]

    def open_session(self, graph: Path) -> ort.InferenceSession:
        """An ONNX Runtime session for one graph of the export, on this model's providers."""
        if not graph.is_file():
            raise CheckpointError(f"{graph} is missing", "export the model again")
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
        return ort.InferenceSession(str(graph), sess_options=options, providers=execution_providers(self.device))

    @property
    def pad_token_id(self) -> int:
        """Padding for batches: the model's pad token, else its first end-of-sequence token."""
        description = self.description
        if description.pad_token_id is not None:
            return description.pad_token_id
        if description.eos_token_ids:
            return description.eos_token_ids[0]
        return 0

    def empty_past(self, batch_size: int) -> list[np.ndarray]:
        """The cache before the first step: every past tensor with 0 positions."""
        cache = self.description.cache
        shape = (batch_size, cache.num_key_value_heads, 0, cache.head_dim)
        return [np.zeros(shape, dtype=self.past_dtype) for _ in self.past_input_names]

    def forward(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, position_ids: np.ndarray, past: list[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """One run of the graph: logits [batch, sequence, vocab] and the new cache."""
        return self.run({INPUT_IDS: input_ids, ATTENTION_MASK: attention_mask, POSITION_IDS: position_ids}, past)

    def run(self, feeds: dict[str, np.ndarray], past: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """One run of the decoder graph on `feeds` and the cache `past`."""
        logits, *present = self.session.run(self.output_names, {**feeds, **dict(zip(self.past_input_names, past))})
        return logits, present

    def encode(self, prompts: list[str]) -> Batch:
        """Tokenize and left-pad prompts."""
        return left_padded([self.tokenizer.encode(prompt) for prompt in prompts], self.pad_token_id)

    def steps(self, prompts: list[list[int]], max_new_tokens: int = 32, sampling: Sampling = GREEDY) -> Iterator[Step]:
        """Generate from prompts given as token ids, one `Step` per new token position."""
        batch = left_padded(prompts, self.pad_token_id)
        return self.decode_loop(
            {INPUT_IDS: batch.input_ids, ATTENTION_MASK: batch.attention_mask, POSITION_IDS: batch.position_ids}, max_new_tokens, sampling
        )

    def decode_loop(self, feeds: dict[str, np.ndarray], max_new_tokens: int, sampling: Sampling) -> Iterator[Step]:
        """The loop shared by every kind of export: run, choose, feed the choice back."""
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        rows = feeds[ATTENTION_MASK].shape[0]
        rng = np.random.default_rng(sampling.seed)
        eos = np.array(self.description.eos_token_ids or [-1])
        past = self.empty_past(rows)
        running = np.ones(rows, dtype=bool)
        for _ in range(max_new_tokens):
            logits, past = self.run(feeds, past)
            last = logits[:, -1, :]
            chosen = np.where(running, next_tokens(last, sampling, rng), self.pad_token_id)
            yield Step(last, chosen, running.copy())
            running &= ~np.isin(chosen, eos)
            if not running.any():
                return
            feeds = self.next_feeds(feeds, chosen[:, None].astype(np.int64))

    def next_feeds(self, feeds: dict[str, np.ndarray], tokens: np.ndarray) -> dict[str, np.ndarray]:
        """The inputs of the step after `feeds`, which feeds `tokens` [batch, 1]."""
        mask = feeds[ATTENTION_MASK]
        return {
            INPUT_IDS: tokens,
            ATTENTION_MASK: np.concatenate([mask, np.ones((mask.shape[0], 1), dtype=np.int64)], axis=1),
            POSITION_IDS: feeds[POSITION_IDS][:, -1:] + 1,
        }

    def generate_ids(self, prompts: list[list[int]], max_new_tokens: int = 32, sampling: Sampling = GREEDY, **images) -> list[list[int]]:
        """New token ids for each prompt (given as token ids), up to and including its end token.

        `images` (pixel_values, image_grid_thw) go to a vision-language model's `steps`."""
        generated: list[list[int]] = [[] for _ in prompts]
        for step in self.steps(prompts, max_new_tokens, sampling, **images):
            for row in np.flatnonzero(step.running):
                generated[row].append(int(step.tokens[row]))
        return generated

    def generate(self, prompts: str | list[str], max_new_tokens: int = 32, sampling: Sampling = GREEDY) -> list[str]:
        """Continuations of text prompts (a batch is left-padded and run together)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        ids = self.generate_ids([self.tokenizer.encode(prompt) for prompt in prompts], max_new_tokens, sampling)
        return [self.tokenizer.decode(row) for row in ids]

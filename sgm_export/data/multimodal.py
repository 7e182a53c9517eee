"""Image+text examples to model inputs for vision-language models, with a mask over exactly the
tokens of `text`.

A row becomes a chat: a user turn holding the image (when the row has one) and the `prompt`,
rendered by the processor's chat template up to the assistant header, then the `text` tokens as
the assistant's answer (PaliGemma, which has no chat template, uses its processor's own layout:
image tokens, <bos>, prompt, "\\n", then `text` as the suffix). The processor expands the image
into its image tokens and computes the pixel inputs, so the image takes part in the forward pass;
the pooling mask is true on the answer tokens only, never on image tokens, the prompt, template
or special tokens, or padding. Nothing is appended after the answer: the decoder is causal, so
what would follow cannot change the answer's activations.

`max_length` bounds the prompt and text tokens (image and template tokens come on top): the
prompt loses its start first, then the text its end, and at least one text token remains.
Examples are encoded one batch at a time, so pixel tensors of only one batch are ever in memory.
"""

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from sgm_export.arch import Family
from sgm_export.data.encode import Batch, BatchSource, Encoded, collate
from sgm_export.data.examples import Example
from sgm_export.data.images import load_image
from sgm_export.errors import CheckpointError

# Processor outputs that run along the token axis ([1, tokens, ...]); everything else is per image.
PER_TOKEN_INPUTS = ("token_type_ids", "mm_token_type_ids", "cross_attention_mask")
NOT_INPUTS = ("labels",)  # PaliGemma's processor makes training labels from token types
SUFFIX_TOKEN_TYPE = 1  # prefix_lm: the answer is the causally attended suffix


@dataclass(frozen=True)
class MultimodalEncoded(Encoded):
    """One example as token ids, its pooling mask, and the processor's other model inputs."""

    per_token: dict[str, torch.Tensor]
    per_image: dict[str, torch.Tensor]


@dataclass(frozen=True)
class _Pieces:
    """The token-level parts of an example, computed once for all examples before batching."""

    prompt: str
    prompt_tokens: int
    text_ids: list[int]


class MultimodalEncoder:
    """Encodes examples for one loaded vision-language model (its processor and family row)."""

    def __init__(self, processor: Any, family: Family, model: torch.nn.Module, max_length: int) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.family = family
        self.max_length = max_length
        self.model_inputs = set(inspect.signature(model.forward).parameters)
        if family.prompt_format == "chat_template" and not getattr(processor, "chat_template", None):
            raise CheckpointError(
                "the model's processor has no chat template, so image+text rows cannot be laid out as a chat",
                "use an instruction-tuned checkpoint, or add a chat_template to its processor files",
            )

    def encode(self, example: Example) -> MultimodalEncoded:
        """One example, with its image, ready to collate."""
        return self._encode(example, self._pieces(example))

    def batch_source(self, examples: list[Example], pad_id: int) -> BatchSource:
        """Examples in length order, longest first, each encoded (images included) only when its
        batch is due, so that pixel tensors of one batch at a time are in memory.

        Rows with images come first. For per_row families (Llama 3.2 Vision) a batch holds only
        rows with images or only rows without: a batch without images skips the cross-attention
        layers, and a row must not get different activations depending on its neighbours.
        """
        pieces = [self._pieces(example) for example in examples]
        order = sorted(
            range(len(examples)),
            key=lambda index: (examples[index].image is None, -len(pieces[index].text_ids) - pieces[index].prompt_tokens),
        )
        groups = [order]
        if self.family.image_inputs == "per_row":
            groups = [[i for i in order if examples[i].image is not None], [i for i in order if examples[i].image is None]]

        def make_batch(indices: list[int]) -> Batch:
            return self.collate([self._encode(examples[index], pieces[index]) for index in indices], indices, pad_id)

        return BatchSource([group for group in groups if group], make_batch)

    def collate(self, items: list[MultimodalEncoded], indices: list[int], pad_id: int) -> Batch:
        """Right-pad token tensors (as for text); gather image tensors as the family's layout wants them."""
        batch = collate(items, indices, pad_id)
        width = batch.input_ids.shape[1]
        for key in _keys(items, "per_token"):
            batch.inputs[key] = _pad_cat([item.per_token.get(key) for item in items], along_tokens=width)
        per_row = self.family.image_inputs == "per_row"
        for key in _keys(items, "per_image"):
            found = [item.per_image.get(key) for item in items]
            batch.inputs[key] = _pad_cat(found if per_row else [tensor for tensor in found if tensor is not None])
        return batch

    def _pieces(self, example: Example) -> _Pieces:
        prompt_ids = self.tokenizer(example.prompt, add_special_tokens=False)["input_ids"] if example.prompt else []
        room_for_prompt = max(0, self.max_length - 1)
        prompt = example.prompt
        if len(prompt_ids) > room_for_prompt:
            prompt_ids = prompt_ids[len(prompt_ids) - room_for_prompt :] if room_for_prompt else []
            prompt = self.tokenizer.decode(prompt_ids)
        text_ids = self.tokenizer(example.text, add_special_tokens=False)["input_ids"]
        return _Pieces(prompt, len(prompt_ids), text_ids[: max(1, self.max_length - len(prompt_ids))])

    def _encode(self, example: Example, pieces: _Pieces) -> MultimodalEncoded:
        image = load_image(example.image, example.origin) if example.image is not None else None
        prefix = self._prefix(pieces.prompt, image)
        prefix_ids = prefix.pop("input_ids")[0].tolist()
        prefix.pop("attention_mask", None)
        answer = len(pieces.text_ids)
        per_token = {}
        for key in PER_TOKEN_INPUTS:
            if key in prefix and key in self.model_inputs:
                per_token[key] = self._extend_for_answer(key, prefix.pop(key), answer)
        per_image = {
            key: value
            for key, value in prefix.items()
            if key in self.model_inputs and key not in NOT_INPUTS and isinstance(value, torch.Tensor)
        }
        return MultimodalEncoded(
            prefix_ids + pieces.text_ids, [False] * len(prefix_ids) + [True] * answer, per_token, per_image if image else {}
        )

    def _prefix(self, prompt: str, image: Image.Image | None) -> dict[str, torch.Tensor]:
        """Model inputs of everything before the answer: template, image tokens and prompt."""
        if self.family.prompt_format == "prefix_lm":
            if image is None:  # the processor insists on an image; this is its layout without one
                text = self.tokenizer.bos_token + prompt + "\n"
                encoded = self.tokenizer([text], add_special_tokens=False, return_tensors="pt")
                return {"input_ids": encoded["input_ids"], "token_type_ids": torch.zeros_like(encoded["input_ids"])}
            # The processor puts <bos> after the image tokens and "\n" after the prompt.
            return dict(self.processor(text=[self.processor.image_token + prompt], images=[[image]], return_tensors="pt"))
        content = ([{"type": "image"}] if image is not None else []) + ([{"type": "text", "text": prompt}] if prompt else [])
        rendered = self.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
        # As the processor's own apply_chat_template(tokenize=True): a template that writes <bos>
        # itself must not get a second one from the tokenizer.
        bos = self.tokenizer.bos_token
        add_special_tokens = not (bos and rendered.startswith(bos))
        images = [[image]] if image is not None else None
        return dict(self.processor(text=[rendered], images=images, add_special_tokens=add_special_tokens, return_tensors="pt"))

    def _extend_for_answer(self, key: str, tensor: torch.Tensor, answer: int) -> torch.Tensor:
        """A per-token input continued over the answer tokens, as generation continues it."""
        if key == "token_type_ids" and self.family.prompt_format == "prefix_lm":
            tail = torch.full((tensor.shape[0], answer, *tensor.shape[2:]), SUFFIX_TOKEN_TYPE, dtype=tensor.dtype)
        else:
            tail = tensor[:, -1:].expand(tensor.shape[0], answer, *tensor.shape[2:])
        return torch.cat([tensor, tail], dim=1)


def _keys(items: list[MultimodalEncoded], kind: str) -> list[str]:
    return list(dict.fromkeys(key for item in items for key in getattr(item, kind)))


def _pad_cat(tensors: list[torch.Tensor | None], along_tokens: int | None = None) -> torch.Tensor:
    """Concatenate on dim 0, zero-padding every other dim to the largest; None rows become zeros."""
    present = [tensor for tensor in tensors if tensor is not None]
    shape = [max(tensor.shape[dim] for tensor in present) for dim in range(1, present[0].dim())]
    if along_tokens is not None:
        shape[0] = along_tokens
    padded = []
    for tensor in tensors:
        target = torch.zeros((1 if tensor is None else tensor.shape[0], *shape), dtype=present[0].dtype)
        if tensor is not None:
            target[tuple(slice(0, size) for size in tensor.shape)] = tensor
        padded.append(target)
    return torch.cat(padded, dim=0)

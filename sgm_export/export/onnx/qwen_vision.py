"""Qwen2-VL's and Qwen2.5-VL's vision towers as one traceable graph, for any number of images per run.

transformers' towers compute their rotary positions, attention segments and (Qwen2.5-VL) window
order from `grid_thw` with Python loops over `.tolist()` values, which torch.export cannot
follow, and split attention per image or window. Here the same quantities are tensor arithmetic
on each patch's index, and attention runs once over all patches with a boolean mask (same
image, or same window for Qwen2.5-VL's windowed blocks), so the graph takes every image of a
batch in one run, as transformers.js calls it (`pixel_values` and the grids, which it names
`grid_thw` for Qwen2-VL and `image_grid_thw` for Qwen2.5-VL).

Patches arrive in the image processor's order: image by image, merge block by merge block
(row-major over the merged grid), and within a block row-major. Images are single frames
(temporal grid 1), as the image processor makes them.
"""

import sys

import torch
from torch import nn


class QwenVisionEncoder(nn.Module):
    """pixel_values [patches, C*T*P*P], grids [images, 3] -> image features [tokens, hidden]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        visual = model.model.visual
        self.merge = int(visual.spatial_merge_size)
        window_size = getattr(visual, "window_size", None)  # Qwen2.5-VL only, in pixels
        self.window = int(window_size) // self.merge // int(visual.patch_size) if window_size else None  # in merged tokens
        self.full_blocks = set(getattr(visual, "fullatt_block_indexes", None) or range(len(visual.blocks)))

    def forward(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        visual = self.model.model.visual
        unit = self.merge * self.merge
        grid = grid_thw.to(torch.int64)
        n_patches = pixel_values.shape[0]
        patch = torch.arange(n_patches, dtype=torch.int64)
        image, local = _image_of(patch, grid[:, 1] * grid[:, 2])
        merged_width = grid[:, 2][image] // self.merge
        block, within = local // unit, local % unit
        block_row, block_col = block // merged_width, block % merged_width
        rows = block_row * self.merge + within // self.merge
        cols = block_col * self.merge + within % self.merge

        hidden = visual.patch_embed(pixel_values.to(visual.dtype))
        cos, sin = visual.rotary_pos_emb(hidden, torch.stack([rows, cols], dim=-1))
        image_mask = image[:, None] == image[None, :]
        window_mask = image_mask
        order = None
        if self.window is not None:
            # The window order of the merged tokens: by image, window row, window column, then row-major inside the window.
            first = patch[::unit]
            token_image, token_row, token_col = image[first], block_row[first], block_col[first]
            span = n_patches + 1  # larger than any row, column or window index
            window_key = (token_image * span + token_row // self.window) * span + token_col // self.window
            key = window_key * (self.window * self.window) + (token_row % self.window) * self.window + token_col % self.window
            order = torch.argsort(key)
            hidden, cos, sin = (_permute(tensor, order, unit) for tensor in (hidden, cos, sin))
            window_of = window_key[order].repeat_interleave(unit)
            image_of = token_image[order].repeat_interleave(unit)
            window_mask = window_of[:, None] == window_of[None, :]
            image_mask = image_of[:, None] == image_of[None, :]
        for number, block_module in enumerate(visual.blocks):
            mask = image_mask if number in self.full_blocks else window_mask
            hidden = hidden + _masked_attention(block_module.attn, block_module.norm1(hidden), cos, sin, mask)
            hidden = hidden + block_module.mlp(block_module.norm2(hidden))
        merged = visual.merger(hidden)
        return merged if order is None else merged[torch.argsort(order)]


def _image_of(index: torch.Tensor, sizes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Which image each index falls in (given each image's size, in order) and its index inside it."""
    starts = torch.cumsum(sizes, 0) - sizes
    image = (index[:, None] >= starts[None, :]).sum(-1) - 1
    return image, index - starts[image]


def _permute(tensor: torch.Tensor, order: torch.Tensor, unit: int) -> torch.Tensor:
    """Reorder patch rows by merged token (each token's `unit` patches move together)."""
    return tensor.reshape(-1, unit, tensor.shape[-1])[order].reshape(-1, tensor.shape[-1])


def _masked_attention(attention: nn.Module, hidden: torch.Tensor, cos, sin, mask: torch.Tensor) -> torch.Tensor:
    """The tower's attention over all patches at once, each attending only where `mask` allows."""
    apply_rotary = sys.modules[type(attention).__module__].apply_rotary_pos_emb_vision
    length = hidden.shape[0]
    query, key, value = attention.qkv(hidden).reshape(length, 3, attention.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    query, key = apply_rotary(query, key, cos, sin)
    query, key, value = (tensor.transpose(0, 1)[None] for tensor in (query, key, value))
    output = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask[None, None], scale=attention.scaling)
    return attention.proj(output[0].transpose(0, 1).reshape(length, -1))

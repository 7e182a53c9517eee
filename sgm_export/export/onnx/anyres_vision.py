"""LLaVA's, LLaVA-NeXT's and Idefics3's vision tower and projector, traced without
transformers' Python bookkeeping around them.

LLaVA's `get_image_features` returns its features as a Python list of images, which fixes the
traced graph to the number of images it was traced with; here they stay one tensor.

transformers' `get_image_features` runs the tower on every tile of every image, then packs each
image's tiles with Python arithmetic on its original size (which grid of tiles, how much padding
to cut, where the `image_newline` rows go). That packing depends on values torch.export cannot
follow, so the graph stops before it: tiles in, one row of projected features per tile token
out, and the learned `image_newline` vector as a second output. `runtime.vision.pack_anyres`
does the packing in numpy, as transformers does it.
"""

import torch
from torch import nn

IMAGE_NEWLINE = "image_newline"


def projected_patches(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """pixel_values [images, 3, H, W] -> [images, tokens, hidden]: the tower's chosen layer(s),
    without the CLS token for the `default` strategy, through the projector."""
    inner, config = model.model, model.config
    layer = config.vision_feature_layer
    hidden_states = inner.vision_tower(pixel_values, output_hidden_states=True, return_dict=True).hidden_states
    if isinstance(layer, int):
        selected = hidden_states[layer]
    else:
        selected = torch.cat([hidden_states[index] for index in layer], dim=-1)
    if config.vision_feature_select_strategy == "default":
        selected = selected[:, 1:]
    return inner.multi_modal_projector(selected)


class PatchEncoder(nn.Module):
    """LLaVA: pixel_values [images, 3, H, W] -> image features [images * tokens, hidden]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        features = projected_patches(self.model, pixel_values)
        return features.reshape(-1, features.shape[-1])


class AnyresTileEncoder(nn.Module):
    """pixel_values [tiles, 3, H, W] -> features [tiles, tokens per tile, hidden], image_newline [hidden]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return projected_patches(self.model, pixel_values), self.model.model.image_newline


class IdeficsEncoder(nn.Module):
    """Idefics3 / SmolVLM: pixel_values [images, 3, H, W] -> image features [images * tokens, hidden].

    transformers drops the all-zero images that pad a batch to the most images of any row, a
    data-dependent selection; the runtime sends only real images (each tile and the global image
    of a split image count as one), whose pixels fill the whole frame, so every patch is attended."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        inner = self.model.model
        patch = inner.config.vision_config.patch_size
        patches = torch.ones(pixel_values.shape[0], pixel_values.shape[2] // patch, pixel_values.shape[3] // patch, dtype=torch.bool)
        hidden = inner.vision_model(pixel_values=pixel_values.to(inner.dtype), patch_attention_mask=patches).last_hidden_state
        features = inner.connector(hidden)
        return features.reshape(-1, features.shape[-1])

"""LLaVA-NeXT's vision tower and projector over image tiles, without the packing.

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


class AnyresTileEncoder(nn.Module):
    """pixel_values [tiles, 3, H, W] -> features [tiles, tokens per tile, hidden], image_newline [hidden]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inner = self.model.model
        config = self.model.config
        layer = config.vision_feature_layer
        hidden_states = inner.vision_tower(pixel_values, output_hidden_states=True, return_dict=True).hidden_states
        if isinstance(layer, int):
            selected = hidden_states[layer]
        else:
            selected = torch.cat([hidden_states[index] for index in layer], dim=-1)
        if config.vision_feature_select_strategy == "default":
            selected = selected[:, 1:]
        return inner.multi_modal_projector(selected), inner.image_newline

"""Forward pre-hooks that read the neuron vector (the input of each MLP output projection) and
keep only its pooled value: full activations are never stored, and nothing syncs with the host
inside a hook."""

import torch
from torch import nn

from sgm_export.score.pooling import pool_tokens


class PooledRecorder:
    """Use as a context manager around forward passes; call `set_mask` before each one."""

    def __init__(
        self, projections: list[nn.Module], pool: str, skippable_widths: list[int] | None = None, device: torch.device | None = None
    ) -> None:
        """`skippable_widths`: the width of each layer, given where a forward pass may skip layers
        (Llama 3.2 Vision skips its cross-attention layers when a batch has no image); a skipped
        layer's neurons then read 0. Without it, a skipped layer is an error.

        `device`: where the pooled values are gathered, for a model spread over several devices
        (`--device-map`); the mask is copied to each layer's device once per forward pass."""
        self.projections = projections
        self.pool = pool
        self.skippable_widths = skippable_widths
        self.device = device
        self._mask: torch.Tensor | None = None
        self._pooled: list[torch.Tensor | None] = [None] * len(projections)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> "PooledRecorder":
        for layer, projection in enumerate(self.projections):
            self._handles.append(projection.register_forward_pre_hook(self._hook_for(layer)))
        return self

    def __exit__(self, *exc_info: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def set_mask(self, mask: torch.Tensor) -> None:
        """The pooling mask ([batch, tokens], true on scored tokens) of the next forward pass."""
        self._mask = mask
        self._masks: dict[torch.device, torch.Tensor] = {mask.device: mask}
        self._pooled = [None] * len(self.projections)

    def take(self) -> torch.Tensor:
        """The pooled neurons of the last forward pass, all layers side by side: [batch, neurons]."""
        missing = [layer for layer, pooled in enumerate(self._pooled) if pooled is None]
        if missing and (self.skippable_widths is None or len(missing) == len(self._pooled)):
            raise RuntimeError(f"the forward pass never reached the output projection of layers {missing}")
        reached = next(pooled for pooled in self._pooled if pooled is not None)
        for layer in missing:
            self._pooled[layer] = reached.new_zeros((reached.shape[0], self.skippable_widths[layer]))
        return torch.cat(self._pooled, dim=1)

    def _hook_for(self, layer: int):
        def hook(module: nn.Module, args: tuple) -> None:
            activations = args[0]
            mask = self._masks.get(activations.device)
            if mask is None:
                mask = self._masks[activations.device] = self._mask.to(activations.device, non_blocking=True)
            pooled = pool_tokens(activations, mask, self.pool)
            self._pooled[layer] = pooled if self.device is None else pooled.to(self.device, non_blocking=True)

        return hook

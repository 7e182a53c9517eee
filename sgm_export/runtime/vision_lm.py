"""A vision-language export run with ONNX Runtime: images through `vision_encoder.onnx`, tokens
through `embed_tokens.onnx`, the spliced embeddings through `decoder_model_merged.onnx`.

`generate` takes text prompts and images (paths or Pillow images) and does the processor's work
itself (`runtime.processor`: chat template, image tokens, pixels). `steps` and `generate_ids`
take prompts as token ids that already hold each image's run of image tokens, and images as the
arrays the model's image processor makes (`pixel_values`; `image_grid_thw` for Qwen2-VL and
Qwen2.5-VL; for LLaVA-NeXT, Idefics3 and SmolVLM every image's tiles concatenated, with
`image_sizes` for LLaVA-NeXT), in
the order their tokens appear over the batch. The loop itself is the text model's.
"""

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sgm_export.errors import CheckpointError
from sgm_export.runtime.causal_lm import OnnxCausalLM, Step
from sgm_export.runtime.layout import ATTENTION_MASK, IMAGE_FEATURES, INPUT_IDS, INPUTS_EMBEDS, PIXEL_VALUES, POSITION_IDS
from sgm_export.runtime.processor import VisionProcessor
from sgm_export.runtime.sampling import GREEDY, Sampling
from sgm_export.runtime.tokenizer import left_padded
from sgm_export.runtime.vision import mrope_positions, pack_anyres, select_best_resolution, splice_image_features

TOKEN_TYPE_IDS = "token_type_ids"
IMAGE_GRID_THW = "image_grid_thw"
IMAGE_SIZES = "image_sizes"
IMAGE_NEWLINE = "image_newline"


class OnnxVisionLM(OnnxCausalLM):
    """The three graphs of a vision-language export, its tokenizer and what it says about images."""

    def __init__(self, path: Path, device: str = "auto", threads: int | None = None) -> None:
        super().__init__(path, device, threads)
        image = self.description.raw.get("image")
        if image is None:
            raise CheckpointError(f"{self.description.folder} is a text export", "load it with OnnxCausalLM")
        self.image = image
        self.vision_session = self.open_session(self.description.graph_path("vision_encoder"))
        self.embed_session = self.open_session(self.description.graph_path("embed_tokens"))
        self.processor = VisionProcessor(self.description.folder, self.description.raw["model_type"], self.tokenizer.encode)

    def prepare(self, prompts: list[str], images: list) -> tuple[list[list[int]], dict[str, np.ndarray]]:
        """Token ids of each prompt (chat template, image tokens) and the image arrays of the batch.

        `images` holds one image (a path or a Pillow image) or None per prompt."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(images)} images (pass None for a prompt without one)")
        inputs = [self.processor.image_inputs(image) if image is not None else None for image in images]
        ids = [self.processor.prompt_ids(prompt, image) for prompt, image in zip(prompts, inputs)]
        present = [image for image in inputs if image is not None]
        arrays: dict[str, np.ndarray] = {}
        if present and present[0].image_size is not None:  # LLaVA-NeXT: every image's tiles, and the images' sizes
            arrays = {PIXEL_VALUES: np.concatenate([image.pixel_values for image in present])}
            arrays[IMAGE_SIZES] = np.stack([image.image_size for image in present])
        elif present and present[0].image_grid_thw is not None:  # flattened patches (Qwen): concatenated, with their grids
            arrays = {PIXEL_VALUES: np.concatenate([image.pixel_values for image in present])}
            arrays[IMAGE_GRID_THW] = np.stack([image.image_grid_thw for image in present])
        elif present and present[0].pixel_values.ndim == 4:  # Idefics3 / SmolVLM: every image's tiles in a row
            arrays = {PIXEL_VALUES: np.concatenate([image.pixel_values for image in present])}
        elif present:
            arrays = {PIXEL_VALUES: np.stack([image.pixel_values for image in present])}
        return ids, arrays

    def generate(
        self, prompts: str | list[str], max_new_tokens: int = 32, sampling: Sampling = GREEDY, images: list | None = None
    ) -> list[str]:
        """Continuations of prompts, each about its image (a path, a Pillow image, or None)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        ids, arrays = self.prepare(prompts, images if images is not None else [None] * len(prompts))
        return [self.tokenizer.decode(row) for row in self.generate_ids(ids, max_new_tokens, sampling, **arrays)]

    def embed(self, input_ids: np.ndarray) -> np.ndarray:
        """Token ids [batch, seq] to their input embeddings."""
        return self.embed_session.run([INPUTS_EMBEDS], {INPUT_IDS: input_ids})[0]

    def image_features(
        self, pixel_values: np.ndarray, image_grid_thw: np.ndarray | None = None, image_sizes: np.ndarray | None = None
    ) -> np.ndarray:
        """One row of features per image token, for all images in order."""
        if self.image.get("anyres"):
            return self._anyres_features(pixel_values, image_sizes)
        feeds = {PIXEL_VALUES: pixel_values}
        for name in self.image["vision_inputs"]:  # Qwen: the images' grids, under the graph's name for them
            feeds[name] = np.asarray(image_grid_thw, dtype=np.int64).reshape(-1, 3)
        return self.vision_session.run([IMAGE_FEATURES], feeds)[0]

    def _anyres_features(self, pixel_values: np.ndarray, image_sizes: np.ndarray | None) -> np.ndarray:
        """LLaVA-NeXT: every tile through the vision graph at once, then each image's tiles packed."""
        if image_sizes is None:
            raise ValueError("LLaVA-NeXT images need their image_sizes (height, width) beside their tiles")
        tiles, newline = self.vision_session.run([IMAGE_FEATURES, IMAGE_NEWLINE], {PIXEL_VALUES: pixel_values})
        resolutions, tile_size = self.image["image_grid_pinpoints"], self.image["image_size"]
        packed, start = [], 0
        for size in np.asarray(image_sizes).reshape(-1, 2):
            best_height, best_width = select_best_resolution(tuple(int(side) for side in size), resolutions)
            count = 1 + (best_height // tile_size) * (best_width // tile_size)
            packed.append(pack_anyres(tiles[start : start + count], newline, tuple(int(side) for side in size), resolutions, tile_size))
            start += count
        return np.concatenate(packed)

    def steps(
        self,
        prompts: list[list[int]],
        max_new_tokens: int = 32,
        sampling: Sampling = GREEDY,
        pixel_values: np.ndarray | None = None,
        image_grid_thw: np.ndarray | None = None,
        image_sizes: np.ndarray | None = None,
    ) -> Iterator[Step]:
        """Generate from prompts (token ids, image tokens included) and their images."""
        batch = left_padded(prompts, self.pad_token_id)
        image_token = self.image["image_token_id"]
        embeds = self.embed(batch.input_ids)
        if pixel_values is not None:
            embeds = splice_image_features(
                embeds, batch.input_ids, image_token, self.image_features(pixel_values, image_grid_thw, image_sizes)
            )
        positions = batch.position_ids + int(self.image.get("position_offset") or 0)
        feeds = {INPUTS_EMBEDS: embeds, ATTENTION_MASK: batch.attention_mask, POSITION_IDS: positions}
        if self.image["position_axes"] == 3:
            grids = np.zeros((0, 3), dtype=np.int64) if image_grid_thw is None else image_grid_thw
            feeds[POSITION_IDS], _ = mrope_positions(
                batch.input_ids, batch.attention_mask, image_token, grids, self.image["spatial_merge_size"]
            )
        if self.image.get("prefix_lm"):  # the whole prompt is the bidirectional prefix; generated tokens are type 1
            feeds[TOKEN_TYPE_IDS] = np.zeros_like(batch.input_ids)
        elif TOKEN_TYPE_IDS in self.image["decoder_inputs"]:  # Gemma 3: type 1 on image tokens
            feeds[TOKEN_TYPE_IDS] = (batch.input_ids == image_token).astype(np.int64)
        return self.decode_loop(feeds, max_new_tokens, sampling)

    def next_feeds(self, feeds: dict[str, np.ndarray], tokens: np.ndarray) -> dict[str, np.ndarray]:
        """Embed the new tokens; positions continue from each row's largest one."""
        mask = feeds[ATTENTION_MASK]
        positions = feeds[POSITION_IDS]
        if positions.ndim == 3:
            following = positions.max(axis=(0, 2)) + 1
            positions = np.broadcast_to(following[None, :, None], (3, len(following), 1)).copy()
        else:
            positions = positions[:, -1:] + 1
        following_feeds = {
            INPUTS_EMBEDS: self.embed(tokens),
            ATTENTION_MASK: np.concatenate([mask, np.ones((mask.shape[0], 1), dtype=np.int64)], axis=1),
            POSITION_IDS: positions,
        }
        if TOKEN_TYPE_IDS in feeds:
            following_feeds[TOKEN_TYPE_IDS] = np.full_like(tokens, 1 if self.image.get("prefix_lm") else 0)
        return following_feeds

"""What a vision-language model's processor does, in numpy and Pillow (no torch, no transformers):
render a prompt and an image through the chat template, expand the image placeholder into the
model's run of image tokens, and turn the image into the vision graph's inputs.

It reads the files `sgm-export onnx` copies beside the graphs (`processor_config.json` or
`preprocessor_config.json`, `chat_template.jinja`, `tokenizer_config.json`) and repeats the
steps of transformers' Pillow image processors, which it is tested against:

- LLaVA (CLIP): resize the shortest edge, centre-crop, rescale, normalise; one image token per
  patch (minus the CLS token for the `default` feature strategy).
- LLaVA-NeXT: the whole image resized to a square, then the tiles of the image fitted into the
  best of `image_grid_pinpoints` (aspect kept, centred on black), each tile processed as LLaVA's;
  the tokens count the whole image's patches, then the unpadded tile grid with one newline per row.
- Idefics3 / SmolVLM: the longest edge resized, then (with image splitting) square tiles of
  `max_image_size` and the whole image at that size, each with `image_seq_len` tokens tagged
  `<row_r_col_c>` and `<global-img>`; without splitting, the whole image only.
- Gemma 3 (SigLIP): resize to the fixed size, rescale, normalise; the start-of-image token becomes
  `\\n\\n<boi>` + `image_seq_length` image tokens + `<eoi>\\n\\n`.
- Qwen2-VL and Qwen2.5-VL: `smart_resize` to multiples of patch x merge within the pixel bounds, rescale,
  normalise, cut into flattened patches (each repeated over the temporal patch size), and one
  image token per merged patch.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sgm_export.errors import CheckpointError, DataError
from sgm_export.runtime.vision import select_best_resolution, unpadded_grid

CHAT_TEMPLATE_FILE = "chat_template.jinja"
QWEN_TYPES = ("qwen2_vl", "qwen2_5_vl")
IDEFICS_TYPES = (
    "idefics3",
    "smolvlm",
)  # the same image processor and prompt string  # the same image processor: flattened patches on a smart-resized grid


@dataclass
class ImageInputs:
    """One image, ready for the vision graph, and how many image tokens stand for it."""

    pixel_values: np.ndarray  # [3, H, W] (LLaVA, Gemma 3), [tiles, 3, H, W] (LLaVA-NeXT) or [patches, C*T*P*P] (Qwen2-VL and Qwen2.5-VL)
    image_grid_thw: np.ndarray | None  # [3] for Qwen2-VL and Qwen2.5-VL
    n_tokens: int
    image_size: np.ndarray | None = None  # [2] (height, width) of the original image, for LLaVA-NeXT's packing
    grid: tuple[int, int] = (0, 0)  # Idefics3 / SmolVLM: rows and columns of tiles (0, 0: not split)


class VisionProcessor:
    """Prompt + image to token ids (image tokens included) and image arrays, for one export."""

    def __init__(self, folder: Path, model_type: str, encode) -> None:
        self.folder = Path(folder)
        self.model_type = model_type
        self.encode_text = encode  # text, add_special_tokens -> ids
        config = _read_json(self.folder / "processor_config.json")
        legacy = _read_json(self.folder / "preprocessor_config.json")
        self.processor = config
        self.image = config.get("image_processor") or legacy
        if not self.image:
            raise CheckpointError(f"{self.folder} has no image processor settings", "export from a folder with its processor files")
        self.tokens = _read_json(self.folder / "tokenizer_config.json")
        template = self.folder / CHAT_TEMPLATE_FILE
        self.chat_template = template.read_text(encoding="utf-8") if template.is_file() else config.get("chat_template")

    def render(self, prompt: str, with_image: bool) -> str:
        """The chat: one user turn (the image, then the prompt) and the assistant header.

        PaliGemma has no chat template: its processor writes the image, `<bos>`, the prompt and a newline."""
        if self.model_type == "paligemma" and not self.chat_template:
            image = self.tokens.get("image_token") or self.processor.get("image_token") or "<image>"
            return f"{image if with_image else ''}{self.tokens.get('bos_token') or ''}{prompt}\n"
        if not self.chat_template:
            raise CheckpointError(f"{self.folder} has no chat template", "export from a checkpoint whose processor has one")
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise DataError(f"the chat template refused the prompt: {message}", "check the prompt")

        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        environment.globals["raise_exception"] = raise_exception
        content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": prompt}]
        special = {key: value for key, value in self.tokens.items() if key.endswith("_token") and isinstance(value, str)}
        return environment.from_string(self.chat_template).render(
            messages=[{"role": "user", "content": content}], add_generation_prompt=True, **special
        )

    def prompt_ids(self, prompt: str, image: "ImageInputs | None") -> list[int]:
        """Token ids of the rendered prompt with the image's placeholder expanded."""
        text = self.render(prompt, image is not None)
        if image is not None:
            placeholder, expanded = self._expansion(image)
            if text.count(placeholder) != 1:
                raise CheckpointError(
                    f"the chat template wrote {text.count(placeholder)} image placeholders", "use the model's own template"
                )
            text = text.replace(placeholder, expanded)
        bos = self.tokens.get("bos_token")
        return self.encode_text(text, add_special_tokens=not (isinstance(bos, str) and text.startswith(bos)))

    def image_inputs(self, image: Any) -> ImageInputs:
        """A path or Pillow image to the vision graph's inputs for one image."""
        array = self._load(image)
        if self.model_type in QWEN_TYPES:
            return self._qwen_patches(array)
        if self.model_type == "llava_next":
            return self._anyres_tiles(array)
        if self.model_type in IDEFICS_TYPES:
            return self._idefics_images(array)
        pixels = self._standard(array)
        return ImageInputs(pixels, None, self._token_count(pixels.shape[1], pixels.shape[2]))

    def _standard(self, array: np.ndarray) -> np.ndarray:
        """Resize (shortest edge or fixed size), centre-crop, rescale and normalise: [3, H, W]."""
        settings = self.image
        if settings.get("do_resize", True):
            size = settings["size"]
            if "shortest_edge" in size:
                height, width = array.shape[:2]
                short, long = (height, width) if height <= width else (width, height)
                new_short, new_long = size["shortest_edge"], int(size["shortest_edge"] * long / short)
                target = (new_short, new_long) if height <= width else (new_long, new_short)
            else:
                target = (size["height"], size["width"])
            array = _resize(array, target, settings.get("resample", 2))
        if settings.get("do_center_crop"):
            crop = settings["crop_size"]
            top, left = (array.shape[0] - crop["height"]) // 2, (array.shape[1] - crop["width"]) // 2
            array = array[top : top + crop["height"], left : left + crop["width"]]
        return self._rescale_normalize(array).transpose(2, 0, 1)

    def _anyres_tiles(self, array: np.ndarray) -> ImageInputs:
        """LLaVA-NeXT: the whole image resized to a square, then the tiles of the image fitted
        (aspect kept, centred on black) into the best of `image_grid_pinpoints`, each tile then
        processed as a plain image."""
        settings = self.image
        resample = settings.get("resample", 3)
        size = (array.shape[0], array.shape[1])
        tile = int(settings["crop_size"]["height"]) if settings.get("crop_size") else int(settings["size"]["height"])
        square = settings["size"].get("shortest_edge") or settings["size"]["height"]
        best_height, best_width = select_best_resolution(size, settings["image_grid_pinpoints"])
        scale_width, scale_height = best_width / size[1], best_height / size[0]
        if scale_width < scale_height:
            new_height, new_width = min(math.ceil(size[0] * scale_width), best_height), best_width
        else:
            new_height, new_width = best_height, min(math.ceil(size[1] * scale_height), best_width)
        fitted = _resize(array, (new_height, new_width), resample)
        top, left = (best_height - new_height) // 2, (best_width - new_width) // 2
        canvas = np.zeros((best_height, best_width, 3), dtype=array.dtype)
        canvas[top : top + new_height, left : left + new_width] = fitted
        tiles = [_resize(array, (square, square), resample)]
        tiles += [
            canvas[row : row + tile, column : column + tile] for row in range(0, best_height, tile) for column in range(0, best_width, tile)
        ]
        pixels = np.stack([self._standard(part) for part in tiles])
        return ImageInputs(pixels, None, self._anyres_token_count(size, pixels.shape[2], pixels.shape[3]), np.array(size, dtype=np.int64))

    def _idefics_images(self, array: np.ndarray) -> ImageInputs:
        """Idefics3 / SmolVLM: resize the longest edge, then either split into square tiles of
        `max_image_size` (after resizing to multiples of it) followed by the whole image at that
        size, or resize the whole image to it; rescale and normalise each."""
        settings = self.image
        resample = settings.get("resample", 1)
        tile = int(settings["max_image_size"]["longest_edge"])
        if settings.get("do_resize", True):
            array = _resize(array, _idefics_longest_edge(array.shape[0], array.shape[1], int(settings["size"]["longest_edge"])), resample)
        rows = columns = 0
        frames = [array]
        if settings.get("do_image_splitting", True):
            height, width = _idefics_multiples(array.shape[0], array.shape[1], tile)
            array = _resize(array, (height, width), resample)
            if height > tile or width > tile:
                rows, columns = (height - tile) // tile + 1, (width - tile) // tile + 1
                frames = [array[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] for r in range(rows) for c in range(columns)]
                frames.append(_resize(array, (tile, tile), resample))
        else:
            frames = [_resize(array, (tile, tile), resample)]
        pixels = np.stack([self._rescale_normalize(frame).transpose(2, 0, 1) for frame in frames])
        return ImageInputs(pixels, None, len(frames) * int(self.processor["image_seq_len"]), grid=(rows, columns))

    def _idefics_prompt(self, grid: tuple[int, int]) -> str:
        """The image's run of tokens: each tile tagged with its row and column, then the whole image."""
        fake, image = "<fake_token_around_image>", self.processor.get("image_token") or "<image>"
        run = image * int(self.processor["image_seq_len"])
        whole = f"{fake}<global-img>{run}{fake}"
        rows, columns = grid
        if rows == columns == 0:
            return whole
        lines = "".join("".join(f"{fake}<row_{r + 1}_col_{c + 1}>{run}" for c in range(columns)) + "\n" for r in range(rows))
        return f"{lines}\n{whole}"

    def _anyres_token_count(self, size: tuple[int, int], height: int, width: int) -> int:
        """LLaVA-NeXT's image tokens: the whole image's, then the unpadded tile grid's with one newline per row."""
        best_height, best_width = select_best_resolution(size, self.image["image_grid_pinpoints"])
        patch = int(self.processor["patch_size"])
        grid_height, grid_width = height // patch * (best_height // height), width // patch * (best_width // width)
        rows, columns = unpadded_grid(size, grid_height, grid_width)
        kept_rows, kept_columns = rows.stop - rows.start, columns.stop - columns.start
        return kept_rows * (kept_columns + 1) + self._token_count(height, width)

    def _token_count(self, height: int, width: int) -> int:
        if self.model_type in ("gemma3", "paligemma"):
            return int(self.processor.get("image_seq_length") or self.image.get("image_seq_length") or 256)
        patch = int(self.processor["patch_size"])
        count = (height // patch) * (width // patch) + int(self.processor.get("num_additional_image_tokens", 0))
        return count - 1 if self.processor.get("vision_feature_select_strategy") == "default" else count

    def _expansion(self, image: ImageInputs) -> tuple[str, str]:
        """The placeholder the chat template writes for an image, and what the processor makes of it."""
        n_tokens = image.n_tokens
        if self.model_type in IDEFICS_TYPES:
            return self.processor.get("image_token") or "<image>", self._idefics_prompt(image.grid)
        if self.model_type == "gemma3":
            boi, image, eoi = self.tokens["boi_token"], self.tokens["image_token"], self.tokens["eoi_token"]
            return boi, f"\n\n{boi}{image * n_tokens}{eoi}\n\n"
        token = self.processor.get("image_token") or self.tokens.get("image_token") or "<|image_pad|>"
        return token, token * n_tokens

    def _qwen_patches(self, array: np.ndarray) -> ImageInputs:
        settings = self.image
        patch, merge, temporal = int(settings["patch_size"]), int(settings["merge_size"]), int(settings["temporal_patch_size"])
        size = settings["size"]
        height, width = _smart_resize(array.shape[0], array.shape[1], patch * merge, size["shortest_edge"], size["longest_edge"])
        pixels = self._rescale_normalize(_resize(array, (height, width), settings.get("resample", 3))).transpose(2, 0, 1)
        channels, grid_h, grid_w = pixels.shape[0], height // patch, width // patch
        patches = pixels.reshape(channels, grid_h // merge, merge, patch, grid_w // merge, merge, patch).transpose(1, 4, 2, 5, 0, 3, 6)
        patches = np.broadcast_to(patches[:, :, :, :, :, None], (*patches.shape[:5], temporal, patch, patch))
        flat = patches.reshape(grid_h * grid_w, channels * temporal * patch * patch).astype(np.float32)
        return ImageInputs(flat, np.array([1, grid_h, grid_w], dtype=np.int64), grid_h * grid_w // merge**2)

    def _rescale_normalize(self, array: np.ndarray) -> np.ndarray:
        settings = self.image
        pixels = array.astype(np.float64)
        if settings.get("do_rescale", True):
            pixels = pixels * settings.get("rescale_factor", 1 / 255)
        pixels = pixels.astype(np.float32)
        if settings.get("do_normalize", True):
            mean = np.asarray(settings["image_mean"], dtype=np.float32)
            std = np.asarray(settings["image_std"], dtype=np.float32)
            pixels = (pixels - mean) / std
        return pixels.astype(np.float32)

    def _load(self, image: Any) -> np.ndarray:
        from PIL import Image

        if not isinstance(image, Image.Image):
            try:
                with Image.open(image) as opened:
                    image = opened.convert("RGB")
            except Image.DecompressionBombError as error:
                raise DataError(f"image {image} is too large ({error})", "downscale it below 89 megapixels") from None
            except (OSError, ValueError) as error:
                raise DataError(f"image {image} cannot be read ({error})", "pass a PNG or JPEG file") from None
        return np.asarray(image.convert("RGB"))


def _resize(array: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    """Resize an [H, W, 3] uint8 image to (height, width) with Pillow, as transformers does."""
    from PIL import Image

    return np.asarray(Image.fromarray(array).resize((size[1], size[0]), resample=resample))


def _idefics_longest_edge(height: int, width: int, longest: int) -> tuple[int, int]:
    """Idefics3's first resize: the longest edge to `longest`, the other kept in proportion and
    rounded up to even, neither above 4096 (transformers' `get_resize_output_image_size`)."""
    aspect = width / height
    if width >= height:
        width = longest
        height = int(width / aspect)
        height += height % 2
    else:
        height = longest
        width = int(height * aspect)
        width += width % 2
    height, width = max(height, 1), max(width, 1)
    aspect = width / height
    if width >= height and width > 4096:
        width, height = 4096, int(4096 / aspect)
    elif height > width and height > 4096:
        height, width = 4096, int(4096 * aspect)
    return max(height, 1), max(width, 1)


def _idefics_multiples(height: int, width: int, tile: int) -> tuple[int, int]:
    """Idefics3's resize before splitting: both edges up to multiples of the tile, aspect kept."""
    aspect = width / height
    if width >= height:
        width = math.ceil(width / tile) * tile
        height = math.ceil(int(width / aspect) / tile) * tile
    else:
        height = math.ceil(height / tile) * tile
        width = math.ceil(int(height * aspect) / tile) * tile
    return height, width


def _smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's resize target: multiples of `factor`, within the pixel bounds, aspect kept."""
    if max(height, width) / min(height, width) > 200:
        raise DataError(f"an image of {width}x{height} pixels is too elongated for this model", "crop it below 200:1")
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar, w_bar = max(factor, math.floor(height / beta / factor) * factor), max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

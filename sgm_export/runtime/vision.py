"""The numpy side of vision-language generation: where image features go, and the positions
of a sequence that holds images.

- `splice_image_features`: the decoder reads the prompt's embeddings with each image token's
  embedding replaced by one row of image features, in reading order (row by row, token by
  token), as transformers' `masked_scatter` does.
- `mrope_positions`: Qwen2-VL's 3-D rotary positions (temporal, height, width). Text tokens
  count up on all three axes; an image's tokens sit on its merged patch grid, starting where
  the text stopped, and the text after it resumes at that start plus the grid's larger side.
  Decoding continues from the largest position of each row plus one, on all three axes.
"""

import numpy as np


def splice_image_features(inputs_embeds: np.ndarray, input_ids: np.ndarray, image_token_id: int, features: np.ndarray) -> np.ndarray:
    """A copy of `inputs_embeds` [batch, seq, hidden] with image tokens' rows taken from `features`."""
    where = input_ids == image_token_id
    if int(where.sum()) != features.shape[0]:
        raise ValueError(f"the prompts hold {int(where.sum())} image tokens but the images give {features.shape[0]} feature rows")
    spliced = inputs_embeds.copy()
    spliced[where] = features.astype(inputs_embeds.dtype)
    return spliced


def mrope_positions(
    input_ids: np.ndarray, attention_mask: np.ndarray, image_token_id: int, image_grid_thw: np.ndarray, spatial_merge_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Positions [3, batch, seq] of a left-padded prompt batch, and each row's next position.

    `image_grid_thw` lists the images in reading order over the whole batch; padding gets 0.
    """
    batch, length = input_ids.shape
    positions = np.zeros((3, batch, length), dtype=np.int64)
    next_position = np.zeros(batch, dtype=np.int64)
    grids = iter(np.asarray(image_grid_thw, dtype=np.int64).reshape(-1, 3))
    for row in range(batch):
        real = np.flatnonzero(attention_mask[row])
        tokens = input_ids[row, real]
        row_positions, current, index = [], 0, 0
        while index < len(tokens):
            if tokens[index] != image_token_id:
                row_positions.append(np.full((3, 1), current))
                current += 1
                index += 1
                continue
            t, h, w = next(grids)
            t, h, w = int(t), int(h) // spatial_merge_size, int(w) // spatial_merge_size
            grid = np.stack(np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")).reshape(3, -1) + current
            row_positions.append(grid)
            current += max(h, w)
            index += grid.shape[1]
        row_positions = np.concatenate(row_positions, axis=1)
        positions[:, row, real] = row_positions
        next_position[row] = row_positions.max() + 1
    return positions, next_position


def select_best_resolution(size: tuple[int, int], resolutions: list) -> tuple[int, int]:
    """LLaVA-NeXT's tiling target for an image of `size` (height, width): the listed (height,
    width) that keeps the most of the image's pixels after an aspect-preserving fit, then wastes
    the fewest (transformers' `select_best_resolution`, the first of equals winning)."""
    height, width = size
    best, most, least = None, 0, float("inf")
    for target_height, target_width in resolutions:
        scale = min(target_width / width, target_height / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        wasted = target_width * target_height - effective
        if effective > most or (effective == most and wasted < least):
            best, most, least = (int(target_height), int(target_width)), effective, wasted
    return best


def unpadded_grid(size: tuple[int, int], grid_height: int, grid_width: int) -> tuple[slice, slice]:
    """The rows and columns of a tiled feature grid that hold the image rather than its padding
    (the padding added to fit the tiling target is cut back off, as transformers' `unpad_image`)."""
    height, width = size
    if width / height > grid_width / grid_height:
        padding = (grid_height - int(round(height * (grid_width / width), 7))) // 2
        return slice(padding, grid_height - padding), slice(0, grid_width)
    padding = (grid_width - int(round(width * (grid_height / height), 7))) // 2
    return slice(0, grid_height), slice(padding, grid_width - padding)


def pack_anyres(tiles: np.ndarray, newline: np.ndarray, size: tuple[int, int], resolutions: list, tile_size: int) -> np.ndarray:
    """One image's rows of features from its tiles' features [tiles, side*side, hidden] (the
    resized whole image first): the whole image's rows, then the tile grid's rows, unpadded,
    each grid row followed by `newline` (transformers' `pack_image_features`)."""
    if tiles.shape[0] == 1:
        return np.concatenate([tiles[0], newline[None]])
    side = int(round(tiles.shape[1] ** 0.5))
    best_height, best_width = select_best_resolution(size, resolutions)
    rows_of_tiles, columns_of_tiles = best_height // tile_size, best_width // tile_size
    grid = tiles[1:].reshape(rows_of_tiles, columns_of_tiles, side, side, -1).transpose(0, 2, 1, 3, 4)
    grid = grid.reshape(rows_of_tiles * side, columns_of_tiles * side, -1)
    rows, columns = unpadded_grid(size, grid.shape[0], grid.shape[1])
    grid = grid[rows, columns]
    lines = np.concatenate([grid, np.broadcast_to(newline, (grid.shape[0], 1, grid.shape[2]))], axis=1)
    return np.concatenate([tiles[0], lines.reshape(-1, grid.shape[2])])

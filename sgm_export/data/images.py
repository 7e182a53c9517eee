"""Images for image+text examples: reading them with Pillow, and the neutral sample photos that
scikit-image ships (found without importing scikit-image, whose import is slow)."""

import importlib.util
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from sgm_export.errors import DataError

# Everyday photos and scans from scikit-image's `skimage/data` folder: nothing in them is toxic,
# so pairing them with both classes leaves the text as the only difference between the classes.
NEUTRAL_IMAGES = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "camera.png",
    "coins.png",
    "moon.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "text.png",
    "page.png",
    "clock_motion.png",
    "horse.png",
)


def load_image(path: Path, origin: str) -> Image.Image:
    """The image at `path` as RGB; a missing or unreadable file is one error naming the row."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise DataError(
            f"{origin} names image {path}, which does not exist", "fix the path (relative to the data file) or drop 'image'"
        ) from None
    except Image.DecompressionBombError as error:
        raise DataError(f"{origin} names image {path}, which is too large ({error})", "downscale it below 89 megapixels") from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"{origin} names image {path}, which cannot be read ({reason})", "replace it with a PNG or JPEG file") from None


def neutral_image_paths() -> list[Path]:
    """The neutral sample photos of scikit-image, in a fixed order."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise DataError(
            "the built-in image data needs the scikit-image package (its sample photos), which is not installed",
            "pip install 'sgm-export[vision]'",
        )
    folder = Path(spec.origin).parent / "data"
    return [folder / name for name in NEUTRAL_IMAGES]


def probe_image(size: int = 64) -> Image.Image:
    """A deterministic colour gradient, so that checks can run an image without any file."""
    image = Image.new("RGB", (size, size))
    image.putdata([(4 * x % 256, 4 * y % 256, (2 * x + 2 * y) % 256) for y in range(size) for x in range(size)])
    return image

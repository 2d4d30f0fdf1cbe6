"""Robust image decoding and the crop / resize operations of the image datasets.

:func:`load_rgb` turns any common image file into a ``uint8`` array ``(H, W, 3)``:

* grayscale (``1``, ``L``, ``I;16``, ``I``) is replicated to three channels;
  16-bit samples are scaled to 8 bit with ``round(v / 257)`` (65535 -> 255), not clipped;
  32-bit integer images (mode ``I``) are read as 16-bit data clipped to ``[0, 65535]``;
* CMYK (e.g. print JPEGs) and YCbCr go through Pillow's conversion to RGB
  (no ICC colour management);
* anything with transparency (``RGBA``, ``LA``, ``PA``, palette or ``L``/``RGB`` with a
  ``tRNS`` key) is composited on a WHITE background;
* the EXIF orientation tag is applied, so pixels come out the way viewers show them;
* animated GIF / multi-page files give their first frame.

Files that cannot become pixels raise :class:`CorruptImageError` naming the file and
what went wrong: an empty file, a non-image with an image extension, a truncated JPEG
or PNG (decoding is forced with ``Image.load()``; ``ImageFile.LOAD_TRUNCATED_IMAGES``
is never switched on, and a PNG must end with its ``IEND`` chunk).

Size policy (decompression bombs and huge photos):

* at most ``max_pixels`` pixels are ever decoded (default :data:`MAX_DECODED_PIXELS`,
  50 million, about 150 MB as RGB: every phone or DSLR photo fits);
* when the caller knows the size it will resize to (``target_size``, the shorter side),
  a JPEG is decoded at 1/2, 1/4 or 1/8 scale with ``Image.draft`` as long as its shorter
  side stays >= ``target_size``; the pixel limit applies to that reduced size, so a large
  JPEG needed only at 178 px loads fast and within the limit;
* beyond the limit :class:`ImageTooLargeError` is raised. Pillow's own
  decompression-bomb guard (``2 * PIL.Image.MAX_IMAGE_PIXELS``, about 179 million
  pixels, checked before any decoding) stays in force as the hard limit and is reported
  the same way.

The crop helpers take and return ``uint8`` arrays ``(H, W, C)``. An image smaller than
the crop is first upscaled so that its shorter side equals the crop size (it never
crashes, and never pads).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from transinr.data.errors import CorruptImageError, DatasetNotFoundError, ImageTooLargeError

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_DECODED_PIXELS",
    "RESAMPLE",
    "CorruptImageError",
    "DatasetNotFoundError",
    "ImageTooLargeError",
    "center_crop",
    "is_image_file",
    "load_rgb",
    "random_crop",
    "resize_shorter_side",
    "to_tensor",
]

#: File suffixes (lower case) treated as images by the folder datasets.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif")

#: Most pixels :func:`load_rgb` decodes by default (after JPEG draft reduction).
MAX_DECODED_PIXELS = 50_000_000

#: Interpolation of every resize. Bilinear (with Pillow's antialiasing when shrinking)
#: is what ``torchvision.transforms.Resize`` uses, the preprocessing the paper's numbers
#: were measured with.
RESAMPLE = Image.Resampling.BILINEAR

_MODES_16_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_MODES_WITH_ALPHA = ("RGBA", "LA", "La", "PA", "RGBa")
_PNG_TAIL_BYTES = 1024

_warned_load_truncated = False


def is_image_file(path: str | Path) -> bool:
    """True if the name ends with one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def load_rgb(
    path: str | Path,
    *,
    target_size: int | None = None,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Decode an image file into RGB pixels.

    Args:
        path: the image file.
        target_size: the shorter side the caller will resize to, if known. Lets a large
            JPEG decode at a reduced scale (shorter side still >= ``target_size``), so
            the result may be smaller than the file's full resolution.
        max_pixels: most pixels to decode; ``None`` reads :data:`MAX_DECODED_PIXELS`.

    Returns:
        ``uint8`` array ``(H, W, 3)``, C-contiguous and writable.

    Raises:
        FileNotFoundError: the file does not exist.
        CorruptImageError: empty, not an image, truncated or otherwise undecodable.
        ImageTooLargeError: above the pixel limit (see the module docstring).
    """
    path = Path(path)
    limit = MAX_DECODED_PIXELS if max_pixels is None else int(max_pixels)
    if target_size is not None:
        target_size = _check_size(target_size)
    if path.stat().st_size == 0:
        raise _corrupt(path, "the file is empty (0 bytes)")
    _warn_if_truncated_loading_enabled()

    try:
        # Pillow's DecompressionBombWarning (above PIL.Image.MAX_IMAGE_PIXELS) is left
        # alone: silencing it needs warnings.catch_warnings, which is not thread-safe.
        image = Image.open(path)
    except Image.DecompressionBombError:
        raise ImageTooLargeError(
            f"Refusing to open image '{path}': it is larger than Pillow's decompression-bomb "
            f"limit of {2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels. If the file is trusted, "
            "raise PIL.Image.MAX_IMAGE_PIXELS before loading it.",
            path=path,
            reason="larger than Pillow's decompression-bomb limit",
        ) from None
    except UnidentifiedImageError:
        raise _corrupt(
            path,
            f"Pillow cannot identify it as an image (first bytes: {_head(path)!r})",
        ) from None
    except (MemoryError, PermissionError, IsADirectoryError):
        raise
    except Exception as err:  # Pillow's plugins raise assorted types on malformed headers
        raise _corrupt(path, _describe_failure(err, "its header is unreadable")) from None

    with image:
        if target_size is not None:
            # Only JPEG/MPO implement draft; for other formats it is a no-op.
            image.draft(None, (target_size, target_size))
        width, height = image.size
        if width * height > limit:
            raise _too_large(path, width, height, limit, image.format, target_size)
        try:
            image.load()
            if image.format == "PNG" and not _png_has_end_chunk(path):
                raise OSError("the PNG ends before its IEND chunk")
            image = _apply_exif_orientation(image)
            return _to_rgb_array(image)
        except MemoryError:
            raise
        except Exception as err:
            raise _corrupt(path, _describe_failure(err, "decoding failed")) from None


def resize_shorter_side(img: np.ndarray, size: int) -> np.ndarray:
    """Resize so the shorter side is ``size``, keeping the aspect ratio.

    The longer side becomes ``int(size * long / short)`` (truncated, as torchvision does).
    Returns the input unchanged when the shorter side already equals ``size``.

    Args:
        img: ``uint8`` array ``(H, W, C)``.
        size: target length of the shorter side, in pixels.
    Returns:
        ``uint8`` array ``(H', W', C)`` with ``min(H', W') == size``.
    """
    _check_image_array(img)
    size = _check_size(size)
    height, width = img.shape[:2]
    short, long = min(height, width), max(height, width)
    if short == size:
        return img
    new_long = max(size, int(size * long / short))
    new_height, new_width = (size, new_long) if height <= width else (new_long, size)
    # Upscaling a thin strip to the crop's shorter side can make a tiny file enormous
    # (1 x 400,000 px to 32 px: 12.8 million px per row), so the pixel limit holds here too.
    if new_height * new_width > MAX_DECODED_PIXELS:
        reason = (f"{width}x{height} resized to {new_width}x{new_height} = {new_width * new_height:,} "
                  f"pixels exceeds the limit of {MAX_DECODED_PIXELS:,}")
        raise ImageTooLargeError(f"Refusing to resize an image: {reason}", reason=reason)
    return _pil_resize(img, new_width, new_height)


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """Central ``size x size`` window (offsets rounded down).

    An image with a side shorter than ``size`` is first upscaled with
    :func:`resize_shorter_side` so its shorter side equals ``size``.

    Args:
        img: ``uint8`` array ``(H, W, C)``.
    Returns:
        ``uint8`` array ``(size, size, C)``.
    """
    img = _upscale_if_smaller(img, size)
    height, width = img.shape[:2]
    top, left = (height - size) // 2, (width - size) // 2
    return np.ascontiguousarray(img[top : top + size, left : left + size])


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Uniformly placed ``size x size`` window, drawn from ``rng``.

    Images smaller than the crop are upscaled first, as in :func:`center_crop`.

    Args:
        img: ``uint8`` array ``(H, W, C)``.
        rng: source of the two offsets (top, then left).
    Returns:
        ``uint8`` array ``(size, size, C)``.
    """
    img = _upscale_if_smaller(img, size)
    height, width = img.shape[:2]
    top = int(rng.integers(0, height - size + 1))
    left = int(rng.integers(0, width - size + 1))
    return np.ascontiguousarray(img[top : top + size, left : left + size])


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """``uint8`` array ``(H, W, 3)`` -> float32 tensor ``(3, H, W)`` in ``[0, 1]``."""
    _check_image_array(img)
    chw = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
    return chw.to(torch.float32).div_(255.0).contiguous()


# ----------------------------------------------------------------------------- helpers


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    """Any decoded Pillow image -> ``uint8`` ``(H, W, 3)`` (see the module docstring)."""
    mode = image.mode
    if mode in _MODES_16_BIT:
        samples = np.asarray(image).astype(np.float64)
        gray = np.round(np.clip(samples, 0, 65535) / 257.0).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    has_transparency = mode in _MODES_WITH_ALPHA or (
        mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    if has_transparency:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        alpha = rgba[:, :, 3:] / 255.0
        on_white = rgba[:, :, :3] * alpha + 255.0 * (1.0 - alpha)
        return np.clip(np.round(on_white), 0, 255).astype(np.uint8)
    if mode != "RGB":
        image = image.convert("RGB")
    return np.array(image, dtype=np.uint8)


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception:
        # A malformed EXIF block must not make otherwise good pixels unusable.
        return image


def _png_has_end_chunk(path: Path) -> bool:
    # Pillow stops reading once the pixel data is inflated, so a download cut after the
    # last IDAT bytes (or inside the zlib checksum) would pass unnoticed.
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - _PNG_TAIL_BYTES))
        return b"IEND" in handle.read()


def _describe_failure(err: Exception, otherwise: str) -> str:
    detail = f"{type(err).__name__}: {err}"
    if "truncated" in str(err).lower() or "IEND" in str(err):
        return f"the file is truncated ({detail})"
    return f"{otherwise} ({detail})"


def _head(path: Path, count: int = 16) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(count)


def _expected_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        return "a JPEG image"
    if suffix:
        return f"a {suffix[1:].upper()} image"
    return "an image file"


def _corrupt(path: Path, what_went_wrong: str) -> CorruptImageError:
    return CorruptImageError(
        f"Cannot read image '{path}': {what_went_wrong}; expected {_expected_format(path)}.",
        path=path,
        reason=what_went_wrong,
    )


def _too_large(
    path: Path, width: int, height: int, limit: int, image_format: str | None, target_size: int | None
) -> ImageTooLargeError:
    if image_format in ("JPEG", "MPO") and target_size is None:
        hint = "pass target_size so the JPEG can be decoded at reduced scale, or "
    else:
        hint = ""
    reason = f"{width}x{height} = {width * height:,} pixels exceeds the limit of {limit:,}"
    return ImageTooLargeError(
        f"Refusing to decode image '{path}': {reason} decoded pixels. To load it, "
        f"{hint}raise max_pixels / transinr.data.image_io.MAX_DECODED_PIXELS.",
        path=path,
        reason=reason,
    )


def _warn_if_truncated_loading_enabled() -> None:
    global _warned_load_truncated
    if ImageFile.LOAD_TRUNCATED_IMAGES and not _warned_load_truncated:
        _warned_load_truncated = True
        warnings.warn(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True (set by some other code): "
            "truncated JPEG files will load with grey areas instead of raising "
            "CorruptImageError. Set it back to False to detect them.",
            RuntimeWarning,
            stacklevel=3,
        )


def _check_image_array(img: np.ndarray) -> None:
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.dtype != np.uint8:
        desc = f"{img.dtype} array of shape {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        raise ValueError(f"expected a uint8 array of shape (H, W, C), got a {desc}")


def _check_size(size: int) -> int:
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    return int(size)


def _upscale_if_smaller(img: np.ndarray, size: int) -> np.ndarray:
    _check_image_array(img)
    size = _check_size(size)
    if min(img.shape[:2]) < size:
        return resize_shorter_side(img, size)
    return img


def _pil_resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    channels = img.shape[2]
    if channels == 1:
        resized = Image.fromarray(img[:, :, 0]).resize((width, height), RESAMPLE)
        return np.array(resized, dtype=np.uint8)[:, :, None]
    resized = Image.fromarray(np.ascontiguousarray(img)).resize((width, height), RESAMPLE)
    return np.array(resized, dtype=np.uint8)

"""Errors and warnings raised by the image loaders and datasets.

Every exception here takes a single message string as its only positional
argument. That keeps them re-raisable by ``torch.utils.data.DataLoader``, which
rebuilds an exception caught in a worker process from its type and message.
"""

from __future__ import annotations

from pathlib import Path


class CorruptImageError(ValueError):
    """An image file that cannot be decoded: empty, not an image, truncated, too large.

    ``path`` and ``reason`` are kept as attributes so callers can report them
    without parsing the message.
    """

    def __init__(self, message: str, *, path: str | Path | None = None, reason: str | None = None):
        super().__init__(message)
        self.path = Path(path) if path is not None else None
        self.reason = reason if reason is not None else message


class ImageTooLargeError(CorruptImageError):
    """An image refused by the pixel-count policy of :func:`transinr.data.image_io.load_rgb`.

    It derives from :class:`CorruptImageError` so that a dataset treats every
    file it cannot turn into pixels the same way (skip and report).
    """


class DatasetNotFoundError(FileNotFoundError):
    """A dataset folder is missing or holds none of the expected files.

    The message states the expected layout and where to download the data.
    """


class TooManyCorruptImagesError(RuntimeError):
    """Too many consecutive unreadable files: the folder itself is probably broken."""


class SkippedImageWarning(UserWarning):
    """A dataset skipped an unreadable file and served the next readable one instead."""

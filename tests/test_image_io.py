"""Robust image decoding: odd modes, broken files, size policy, crops."""

from __future__ import annotations

import pickle
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from transinr.data import image_io
from transinr.data.errors import CorruptImageError, ImageTooLargeError
from transinr.data.image_io import center_crop, load_rgb, random_crop, resize_shorter_side, to_tensor


def noise_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_png_rgb16(path, pixels: np.ndarray) -> None:
    """Hand-written 16-bit RGB PNG (Pillow cannot save that mode). ``pixels``: (H, W, 3) uint16."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width = pixels.shape[:2]
    big_endian = pixels.astype(">u2")
    raw = b"".join(b"\x00" + big_endian[row].tobytes() for row in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


# ----------------------------------------------------------------------------- modes


def test_rgb_jpeg_gives_uint8_hwc(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.fromarray(noise_rgb(20, 30)).save(path)
    out = load_rgb(path)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert out.flags.c_contiguous and out.flags.writeable


def test_grayscale_is_replicated_to_three_channels(tmp_path):
    path = tmp_path / "gray.png"
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    Image.fromarray(gray).save(path)
    out = load_rgb(path)
    assert out.shape == (8, 8, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], gray)


def test_16bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "depth16.png"
    samples = np.array([[0, 257 * 100, 65535, 1000]], dtype=np.uint16)
    Image.fromarray(samples).save(path)
    assert Image.open(path).mode.startswith("I")  # really a 16-bit file
    out = load_rgb(path)
    # round(v / 257): clipping to 255 would turn the last three all into 255.
    np.testing.assert_array_equal(out[0, :, 0], [0, 100, 255, 4])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_16bit_rgb_png_keeps_full_range(tmp_path):
    path = tmp_path / "rgb16.png"
    pixels = np.array([[[65535, 0, 257 * 128], [257 * 10, 257 * 200, 0]]], dtype=np.uint16)
    write_png_rgb16(path, pixels)
    out = load_rgb(path)
    np.testing.assert_array_equal(out, [[[255, 0, 128], [10, 200, 0]]])


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (16, 16), (255, 0, 0, 0)).save(path, quality=95)  # pure cyan ink
    assert Image.open(path).mode == "CMYK"
    out = load_rgb(path).astype(int)
    assert out.shape == (16, 16, 3)
    assert np.all(out[..., 0] < 20) and np.all(out[..., 1:] > 235)


def test_rgba_transparent_pixel_becomes_white(tmp_path):
    path = tmp_path / "sprite.png"
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 0)  # fully transparent red
    rgba[0, 1] = (0, 0, 255, 255)  # opaque blue
    rgba[1, 0] = (0, 0, 0, 128)  # half-transparent black
    Image.fromarray(rgba).save(path)
    out = load_rgb(path)
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(out[0, 1], [0, 0, 255])
    np.testing.assert_array_equal(out[1, 0], [127, 127, 127])  # 255 * (1 - 128/255)


def test_la_transparent_pixel_becomes_white(tmp_path):
    path = tmp_path / "gray_alpha.png"
    Image.new("LA", (3, 3), (20, 0)).save(path)
    np.testing.assert_array_equal(load_rgb(path), np.full((3, 3, 3), 255))


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_palette_with_transparency_composited_on_white(tmp_path, suffix):
    path = tmp_path / f"palette{suffix}"
    image = Image.new("P", (4, 2), 0)
    image.putpalette([255, 0, 0, 0, 160, 0] + [0] * 762)
    for x in range(2, 4):
        for y in range(2):
            image.putpixel((x, y), 1)
    image.save(path, transparency=0)
    out = load_rgb(path)
    np.testing.assert_array_equal(out[:, :2], np.full((2, 2, 3), 255))  # transparent index
    np.testing.assert_array_equal(out[:, 2:], np.tile([0, 160, 0], (2, 2, 1)))


def test_palette_without_transparency(tmp_path):
    path = tmp_path / "palette.png"
    image = Image.new("P", (2, 2), 1)
    image.putpalette([255, 0, 0, 10, 20, 30] + [0] * 762)
    image.save(path)
    np.testing.assert_array_equal(load_rgb(path), np.tile([10, 20, 30], (2, 2, 1)))


def test_grayscale_with_transparent_key_becomes_white(tmp_path):
    path = tmp_path / "keyed.png"
    gray = np.array([[7, 100]], dtype=np.uint8)
    Image.fromarray(gray).save(path, transparency=7)
    np.testing.assert_array_equal(load_rgb(path), [[[255, 255, 255], [100, 100, 100]]])


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    pixels = np.zeros((16, 32, 3), dtype=np.uint8)
    pixels[:, :16] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    out = load_rgb(path)
    assert out.shape == (32, 16, 3)
    assert out[:16].mean() > 200 and out[16:].mean() < 50  # the left half is now on top


# ----------------------------------------------------------------------------- broken files


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(CorruptImageError, match="empty") as info:
        load_rgb(path)
    assert str(path) in str(info.value) and info.value.path == path


def test_text_file_with_image_extension(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture\n")
    with pytest.raises(CorruptImageError) as info:
        load_rgb(path)
    message = str(info.value)
    assert str(path) in message and "JPEG" in message and "this is not" in message


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_rgb(tmp_path / "nowhere.png")


@pytest.mark.parametrize("keep", ["half", "all_but_end_marker"])
def test_truncated_jpeg(tmp_path, keep):
    full = tmp_path / "full.jpg"
    Image.fromarray(noise_rgb(64, 64)).save(full, quality=95)
    data = full.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2] if keep == "half" else data[:-2])
    with pytest.raises(CorruptImageError, match="truncated") as info:
        load_rgb(cut)
    assert str(cut) in str(info.value)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("missing_bytes", ["half", 12, 20])
def test_truncated_png(tmp_path, missing_bytes):
    full = tmp_path / "full.png"
    Image.fromarray(noise_rgb(64, 64)).save(full)
    data = full.read_bytes()
    keep = len(data) // 2 if missing_bytes == "half" else len(data) - missing_bytes
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[:keep])
    # Cutting 12 or 20 bytes leaves every pixel decodable: only the missing IEND tells.
    with pytest.raises(CorruptImageError, match="truncated"):
        load_rgb(cut)


def test_corrupt_image_error_survives_pickling_and_message_only_rebuild(tmp_path):
    err = CorruptImageError("bad file", path=tmp_path / "x.png", reason="broken")
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == "bad file" and again.path == tmp_path / "x.png" and again.reason == "broken"
    # DataLoader rebuilds worker exceptions as exc_type(message)
    assert str(ImageTooLargeError("msg")) == "msg"


# ----------------------------------------------------------------------------- size policy


def test_png_above_pixel_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(image_io, "MAX_DECODED_PIXELS", 10_000)
    path = tmp_path / "big.png"
    Image.fromarray(noise_rgb(200, 200)).save(path)
    with pytest.raises(ImageTooLargeError) as info:
        load_rgb(path, target_size=50)  # draft does not apply to PNG
    message = str(info.value)
    assert str(path) in message and "40,000" in message and "10,000" in message
    assert isinstance(info.value, CorruptImageError)
    assert load_rgb(path, max_pixels=40_000).shape == (200, 200, 3)  # explicit override


def test_large_jpeg_is_drafted_when_target_size_known(tmp_path, monkeypatch):
    monkeypatch.setattr(image_io, "MAX_DECODED_PIXELS", 10_000)
    path = tmp_path / "big.jpg"
    Image.fromarray(noise_rgb(200, 300)).save(path)
    with pytest.raises(ImageTooLargeError, match="target_size"):
        load_rgb(path)
    out = load_rgb(path, target_size=50)
    assert out.shape == (50, 75, 3)  # decoded at 1/4 scale, shorter side still >= 50


def test_pillow_decompression_bomb_guard_is_the_hard_limit(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.fromarray(noise_rgb(100, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # Pillow refuses above 2,000
    with pytest.raises(ImageTooLargeError, match="decompression-bomb"):
        load_rgb(path, target_size=10, max_pixels=10**9)


# ----------------------------------------------------------------------------- crops


def test_resize_shorter_side_keeps_aspect():
    img = noise_rgb(100, 50)
    out = resize_shorter_side(img, 20)
    assert out.shape == (40, 20, 3) and out.dtype == np.uint8
    assert resize_shorter_side(noise_rgb(320, 426), 178).shape == (178, 236, 3)  # truncated like torchvision
    assert resize_shorter_side(img, 50) is img


def test_center_crop_takes_the_middle():
    img = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    np.testing.assert_array_equal(center_crop(img, 4), img[1:5, 2:6])
    np.testing.assert_array_equal(center_crop(img, 3), img[1:4, 2:5])  # offsets rounded down


def test_random_crop_is_a_window_and_reproducible():
    img = noise_rgb(30, 40)
    crops = [random_crop(img, 10, np.random.default_rng(s)) for s in range(20)]
    for crop in crops:
        assert crop.shape == (10, 10, 3)
        hits = [
            (top, left)
            for top in range(21)
            for left in range(31)
            if np.array_equal(img[top : top + 10, left : left + 10], crop)
        ]
        assert hits
    np.testing.assert_array_equal(crops[3], random_crop(img, 10, np.random.default_rng(3)))
    assert len({c.tobytes() for c in crops}) > 5


@pytest.mark.parametrize("crop", ["center", "random"])
def test_image_smaller_than_crop_is_upscaled_first(crop):
    img = noise_rgb(10, 20)
    if crop == "center":
        out = center_crop(img, 32)
    else:
        out = random_crop(img, 32, np.random.default_rng(0))
    assert out.shape == (32, 32, 3)


def test_crop_rejects_non_image_arrays():
    with pytest.raises(ValueError, match="uint8"):
        center_crop(np.zeros((4, 4, 3), dtype=np.float32), 2)


def test_to_tensor_layout_and_range():
    img = np.zeros((2, 3, 3), dtype=np.uint8)
    img[1, 2] = (255, 0, 51)
    out = to_tensor(img)
    assert out.shape == (3, 2, 3) and out.dtype == torch.float32 and out.is_contiguous()
    assert torch.allclose(out[:, 1, 2], torch.tensor([1.0, 0.0, 0.2]))
    assert out.min() >= 0 and out.max() <= 1

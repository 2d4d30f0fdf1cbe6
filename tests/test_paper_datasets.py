"""CelebA, Imagenette and ImageFolder on tiny fabricated layouts; the skip policy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from transinr.data.errors import DatasetNotFoundError, SkippedImageWarning, TooManyCorruptImagesError
from transinr.data.image_io import center_crop, load_rgb, resize_shorter_side
from transinr.data.paper_images import CelebA, ImageFolder, Imagenette

TINY_SPLITS = {"train": (1, 4), "val": (5, 5), "test": (6, 6)}


def noise_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_image(path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=95, subsampling=0)  # 4:4:4: no colour bleed


def assert_image_tensor(x: torch.Tensor, size: int) -> None:
    assert x.shape == (3, size, size) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


# ----------------------------------------------------------------------------- CelebA


def faces_with_blue_middle() -> np.ndarray:
    """178 wide x 218 tall: red bands of 20 rows above and below a blue 178x178 square."""
    pixels = np.zeros((218, 178, 3), dtype=np.uint8)
    pixels[:, :, 0] = 255
    pixels[20:198] = (0, 0, 255)
    return pixels


@pytest.fixture
def celeba_root(tmp_path, monkeypatch):
    monkeypatch.setattr(CelebA, "SPLITS", TINY_SPLITS)
    folder = tmp_path / "celeba" / "img_align_celeba"
    for index in range(1, 7):
        write_image(folder / f"{index:06d}.jpg", faces_with_blue_middle())
    return tmp_path / "celeba"


def test_celeba_split_sizes_and_center_crop(celeba_root):
    sizes = {split: len(CelebA(celeba_root, split)) for split in TINY_SPLITS}
    assert sizes == {"train": 4, "val": 1, "test": 1}
    train = CelebA(celeba_root, "train")
    assert [p.name for p in train.files] == ["000001.jpg", "000002.jpg", "000003.jpg", "000004.jpg"]
    x = train[0]
    assert_image_tensor(x, 178)
    # The crop removes the red bands: every row, edges included, is blue.
    assert float(x[0].max()) < 0.2 and float(x[2].min()) > 0.8


def test_celeba_resolution(celeba_root):
    x = CelebA(celeba_root, "test", resolution=32)[0]
    assert_image_tensor(x, 32)


def test_celeba_accepts_nested_zip_layout(tmp_path, monkeypatch):
    monkeypatch.setattr(CelebA, "SPLITS", TINY_SPLITS)
    write_image(tmp_path / "img_align_celeba" / "img_align_celeba" / "000005.jpg", faces_with_blue_middle())
    assert len(CelebA(tmp_path, "val")) == 1


def test_celeba_partial_download_warns_with_count(celeba_root):
    (celeba_root / "img_align_celeba" / "000002.jpg").unlink()
    with pytest.warns(UserWarning, match="1 of 4 images are missing") as record:
        dataset = CelebA(celeba_root, "train")
    assert len(record) == 1 and len(dataset) == 3


def test_celeba_missing_folder_explains_layout(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        CelebA(tmp_path / "nowhere", "train")
    message = str(info.value)
    for expected in ("img_align_celeba", "000001.jpg", "img_align_celeba.zip", "Align&Cropped", "mmlab.ie.cuhk.edu.hk"):
        assert expected in message


def test_celeba_folder_without_images(tmp_path):
    (tmp_path / "img_align_celeba").mkdir()
    (tmp_path / "img_align_celeba" / "readme.txt").write_text("x")
    with pytest.raises(DatasetNotFoundError, match="holds no files named like 000001.jpg"):
        CelebA(tmp_path, "train")


def test_celeba_split_without_any_of_its_files(celeba_root):
    (celeba_root / "img_align_celeba" / "000006.jpg").unlink()
    with pytest.raises(DatasetNotFoundError, match="test split"):
        CelebA(celeba_root, "test")


def test_celeba_rejects_unknown_split(celeba_root):
    with pytest.raises(ValueError, match="split"):
        CelebA(celeba_root, "validation")


def test_celeba_default_split_boundaries_are_official():
    assert CelebA.SPLITS == {"train": (1, 162770), "val": (162771, 182637), "test": (182638, 202599)}


# ----------------------------------------------------------------------------- Imagenette


@pytest.fixture
def imagenette_root(tmp_path):
    root = tmp_path / "imagenette2-320"
    for split, count in (("train", 3), ("val", 2)):
        for class_name in ("n01440764", "n02102040"):
            for i in range(count):
                # PNG content under the official .JPEG name keeps pixel checks exact.
                path = root / split / class_name / f"img_{i}.JPEG"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(noise_rgb(320, 400, seed=i)).save(path, format="PNG")
    return root


def test_imagenette_layout_and_labels(imagenette_root):
    train = Imagenette(imagenette_root, "train", seed=0)
    assert len(train) == 6 and train.class_names == ["n01440764", "n02102040"]
    assert train.labels == [0, 0, 0, 1, 1, 1]
    assert len(Imagenette(imagenette_root.parent, "val")) == 4  # parent of imagenette2-320 works too


def test_imagenette_train_is_crop_or_mirrored_crop(imagenette_root):
    train = Imagenette(imagenette_root, "train", seed=0)
    source = load_rgb(train.files[0])
    mirrored_seen = plain_seen = False
    for epoch in range(8):
        train.set_epoch(epoch)
        x = train[0]
        assert_image_tensor(x, 178)
        crop = (x.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        for candidate, mirrored in ((crop, False), (crop[:, ::-1], True)):
            matches = [  # pre-filter on the first 8 pixels of the top row, then compare all
                (top, left)
                for top in range(320 - 178 + 1)
                for left in range(400 - 178 + 1)
                if np.array_equal(source[top, left : left + 8], candidate[0, :8])
                and np.array_equal(source[top : top + 178, left : left + 178], candidate)
            ]
            if matches:
                mirrored_seen |= mirrored
                plain_seen |= not mirrored
                break
        else:
            pytest.fail("train item is neither a crop of the image nor its mirror")
    assert mirrored_seen and plain_seen  # 8 epochs: both flips happen (fixed seed, so deterministic)


def test_imagenette_seeded_augmentation_is_reproducible(imagenette_root):
    first = Imagenette(imagenette_root, "train", seed=3)
    second = Imagenette(imagenette_root, "train", seed=3)
    assert torch.equal(first[1], second[1])
    second.set_epoch(1)
    assert not torch.equal(first[1], second[1])


def test_imagenette_unseeded_follows_torch_manual_seed(imagenette_root):
    dataset = Imagenette(imagenette_root, "train")
    torch.manual_seed(0)
    a = dataset[2]
    torch.manual_seed(0)
    assert torch.equal(a, dataset[2])


def test_imagenette_val_is_resize_then_center_crop(imagenette_root):
    val = Imagenette(imagenette_root, "val", resolution=64)
    x = val[0]
    assert_image_tensor(x, 64)
    expected = resize_shorter_side(center_crop(resize_shorter_side(load_rgb(val.files[0]), 178), 178), 64)
    assert torch.equal(x, torch.from_numpy(expected).permute(2, 0, 1).float() / 255)


def test_imagenette_missing_explains_layout(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        Imagenette(tmp_path, "train")
    message = str(info.value)
    assert "{train,val}/<class>/*.JPEG" in message and "imagenette2-320" in message
    assert "github.com/fastai/imagenette" in message


def test_imagenette_split_without_images(tmp_path):
    (tmp_path / "val" / "n01440764").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="no class folders with images"):
        Imagenette(tmp_path, "val")


# ----------------------------------------------------------------------------- ImageFolder


def test_image_folder_recursive_mixed_case_and_hidden(tmp_path):
    write_image(tmp_path / "a.JPG", noise_rgb(40, 60))
    write_image(tmp_path / "sub" / "b.Png", noise_rgb(50, 30))
    write_image(tmp_path / "sub" / "deeper" / "c.webp", noise_rgb(20, 20))
    write_image(tmp_path / "d.bmp", noise_rgb(33, 33))
    Image.fromarray(noise_rgb(16, 16)).convert("P").save(tmp_path / "e.gif")
    (tmp_path / "._a.JPG").write_bytes(b"\x00\x05\x16\x07 macOS metadata")  # ignored: hidden
    write_image(tmp_path / ".cache" / "f.png", noise_rgb(8, 8))  # ignored: hidden folder
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    dataset = ImageFolder(tmp_path, resolution=24)
    assert dataset.relative_paths == ["a.JPG", "d.bmp", "e.gif", "sub/b.Png", "sub/deeper/c.webp"]
    for i in range(len(dataset)):
        assert_image_tensor(dataset[i], 24)
    assert not dataset.skipped


def test_image_folder_hash_split_is_a_stable_partition(tmp_path):
    for i in range(40):
        write_image(tmp_path / f"img_{i:02d}.png", noise_rgb(8, 8, seed=i))
    everything = set(ImageFolder(tmp_path, 8).relative_paths)
    train = set(ImageFolder(tmp_path, 8, split="train", test_fraction=0.25).relative_paths)
    test = set(ImageFolder(tmp_path, 8, split="test", test_fraction=0.25).relative_paths)
    assert train | test == everything and not train & test and 0 < len(test) < 20
    (tmp_path / "img_00.png").unlink()  # removing a file does not move the others
    assert set(ImageFolder(tmp_path, 8, split="test", test_fraction=0.25).relative_paths) == test - {"img_00.png"}


def test_image_folder_missing_or_empty(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "nowhere", 32)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DatasetNotFoundError, match="holds no images.*jpg/jpeg/png"):
        ImageFolder(tmp_path, 32)


# ----------------------------------------------------------------------------- bad files


@pytest.fixture
def folder_with_bad_files(tmp_path):
    write_image(tmp_path / "a_good.png", noise_rgb(20, 20, seed=1))
    (tmp_path / "b_text.png").write_text("not an image")
    (tmp_path / "c_empty.jpg").write_bytes(b"")
    write_image(tmp_path / "d_good.png", noise_rgb(20, 20, seed=2))
    full = tmp_path / "full.bin"
    Image.fromarray(noise_rgb(64, 64)).save(full, format="JPEG")
    (tmp_path / "e_truncated.jpg").write_bytes(full.read_bytes()[:600])
    full.unlink()
    write_image(tmp_path / "f_good.png", noise_rgb(20, 20, seed=3))
    return tmp_path


def test_corrupt_file_is_skipped_warned_once_and_recorded(folder_with_bad_files):
    dataset = ImageFolder(folder_with_bad_files, 16)
    with pytest.warns(SkippedImageWarning) as record:
        x = dataset[1]  # b_text.png, then c_empty.jpg, then d_good.png
    assert torch.equal(x, dataset[3])
    messages = [str(w.message) for w in record]
    assert len(messages) == 2
    assert "b_text.png" in messages[0] and "c_empty.jpg" in messages[1] and "empty" in messages[1]
    assert dataset.skipped == {folder_with_bad_files / "b_text.png", folder_with_bad_files / "c_empty.jpg"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second visit is silent
        assert torch.equal(dataset[2], x)


def test_too_many_consecutive_failures_lists_them(folder_with_bad_files):
    dataset = ImageFolder(folder_with_bad_files, 16)
    dataset.max_consecutive_failures = 2
    with pytest.warns(SkippedImageWarning), pytest.raises(TooManyCorruptImagesError) as info:
        dataset[1]
    assert "b_text.png" in str(info.value) and "c_empty.jpg" in str(info.value)


def test_verify_reports_every_bad_file(folder_with_bad_files):
    dataset = ImageFolder(folder_with_bad_files, 16)
    problems = dict(dataset.verify(num_threads=2, progress=False))
    assert {p.name for p in problems} == {"b_text.png", "c_empty.jpg", "e_truncated.jpg"}
    assert "truncated" in problems[folder_with_bad_files / "e_truncated.jpg"]
    assert dataset.skipped == set(problems)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # known-bad files are skipped without a new warning
        assert torch.equal(dataset[4], dataset[5])


def test_dataloader_workers_skip_bad_files_and_report_them(folder_with_bad_files):
    dataset = ImageFolder(folder_with_bad_files, 16)
    loader = DataLoader(dataset, batch_size=2, num_workers=2, shuffle=False)
    batches = list(loader)
    assert sum(len(b) for b in batches) == len(dataset) == 6
    for batch in batches:
        assert batch.shape[1:] == (3, 16, 16) and batch.dtype == torch.float32
    # Recorded by the worker processes, visible here through shared memory.
    assert {p.name for p in dataset.skipped} == {"b_text.png", "c_empty.jpg", "e_truncated.jpg"}

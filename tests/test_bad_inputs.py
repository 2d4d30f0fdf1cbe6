"""Bad inputs end in a clear error or are handled as documented, through the whole kit.

Decoding each odd file is tested in ``test_image_io.py`` and the dataset skip policy in
``test_paper_datasets.py``; here the same files go through datasets, training runs
and the command line.
"""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from transinr import cli
from transinr.checkpoint import first_non_finite, safe_load
from transinr.data import image_io
from transinr.data.errors import SkippedImageWarning
from transinr.data.paper_images import ImageFolder, _hash_fraction
from transinr.tasks.image import ImageRegression
from transinr.train import CHECKPOINT_NAME, NonFiniteLossError, train

from .test_image_io import write_png_rgb16
from .helpers import (  # noqa: F401
    FOLDER_RESOLUTION,
    folder_config,
    loss_curve,
    run_cli,
    write_config_yaml,
)


def in_train_split(name: str) -> bool:
    return _hash_fraction(name) >= 0.1  # ImageFolder's default test_fraction


def train_split_names(stem: str, suffix: str, count: int) -> list[str]:
    """``count`` file names that the ImageFolder puts in the train split."""
    names = (f"{stem}_{i}{suffix}" for i in range(1000))
    return [name for name in names if in_train_split(name)][:count]


def write_truncated_jpeg(path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:600])


# ----------------------------------------------------------------------------- odd but valid images


def write_odd_images(folder) -> dict[str, str]:
    """One file of each unusual kind that must load; returns {file name: what it is}."""
    gradient = np.tile(np.linspace(0, 255, 24, dtype=np.uint8), (24, 1))
    Image.fromarray(gradient).save(folder / "gray.png")
    Image.fromarray(gradient.astype(np.uint16) * 257).save(folder / "gray16.png")
    write_png_rgb16(folder / "rgb16.png", np.stack([gradient.astype(np.uint16) * 257] * 3, axis=-1))
    Image.new("CMYK", (24, 24), (0, 255, 0, 0)).save(folder / "cmyk.jpg")
    rgba = np.zeros((24, 24, 4), dtype=np.uint8)
    rgba[:, 12:] = (255, 0, 0, 255)  # right half opaque red, left half transparent
    Image.fromarray(rgba).save(folder / "rgba.png")
    palette = Image.new("P", (24, 24), 0)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette.paste(1, (12, 0, 24, 24))
    palette.save(folder / "palette.gif", transparency=0)  # index 0 transparent
    Image.fromarray(gradient[:5, :7]).convert("RGB").save(folder / "tiny.png")  # smaller than the crop
    Image.fromarray(np.tile(gradient, (1, 20))).convert("RGB").save(folder / "panorama.jpg")  # 24 x 480
    return {"gray.png": "grayscale", "gray16.png": "16-bit grayscale", "rgb16.png": "16-bit RGB",
            "cmyk.jpg": "CMYK JPEG", "rgba.png": "RGBA", "palette.gif": "palette with transparency",
            "tiny.png": "5x7, smaller than the crop", "panorama.jpg": "24x480"}


def test_odd_images_all_load_as_rgb_at_the_requested_size(tmp_path):
    kinds = write_odd_images(tmp_path)
    dataset = ImageFolder(tmp_path, resolution=FOLDER_RESOLUTION)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of them is skipped
        items = {path.name: dataset[i] for i, path in enumerate(dataset.files)}
    assert set(items) == set(kinds)
    for name, x in items.items():
        assert x.shape == (3, FOLDER_RESOLUTION, FOLDER_RESOLUTION) and x.dtype == torch.float32, kinds[name]
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0, kinds[name]
    assert not dataset.skipped
    # Transparency is composited on white; gray is replicated; CMYK becomes RGB.
    assert torch.allclose(items["rgba.png"][:, :, 0], torch.ones(3, FOLDER_RESOLUTION), atol=1e-6)
    assert torch.allclose(items["rgba.png"][:, :, -1], torch.tensor([1.0, 0.0, 0.0])[:, None], atol=0.02)
    assert torch.allclose(items["palette.gif"][:, :, 0], torch.ones(3, FOLDER_RESOLUTION), atol=1e-6)
    assert torch.equal(items["gray.png"][0], items["gray.png"][2])
    assert torch.allclose(items["gray16.png"], items["gray.png"], atol=1 / 255)
    assert torch.allclose(items["rgb16.png"], items["gray.png"], atol=1 / 255)
    cmyk = items["cmyk.jpg"]  # magenta ink: red and blue light, no green
    assert cmyk[0].min() > 0.9 and cmyk[1].max() < 0.1 and cmyk[2].min() > 0.9


def test_huge_image_in_a_dataset_is_skipped_and_named(tmp_path, monkeypatch):
    monkeypatch.setattr(image_io, "MAX_DECODED_PIXELS", 10_000)  # as if 50 Mpx were 10 kpx
    Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(tmp_path / "a_small.png")
    Image.fromarray(np.zeros((200, 200, 3), dtype=np.uint8)).save(tmp_path / "b_huge.png")
    dataset = ImageFolder(tmp_path, resolution=FOLDER_RESOLUTION)
    with pytest.warns(SkippedImageWarning, match=r"b_huge\.png.*40,000 pixels exceeds the limit of 10,000"):
        x = dataset[1]
    assert torch.equal(x, dataset[0]) and {p.name for p in dataset.skipped} == {"b_huge.png"}


# ----------------------------------------------------------------------------- corrupt files in a run


def test_corrupt_images_in_a_cli_training_run_are_skipped_and_named(tmp_path, image_folder, one_thread, capsys):
    truncated, empty, text = (train_split_names(stem, suffix, 1)[0] for stem, suffix in
                              (("truncated", ".jpg"), ("empty", ".jpg"), ("notes", ".png")))
    write_truncated_jpeg(image_folder / truncated)
    (image_folder / empty).write_bytes(b"")
    (image_folder / text).write_text("not an image")
    write_odd_images(image_folder)
    config = folder_config(image_folder, epochs=1.0, checkpoint_every=2)
    config_path = write_config_yaml(config, tmp_path / "tiny.yaml")
    run_dir = tmp_path / "run"
    with pytest.warns(SkippedImageWarning) as record:
        cli.main(["train", str(config_path), "--run-dir", str(run_dir), "--device", "cpu", "--quiet"])
    messages = "\n".join(str(w.message) for w in record if issubclass(w.category, SkippedImageWarning))
    for name, reason in ((truncated, "truncated"), (empty, "empty"), (text, "cannot identify")):
        assert f"{image_folder / name}'" in messages and reason in messages, name
    assert "held-out PSNR" in capsys.readouterr().out
    assert json.loads((run_dir / "results.json").read_text())["steps"] == safe_load(run_dir / CHECKPOINT_NAME)["step"]


def test_folder_of_only_corrupt_images_stops_with_the_files_listed(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for name in train_split_names("broken", ".png", 3):
        (images / name).write_text("not an image")
    held_out = next(n for n in (f"held_out_{i}.png" for i in range(1000)) if not in_train_split(n))
    (images / held_out).write_text("not an image")
    config_path = write_config_yaml(folder_config(images), tmp_path / "tiny.yaml")
    with pytest.raises(SystemExit) as info, pytest.warns(SkippedImageWarning):
        cli.main(["train", str(config_path), "--run-dir", str(tmp_path / "run"), "--device", "cpu"])
    assert info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ImageFolder: 3 consecutive images could not be read")
    assert all(name in error for name in train_split_names("broken", ".png", 3))


# ----------------------------------------------------------------------------- missing data


@pytest.mark.parametrize("dataset, expected", [
    ("folder", r"Image folder '.*nowhere' does not exist"),
    ("celeba", r"CelebA not found: '.*nowhere' does not exist\. Expected layout: .*img_align_celeba"),
    ("imagenette", r"Imagenette not found: .*imagenette2-320"),
])
def test_missing_dataset_folder_is_a_one_line_cli_error(tmp_path, capsys, dataset, expected):
    config_path = write_config_yaml(folder_config(tmp_path / "nowhere"), tmp_path / "tiny.yaml")
    with pytest.raises(SystemExit) as info:
        cli.main(["train", str(config_path), f"data.name={dataset}", "--run-dir", str(tmp_path / "run")])
    assert info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: ")
    assert re.search(expected, error)
    assert not (tmp_path / "run" / CHECKPOINT_NAME).exists()


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize("override, expected", [
    ("train.batch_size=many", "train.batch_size: expected int, got 'many'"),
    ("train.lrr=0.1", "unknown key(s) 'lrr' for TrainConfig"),
    ("model.hyponet=3", "model.hyponet: expected a mapping"),
])
def test_bad_config_override_is_a_one_line_cli_error(tmp_path, capsys, override, expected):
    config_path = write_config_yaml(folder_config(tmp_path), tmp_path / "tiny.yaml")
    with pytest.raises(SystemExit) as info:
        cli.main(["train", str(config_path), override, "--run-dir", str(tmp_path / "run")])
    assert info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {config_path}: ") and expected in error and error.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_bad_config_file_through_the_installed_command(tmp_path):
    """The real entry point, in a subprocess: status 2 and one line, no traceback."""
    config_path = tmp_path / "typo.yaml"
    config_path.write_text("name: typo\ntrain:\n  epochs: 1\n  batchsize: 8\n")
    result = run_cli("train", str(config_path), "--run-dir", str(tmp_path / "run"), timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: {config_path}: train: unknown key(s) 'batchsize'")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


# ----------------------------------------------------------------------------- non-finite loss


def nan_at_call(n: int, *, in_gradient_only: bool = False):
    """A ``training_loss`` that goes bad at its ``n``-th call.

    By default the loss itself is NaN. With ``in_gradient_only`` the loss stays finite
    but its gradient is NaN (``sqrt`` at 0 times 0), so NaN reaches the weights.
    """
    original, calls = ImageRegression.training_loss, []

    def training_loss(task, model, batch, epoch):
        calls.append(epoch)
        loss, psnr = original(task, model, batch, epoch)
        if len(calls) == n:
            if in_gradient_only:
                loss = loss + torch.sqrt(next(model.parameters()).sum() * 0.0)
            else:
                loss = loss * float("nan")
        return loss, psnr
    return training_loss


def assert_checkpoint_is_good(run_dir, step: int) -> None:
    checkpoint = safe_load(run_dir / CHECKPOINT_NAME)
    assert checkpoint["step"] == step
    assert first_non_finite(checkpoint["model"]) is None
    assert all(torch.isfinite(v).all() for v in checkpoint["optimizer"]["state"][0].values() if torch.is_tensor(v))


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, image_folder, one_thread,
                                                                   monkeypatch):
    monkeypatch.setattr(ImageRegression, "training_loss", nan_at_call(5))
    config = folder_config(image_folder, epochs=2.0, checkpoint_every=2)
    with pytest.raises(NonFiniteLossError) as info:
        train(config, tmp_path / "run", device="cpu", progress=False)
    message = str(info.value)
    assert "loss became nan at step 5 (epoch 1)" in message
    assert f"last good checkpoint ({tmp_path / 'run' / CHECKPOINT_NAME}, step 4) is kept" in message
    assert_checkpoint_is_good(tmp_path / "run", 4)
    assert loss_curve(tmp_path / "run")[-1][0] == 4 and not (tmp_path / "run" / "results.json").exists()


def test_nan_gradient_never_overwrites_the_last_good_checkpoint(tmp_path, image_folder, one_thread, monkeypatch):
    # The loss at step 4 is finite, but its NaN gradient poisons the weights right
    # before the checkpoint of step 4 would be written.
    monkeypatch.setattr(ImageRegression, "training_loss", nan_at_call(4, in_gradient_only=True))
    config = folder_config(image_folder, epochs=2.0, checkpoint_every=2)
    with pytest.raises(NonFiniteLossError, match=r"weights became non-finite .* by step 4.* step 2\) is kept"):
        train(config, tmp_path / "run", device="cpu", progress=False)
    assert_checkpoint_is_good(tmp_path / "run", 2)


def test_diverging_cli_run_says_which_step_and_exits_1(tmp_path, image_folder, one_thread, capsys):
    config_path = write_config_yaml(folder_config(image_folder, epochs=2.0, checkpoint_every=1), tmp_path / "tiny.yaml")
    with pytest.raises(SystemExit) as info:
        cli.main(["train", str(config_path), "train.lr=1e30", "--run-dir", str(tmp_path / "run"), "--device", "cpu",
                  "--quiet"])
    assert info.value.code == 1
    error = capsys.readouterr().err
    assert error.startswith("error: loss became nan at step 2") and "step 1) is kept" in error
    assert "train.lr" in error  # and what to try
    assert_checkpoint_is_good(tmp_path / "run", 1)


# ----------------------------------------------------------------------------- learnit views


def test_corrupt_learnit_view_names_the_file(tmp_path):
    from transinr.data.learnit import LearnitShapeNet

    from .test_learnit import write_object

    view = write_object(tmp_path / "chairs", "a") / "r_001.png"
    view.write_bytes(view.read_bytes()[:60])
    (tmp_path / "chair_splits.json").write_text(json.dumps({"train": ["a"], "val": ["a"], "test": ["a"]}))
    dataset = LearnitShapeNet(tmp_path, "chair", split="test", n_support=2, n_query="all")
    with pytest.raises(Exception) as info:
        dataset[0]
    assert "r_001.png" in str(info.value)

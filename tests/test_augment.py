"""The augmented training stream, the out-of-distribution textures, and resumption with both."""

from __future__ import annotations

import math

import pytest
import torch

from transinr.compare import check_comparable
from transinr.config import ConfigError, load_config
from transinr.data import build_dataset, build_ood_dataset, plain_images
from transinr.data.augment import NO_AUGMENTATION, AugmentedImages, hue_rotation, recolour
from transinr.data.emoji import EmojiDataset, box_downsample, load_extra_artwork
from transinr.data.textures import FAMILIES, TextureDataset, texture
from transinr.tasks.image import ImageRegression
from transinr.train import CHECKPOINT_NAME, train
from transinr.checkpoint import safe_load

from .helpers import loss_curve, tiny_image_config

ALL_ON = ["data.augment.crop=true", "data.augment.flip=true", "data.augment.hue=0.5",
          "data.augment.composite=0.5"]
ALL_OFF = NO_AUGMENTATION  # the emoji configs train on the augmented stream


def augmented(overrides=ALL_ON):
    return build_dataset(load_config("emoji32_demo", ALL_OFF + overrides), "train")


def test_items_depend_on_seed_epoch_and_index_only():
    stream = augmented()
    assert isinstance(stream, AugmentedImages) and len(stream) == len(EmojiDataset("train"))
    first = [stream[i] for i in range(12)]
    stream.set_epoch(1)
    later = [stream[i] for i in range(12)]
    again = augmented()  # a fresh object, as a resumed run or a loader worker builds it
    assert all(torch.equal(a, again[i]) for i, a in enumerate(first))
    assert not any(torch.equal(a, b) for a, b in zip(first, later))  # a new variant every epoch
    for image in first + later:
        assert image.shape == (3, 32, 32) and image.dtype == torch.float32
        assert 0.0 <= image.min() and image.max() <= 1.0


def test_without_augmentation_the_training_set_is_the_plain_split():
    plain = build_dataset(load_config("emoji32_demo", ALL_OFF), "train")
    assert isinstance(plain, EmojiDataset)
    stream = augmented(["data.augment.flip=true"])
    assert plain_images(stream) is not stream and torch.equal(plain_images(stream)[5], plain[5])
    # Flip alone: every item is the plain image or its mirror.
    for i in range(8):
        assert torch.equal(stream[i], plain[i]) or torch.equal(stream[i], plain[i].flip(-1))


def test_the_held_out_split_is_never_augmented():
    test_set = build_dataset(load_config("emoji32_demo", ALL_ON), "test")
    assert isinstance(test_set, EmojiDataset) and torch.equal(test_set[0], EmojiDataset("test")[0])


def test_hue_rotation_fixes_greys_and_a_third_of_a_turn_cycles_the_channels():
    grey = torch.full((3, 2, 2), 0.4)
    white = torch.ones(3, 2, 2)
    assert torch.allclose(recolour(grey, 1.0, 1.0), grey, atol=1e-6)
    assert torch.allclose(recolour(white, 2.5, 1.3), white, atol=1e-6)
    red = torch.tensor([1.0, 0.0, 0.0])
    assert torch.allclose(hue_rotation(2 * math.pi / 3) @ red, torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)


def test_bad_augmentation_settings_name_the_key():
    with pytest.raises(ValueError, match="data.augment.composite"):
        augmented(["data.augment.composite=1.5"])
    with pytest.raises(ValueError, match="data.augment.hue"):
        augmented(["data.augment.hue=0.9"])
    with pytest.raises(ConfigError, match="data.augment: unknown key"):
        load_config("emoji32_demo", ["data.augment.rotate=true"])


def test_extra_artwork_lengthens_the_stream_but_not_the_plain_training_set():
    plain, extra = EmojiDataset("train"), load_extra_artwork("twemoji")["images"]
    stream = augmented(ALL_ON + ["data.augment.extra_artwork=[twemoji]"])
    assert len(stream) == len(plain) + len(extra) and plain_images(stream).split == "train"
    assert len(plain_images(stream)) == len(plain)  # training PSNR stays on the Noto images
    indices = [0, len(plain) - 1, len(plain), len(stream) - 1]
    first = [stream[i] for i in indices]
    again = augmented(ALL_ON + ["data.augment.extra_artwork=[twemoji]"])
    assert all(torch.equal(a, again[i]) for i, a in zip(indices, first))
    assert all(image.shape == (3, 32, 32) and 0 <= image.min() and image.max() <= 1 for image in first)
    # The Noto items are the ones of the stream without extra artwork unless a composite
    # draws a partner, which may now be extra artwork.
    without = augmented()
    assert sum(torch.equal(stream[i], without[i]) for i in range(20)) >= 5


def test_extra_artwork_alone_appends_its_images_after_the_plain_ones():
    plain, extra = EmojiDataset("train"), load_extra_artwork("twemoji")["images"]
    stream = augmented(["data.augment.extra_artwork=[twemoji]"])
    assert isinstance(stream, AugmentedImages) and len(stream) == len(plain) + len(extra)
    assert torch.equal(stream[7], plain[7])
    # Item N + k is extra image k at 32 px (resampled, so close to its box average).
    for k in (0, len(extra) - 1):
        expected = torch.from_numpy(box_downsample(extra[k:k + 1], 2)[0]).permute(2, 0, 1).float() / 255
        assert (stream[len(plain) + k] - expected).abs().mean() < 0.03


def test_bad_extra_artwork_names_the_key_and_compare_refuses_a_mix():
    for value in ("[noto]", "[twemoji, twemoji]", "[1]", "twemoji"):
        with pytest.raises(ConfigError, match="data.augment.extra_artwork"):
            load_config("emoji32_demo", [f"data.augment.extra_artwork={value}"])
    plain = load_config("emoji32_demo", ALL_ON + ["name=a"])
    assert plain.data.augment.extra_artwork == []  # off unless asked for
    more = load_config("emoji32_demo", ALL_ON + ["name=b", "data.augment.extra_artwork=[twemoji]"])
    with pytest.raises(ConfigError, match="data.augment differs"):
        check_comparable([plain, more], train_size=3409)


def test_textures_are_deterministic_varied_and_resolution_free():
    assert torch.equal(torch.from_numpy(texture(7, 32)), TextureDataset(32, count=8)[7])
    small, large = texture(3, 16), texture(3, 64)
    # The same continuous pattern: the 64 px image box-averaged to 16 px is close to the 16 px one.
    pooled = torch.nn.functional.avg_pool2d(torch.from_numpy(large)[None], 4)[0]
    assert (pooled - torch.from_numpy(small)).abs().mean() < 0.02
    images = TextureDataset(32, count=2 * len(FAMILIES))
    stacked = torch.stack([images[i] for i in range(len(images))])
    assert stacked.min() >= 0 and stacked.max() <= 1
    assert stacked.flatten(1).std(dim=1).min() > 0.02  # none is a flat colour
    ood = build_ood_dataset(load_config("emoji32_demo"), 32)
    assert len(ood) == 256 and ood[0].shape == (3, 32, 32)
    assert build_ood_dataset(load_config("emoji32_demo", ["data.ood=null"])) is None


def emoji_config(**train_options):
    """The tiny Trans-INR on the augmented emoji stream: batch 512, 6 steps an epoch."""
    config = tiny_image_config(batch_size=512, max_images=512 * 8, log_every=1, figure_images=2,
                               device="cpu", **train_options)
    augment = config.data.augment
    augment.crop, augment.flip, augment.hue, augment.composite = True, True, 0.5, 0.3
    return config


def test_resume_on_the_augmented_stream_is_exact(tmp_path, one_thread, monkeypatch):
    # Checkpoint at step 5 (epoch 0), interrupted in step 7 (epoch 1): the resumed run must
    # see the same augmented images, in both epochs, as the uninterrupted one.
    config = emoji_config(checkpoint_every=5)
    reference = train(config, tmp_path / "uninterrupted", device="cpu", progress=False)
    original, calls = ImageRegression.training_loss, []

    def interrupted(task, model, batch, epoch):
        calls.append(epoch)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return original(task, model, batch, epoch)

    monkeypatch.setattr(ImageRegression, "training_loss", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "interrupted", device="cpu", progress=False)
    monkeypatch.undo()
    assert calls[-1] == 1 and safe_load(tmp_path / "interrupted" / CHECKPOINT_NAME)["step"] == 5
    resumed = train(config, tmp_path / "interrupted", device="cpu", progress=False)
    assert loss_curve(tmp_path / "interrupted") == loss_curve(tmp_path / "uninterrupted")
    assert resumed["test_psnr_mean"] == reference["test_psnr_mean"]
    # The end-of-run scores: held-out, un-augmented training images, out of distribution.
    assert reference["train_items"] == reference["test_items"]
    assert reference["ood_items"] == 256 and math.isfinite(reference["ood_psnr_mean"])


def test_training_psnr_is_scored_on_images_spread_over_the_split():
    """The split is ordered by category, so its first items would be a biased sample."""
    from transinr.evaluate import spread_subset

    items = list(range(3409))
    chosen = spread_subset(items, 351)
    picked = [chosen[i] for i in range(len(chosen))]
    assert len(picked) == 351 and picked[0] == 0 and picked[-1] == 3408
    assert picked == sorted(set(picked))  # distinct, in order
    assert max(b - a for a, b in zip(picked, picked[1:])) <= 10
    assert spread_subset(items[:5], 351) == items[:5]

"""The embedded emoji dataset: shipped Noto file, split, resolutions, missing full cache, and the
Twemoji artwork of training-split emoji."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from transinr.data import emoji
from transinr.data.build_emoji import build_twemoji, noto_repeats_of_held_out
from transinr.data.emoji import (
    EmojiDataset,
    box_downsample,
    emoji_info,
    extra_artwork_path,
    load_emoji_array,
    load_emoji_index,
    load_extra_artwork,
    split_of_group,
)
from transinr.data.errors import DatasetNotFoundError

# Recorded when emoji_64.npz was built; a change means the split or the index changed.
EXPECTED_COUNTS = {"train": 3409, "test": 351}
SKIN_TONES = {"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"}


def test_shipped_file_loads_with_documented_counts():
    info = emoji_info()
    assert info["train"]["images"] == EXPECTED_COUNTS["train"]
    assert info["test"]["images"] == EXPECTED_COUNTS["test"]
    assert info["all"]["images"] == sum(EXPECTED_COUNTS.values())
    assert info["train"]["groups"] + info["test"]["groups"] == info["all"]["groups"]
    assert sum(info["categories"].values()) == info["all"]["images"]
    assert emoji.shipped_path().stat().st_size < 12e6


@pytest.mark.parametrize("resolution", [32, 64, "64"])
def test_arrays_and_items_have_documented_shapes(resolution):
    side = int(resolution)
    array = load_emoji_array("test", resolution)
    assert array.dtype == np.uint8 and array.shape == (EXPECTED_COUNTS["test"], side, side, 3)

    dataset = EmojiDataset("test", resolution)
    assert len(dataset) == EXPECTED_COUNTS["test"] and dataset.resolution == side
    assert len(dataset.names) == len(dataset.groups) == len(dataset.categories) == len(dataset)
    item = dataset[5]
    assert item.dtype == torch.float32 and item.shape == (3, side, side)
    assert 0.0 <= item.min() and item.max() <= 1.0
    assert torch.equal(item, torch.from_numpy(array[5]).permute(2, 0, 1).float() / 255)


def test_32_px_is_the_box_average_of_64_px():
    small, large = load_emoji_array("test", 32), load_emoji_array("test", 64)
    for i in (0, 100, 300):
        reduced = np.asarray(Image.fromarray(large[i]).reduce(2))
        np.testing.assert_array_equal(small[i], reduced)


def test_box_downsample_rounds_halves_up():
    block = np.array([[[[0], [1]], [[0], [1]]]], dtype=np.uint8)  # mean 0.5
    assert box_downsample(block, 2).item() == 1


def test_split_is_disjoint_by_group_and_by_base_emoji():
    train, test = load_emoji_index("train"), load_emoji_index("test")
    assert not set(train["groups"]) & set(test["groups"])
    # Names of skin-tone variants are "<base>:skin-tone-K": the base must not cross over.
    train_bases = {str(n).split(":")[0] for n in train["names"]}
    test_bases = {str(n).split(":")[0] for n in test["names"]}
    assert not train_bases & test_bases
    assert not set(train["unified"]) & set(test["unified"])


def test_split_follows_the_hash_rule_of_each_base_emoji():
    index = load_emoji_index("all")
    checked = 0
    for group in np.unique(index["groups"]):
        members = np.flatnonzero(index["groups"] == group)
        assert len(set(index["split"][members])) == 1, f"group {group} spans both splits"
        first = str(index["unified"][members[0]])
        if not SKIN_TONES & set(first.split("-")):  # the base itself, not a variant
            assert index["split"][members[0]] == split_of_group(first)
            checked += 1
    assert checked > 1800


def test_skin_tone_variants_share_the_group_of_their_base():
    index = load_emoji_index("all")
    names = [str(n) for n in index["names"]]
    group_of = dict(zip(names, index["groups"]))
    variants = [n for n in names if ":skin-tone-" in n]
    assert len(variants) > 1500
    for name in variants:
        assert group_of[name] == group_of[name.split(":")[0]], name


def test_backgrounds_are_white():
    images = load_emoji_array("all", 64)
    corners = images[:, [0, 0, -1, -1], [0, -1, 0, -1], :].astype(np.float32) / 255
    white = (corners > 0.98).all(axis=(1, 2))
    assert white.mean() > 0.95


def test_no_duplicate_images():
    images = load_emoji_array("all", 32).reshape(EXPECTED_COUNTS["train"] + EXPECTED_COUNTS["test"], -1)
    assert len(np.unique(images, axis=0)) == len(images)


def test_bad_split_and_resolution_are_named():
    with pytest.raises(ValueError, match="split"):
        EmojiDataset("val")
    with pytest.raises(ValueError, match="resolution"):
        EmojiDataset("train", 48)


def test_full_resolution_without_cache_explains_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSINR_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as error:
        EmojiDataset("train", "full")
    message = str(error.value)
    assert str(tmp_path / "emoji_full.npz") in message
    assert "apt-get install fonts-noto-color-emoji" in message
    assert "build-emoji full" in message
    with pytest.raises(DatasetNotFoundError):
        load_emoji_array("test", "full", root=tmp_path / "elsewhere")


def _write_tiny_set(folder, full_unified=None):
    """A 4-image shipped file and its 8 px 'full' companion, in ``folder``."""
    rng = np.random.default_rng(0)
    unified = np.array(["1F600", "1F44D", "1F44D-1F3FB", "1F1EB-1F1F7"])
    large = rng.integers(0, 256, size=(4, 128, 128, 3), dtype=np.uint8)
    np.savez(folder / "emoji_64.npz", images=box_downsample(large, 2), unified=unified,
             names=np.array(["grinning", "+1", "+1:skin-tone-2", "fr"]),
             groups=np.array([0, 1, 1, 2]), categories=np.array(["a", "b", "b", "c"]),
             split=np.array(["train", "test", "test", "train"]))
    np.savez(folder / "emoji_full.npz", images=large,
             unified=unified if full_unified is None else np.array(full_unified))
    return large


def test_full_resolution_reads_the_cache_in_shipped_order(tmp_path, monkeypatch):
    large = _write_tiny_set(tmp_path)
    monkeypatch.setattr(emoji, "shipped_path", lambda: tmp_path / "emoji_64.npz")
    monkeypatch.setenv("TRANSINR_DATA", str(tmp_path))
    dataset = EmojiDataset("test", "full")
    assert len(dataset) == 2 and dataset.resolution == 128
    assert dataset.names == ["+1", "+1:skin-tone-2"]
    assert torch.equal(dataset[1], torch.from_numpy(large[2]).permute(2, 0, 1).float() / 255)


def test_full_cache_from_another_index_is_refused(tmp_path, monkeypatch):
    _write_tiny_set(tmp_path, full_unified=["1F600", "1F44D", "1F1EB-1F1F7", "1F44D-1F3FB"])
    monkeypatch.setattr(emoji, "shipped_path", lambda: tmp_path / "emoji_64.npz")
    with pytest.raises(ValueError, match="different emoji index"):
        load_emoji_array("all", "full", root=tmp_path)


def test_shipped_twemoji_holds_training_split_emoji_only():
    twemoji = load_extra_artwork("twemoji")
    images, count = twemoji["images"], len(twemoji["images"])
    assert images.dtype == np.uint8 and images.shape == (count, 64, 64, 3) and count > 3000
    assert all(len(twemoji[key]) == count for key in ("names", "unified", "bases", "categories"))
    assert json.loads(str(np.load(extra_artwork_path("twemoji"))["meta"]))["count"] == count
    # No entry's group is held out, and no held-out picture is there under another name.
    assert {split_of_group(str(base)) for base in twemoji["bases"]} == {"train"}
    test = load_emoji_index("test")
    assert not set(twemoji["unified"]) & set(test["unified"])
    assert not {str(n) for n in twemoji["names"]} & noto_repeats_of_held_out()
    # A skin-tone variant "<base>:skin-tone-K" belongs to the group of its base emoji.
    names = [str(n) for n in twemoji["names"]]
    unified_of = dict(zip(names, map(str, twemoji["unified"])))
    variants = [(n, str(b)) for n, b in zip(names, twemoji["bases"]) if ":skin-tone-" in n]
    assert len(variants) > 1000
    assert all(unified_of[n.split(":")[0]] == base for n, base in variants if n.split(":")[0] in unified_of)
    corners = images[:, [0, 0, -1, -1], [0, -1, 0, -1], :]
    assert (corners > 250).all(axis=(1, 2)).mean() > 0.75  # on white (square symbols fill their corners)
    assert extra_artwork_path("twemoji").stat().st_size < 10e6


def _bases_by_split(count: int) -> dict[str, list[str]]:
    """The first ``count`` code points of U+1F600… whose group is in each split."""
    found = {"train": [], "test": []}
    for code in range(0x1F600, 0x1F700):
        unified = f"{code:X}"
        if len(found[split_of_group(unified)]) < count:
            found[split_of_group(unified)].append(unified)
    return found


def _write_fake_datasource(folder):
    """A tiny emoji-datasource-twitter: emoji.json and 64 px RGBA PNGs with transparent corners."""
    bases = _bases_by_split(3)
    rng = np.random.default_rng(1)
    records, pictures = [], folder / "img" / "twitter" / "64"
    pictures.mkdir(parents=True)

    def picture(unified: str) -> str:
        pixels = rng.integers(0, 256, size=(64, 64, 4), dtype=np.uint8)
        pixels[:8, :8, 3] = 0  # a transparent corner: must come out white
        name = unified.lower() + ".png"
        Image.fromarray(pixels, "RGBA").save(pictures / name)
        return name

    for order, unified in enumerate(bases["train"] + bases["test"]):
        record = {"unified": unified, "short_name": f"fake-{unified}", "category": "Fake",
                  "sort_order": order, "added_in": "1.0", "image": picture(unified),
                  "has_img_twitter": True, "skin_variations": {}}
        if order in (0, 3):  # a training and a held-out base with a skin-tone variant
            variant = f"{unified}-1F3FB"
            record["skin_variations"]["1F3FB"] = {"unified": variant, "image": picture(variant),
                                                  "added_in": "1.0", "has_img_twitter": True}
        records.append(record)
    (folder / "emoji.json").write_text(json.dumps(records))
    return bases


def test_twemoji_build_is_deterministic_and_leaves_held_out_groups_out(tmp_path):
    bases = _write_fake_datasource(tmp_path)
    first, second = tmp_path / "a.npz", tmp_path / "b.npz"
    build_twemoji(tmp_path / "emoji.json", first)
    build_twemoji(tmp_path / "emoji.json", second)
    assert first.read_bytes() == second.read_bytes()
    with np.load(first) as built:
        images, unified, built_bases = built["images"], list(built["unified"]), list(built["bases"])
    # The three training bases and the variant of the first; the held-out variant stays out too.
    assert unified == [bases["train"][0], bases["train"][0] + "-1F3FB"] + bases["train"][1:]
    assert set(built_bases) == set(bases["train"])
    assert images.dtype == np.uint8 and images.shape == (4, 64, 64, 3)
    assert (images[:, :8, :8] == 255).all()
    # Alpha-composited on white: opaque pixels keep their colour, translucent ones lighten.
    source = np.asarray(Image.open(tmp_path / "img" / "twitter" / "64" / f"{bases['train'][1].lower()}.png"))
    opaque, clear = source[..., 3] == 255, source[..., 3] == 0
    np.testing.assert_array_equal(images[2][opaque], source[..., :3][opaque])
    assert (images[2][clear] == 255).all() and (images[2] >= source[..., :3]).all()

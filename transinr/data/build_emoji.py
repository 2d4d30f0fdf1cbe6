"""Build the embedded emoji dataset (see ``transinr/data/emoji.py`` for what it holds).

Two products, both deterministic (same inputs -> byte-identical files):

``shipped``  ``transinr/data/assets/emoji_64.npz``, the file that ships with the package.
             Needs the index ``emoji.json`` and the Noto Color Emoji font:

                 sudo apt-get install fonts-noto-color-emoji          # Debian 12: 2.042
                 (cd /tmp && npm install emoji-datasource-google@16.0.0)
                 python -m transinr build-emoji shipped \\
                     --emoji-json /tmp/node_modules/emoji-datasource-google/emoji.json

``twemoji``  ``transinr/data/assets/twemoji_64.npz``, a second artwork set for the augmented
             training stream (``data.augment.extra_artwork: [twemoji]``): Twitter's Twemoji
             graphics (CC-BY 4.0, see ``assets/TWEMOJI_LICENSE.txt``), the 64 px PNGs of the
             npm package emoji-datasource-twitter, of TRAINING-split emoji only:

                 (cd /tmp && npm install emoji-datasource-twitter@16.0.0)
                 python -m transinr build-emoji twemoji \\
                     --emoji-json /tmp/node_modules/emoji-datasource-twitter/emoji.json

``full``     the 128 px artwork of exactly the shipped emoji, into the cache that
             ``EmojiDataset(resolution="full")`` reads (``$TRANSINR_DATA/emoji_full.npz``
             or ``~/.cache/transinr/emoji_full.npz``). Needs only the font:

                 sudo apt-get install fonts-noto-color-emoji
                 python -m transinr build-emoji full

How an image is made: the font's embedded 136 x 128 colour bitmap of the emoji
(Pillow, size 109, ``embedded_color=True``, Raqm layout so that ZWJ sequences, flags and
keycaps become one glyph) is drawn on opaque white, then its 4 px left and right margins
are cropped (the script checks they are transparent) -> 128 x 128 RGB. The shipped set is
the 2 x 2 box average of that: 64 x 64.

Which emoji: every entry of emoji.json with ``has_img_google``, and each of its
``skin_variations`` with ``has_img_google``, that the font really contains (emoji newer
than the font render as an empty .notdef glyph or as the font's "unknown flag"; they are
dropped and listed). Images that repeat another (16 px thumbnails within RMS 0.005) are
dropped too, keeping the emoji of the oldest Emoji version, so no picture can sit in both
splits. Order: emoji.json
``sort_order`` of the base emoji, then the base before its variants, variants by code point.

Which Twemoji: every image emoji.json lists for Twitter whose group (base emoji) is in the
training split by the Noto set's rule (:func:`~transinr.data.emoji.split_of_group`), less
the pictures of held-out emoji under another name: emoji the Noto build dropped as repeats
of a test image, and Twemoji images within the duplicate threshold of a test-split Twemoji
image (the test-split images are compared against, never stored). Repeats among the kept
images are dropped as for Noto. Pixels: the PNG alpha-composited on opaque white.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features
from tqdm.auto import tqdm

from transinr.data.emoji import (
    FULL_RESOLUTION,
    SHIPPED_RESOLUTION,
    box_downsample,
    extra_artwork_path,
    full_cache_path,
    load_emoji_index,
    shipped_path,
    split_of_group,
)

DEFAULT_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
FONT_BITMAP_SIZE = 109  # the only size at which the CBDT bitmap strike exists
GLYPH_WIDTH, GLYPH_HEIGHT = 136, 128
SIDE_MARGIN = (GLYPH_WIDTH - FULL_RESOLUTION) // 2
DUPLICATE_THUMB = 16
DUPLICATE_RMS = 0.005
# Fitzpatrick modifiers as emoji short names spell them (U+1F3FB is "skin-tone-2").
SKIN_TONE_NUMBER = {"1F3FB": "2", "1F3FC": "3", "1F3FD": "4", "1F3FE": "5", "1F3FF": "6"}
FORMAT_VERSION = 1


@dataclass(frozen=True)
class EmojiEntry:
    """One image to render: an emoji or one of its skin-tone variants."""

    unified: str  # code points, e.g. "1F44D-1F3FD"
    name: str  # short name, e.g. "+1:skin-tone-4"
    base_unified: str  # the group's base emoji, e.g. "1F44D"
    category: str
    base_sort_order: int
    added_in: tuple[int, ...]  # Emoji version, e.g. (0, 6)
    image: str = ""  # file name of its PNG in the package's img/<set>/64 folder


def text_of(unified: str) -> str:
    """``"1F44D-1F3FD"`` -> the string of those code points."""
    return "".join(chr(int(code, 16)) for code in unified.split("-"))


def variant_name(short_name: str, skin_key: str) -> str:
    tones = "-".join(SKIN_TONE_NUMBER[code] for code in skin_key.upper().split("-"))
    return f"{short_name}:skin-tone-{tones}"


def version_tuple(version: str | None) -> tuple[int, ...]:
    """``"12.1"`` -> ``(12, 1)``; unknown versions sort last."""
    try:
        return tuple(int(part) for part in str(version).split("."))
    except ValueError:
        return (10**6,)


def read_index(emoji_json: Path, image_set: str = "google") -> list[EmojiEntry]:
    """Every emoji image emoji.json promises for ``image_set`` ("google", "twitter"), in the
    canonical order."""
    has_image = f"has_img_{image_set}"
    try:
        records = json.loads(emoji_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise SystemExit(f"cannot read {emoji_json}: {error}. Expected emoji.json of the npm package "
                         f"emoji-datasource-{image_set} (a JSON list of emoji records).")
    if not isinstance(records, list) or not records or "unified" not in records[0]:
        raise SystemExit(f"{emoji_json}: expected a JSON list of records with 'unified', 'short_name', "
                         f"'category', 'sort_order', 'image', '{has_image}' and 'skin_variations'.")
    entries = []
    for record in records:
        base = record["unified"].upper()
        common = dict(base_unified=base, category=record["category"],
                      base_sort_order=int(record["sort_order"]))
        if record.get(has_image):
            entries.append(EmojiEntry(unified=base, name=record["short_name"], image=record.get("image", ""),
                                      added_in=version_tuple(record.get("added_in")), **common))
        variants = record.get("skin_variations") or {}
        for key in sorted(variants):
            variant = variants[key]
            if variant.get(has_image):
                entries.append(EmojiEntry(unified=variant["unified"].upper(),
                                          name=variant_name(record["short_name"], key),
                                          image=variant.get("image", ""),
                                          added_in=version_tuple(variant.get("added_in")), **common))
    entries.sort(key=lambda e: (e.base_sort_order, e.base_unified, e.unified != e.base_unified, e.unified))
    return entries


class GlyphRenderer:
    """Renders emoji from the Noto Color Emoji font as 128 x 128 RGB on white."""

    def __init__(self, font_path: Path):
        if not font_path.is_file():
            raise SystemExit(f"font not found: {font_path}. Install it with "
                             "`sudo apt-get install fonts-noto-color-emoji` or pass --font PATH.")
        if not features.check("raqm"):
            raise SystemExit("Pillow was built without libraqm: ZWJ sequences, flags and keycaps "
                             "would not be shaped into single glyphs. Install libraqm "
                             "(e.g. `apt-get install libraqm0`) or a Pillow wheel that bundles it.")
        self.font = ImageFont.truetype(str(font_path), FONT_BITMAP_SIZE,
                                       layout_engine=ImageFont.Layout.RAQM)
        self.glyph_advance = self.font.getlength(text_of("1F600"))
        # What the font draws for an emoji it lacks: nothing (.notdef) or a generic flag.
        self.unknown_flag = self._draw(text_of("1F1E6-1F1E6"), (255, 255, 255))

    def _draw(self, text: str, background: tuple[int, int, int]) -> np.ndarray:
        canvas = Image.new("RGB", (GLYPH_WIDTH, GLYPH_HEIGHT), background)
        # Drawing a colour glyph on an opaque canvas alpha-composites it (exactly, rounded).
        ImageDraw.Draw(canvas).text((0, 0), text, font=self.font, embedded_color=True)
        return np.asarray(canvas)

    def render(self, unified: str) -> np.ndarray | None:
        """``(128, 128, 3)`` uint8 on white, or None when the font lacks this emoji."""
        text = text_of(unified)
        if abs(self.font.getlength(text) - self.glyph_advance) > 0.5:
            return None  # not shaped into one glyph
        on_white = self._draw(text, (255, 255, 255))
        on_black = self._draw(text, (0, 0, 0))
        transparent = (on_white == 255).all(axis=2) & (on_black == 0).all(axis=2)
        if transparent.all() or np.array_equal(on_white, self.unknown_flag):
            return None
        margins = np.concatenate([transparent[:, :SIDE_MARGIN], transparent[:, -SIDE_MARGIN:]], axis=1)
        if not margins.all():
            raise SystemExit(f"emoji {unified}: the font draws into its {SIDE_MARGIN} px side margins, "
                             "so cropping to 128 x 128 would lose pixels; this font version is not supported.")
        return np.ascontiguousarray(on_white[:, SIDE_MARGIN:GLYPH_WIDTH - SIDE_MARGIN])


def find_duplicates(images: np.ndarray, priority: list[int]) -> dict[int, int]:
    """``{i: j}`` for each image ``i`` that repeats an image ``j`` kept before it.

    Images are visited in the order ``priority`` (a permutation of their indices); the
    first of a set of repeats is kept.

    Compares 16 px box thumbnails: shared flag designs differ by < 0.001 RMS there, the
    closest distinct emoji (gendered variants) by > 0.01.
    """
    factor = images.shape[1] // DUPLICATE_THUMB
    thumbs = box_downsample(images, factor).reshape(len(images), -1).astype(np.float64) / 255.0
    squared = (thumbs ** 2).sum(axis=1)
    distances = squared[:, None] + squared[None, :] - 2.0 * thumbs @ thumbs.T
    rms = np.sqrt(np.clip(distances, 0.0, None) / thumbs.shape[1])
    duplicate_of: dict[int, int] = {}
    kept: list[int] = []
    for i in priority:
        close = [j for j in kept if rms[i, j] < DUPLICATE_RMS]
        if close:
            duplicate_of[i] = close[0]
        else:
            kept.append(i)
    return duplicate_of


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An ``np.load``-able zip with fixed timestamps (so rebuilds are byte-identical), written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for key, value in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asanyarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue(), compresslevel=9)
    os.replace(partial, path)


def describe_font(font_path: Path) -> dict:
    """Font identity for the metadata: Debian package version (when dpkg knows it) and hash."""
    digest = hashlib.sha256(font_path.read_bytes()).hexdigest()
    try:
        version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "fonts-noto-color-emoji"],
                                 capture_output=True, text=True, check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        version = None
    return {"file": font_path.name, "debian_version": version, "sha256": digest}


def datasource_version(emoji_json: Path) -> str | None:
    package = emoji_json.parent / "package.json"
    try:
        return json.loads(package.read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError):
        return None


def report(path: Path) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    print(f"wrote {path}  ({path.stat().st_size / 1e6:.2f} MB, sha256 {digest[:16]})")


def build_shipped(emoji_json: Path, font_path: Path, output: Path) -> None:
    entries = read_index(emoji_json)
    renderer = GlyphRenderer(font_path)
    rendered, kept, missing = [], [], []
    for entry in tqdm(entries, desc="render", unit="emoji"):
        image = renderer.render(entry.unified)
        if image is None:
            missing.append(entry.name)
        else:
            rendered.append(image)
            kept.append(entry)
    images_full = np.stack(rendered)
    # Of repeated pictures keep the emoji introduced first ("us" rather than "flag-um").
    priority = sorted(range(len(kept)), key=lambda i: (kept[i].added_in, i))
    duplicate_of = find_duplicates(images_full, priority)
    keep = [i for i in range(len(kept)) if i not in duplicate_of]
    duplicates = [[kept[i].name, kept[j].name] for i, j in sorted(duplicate_of.items())]
    kept = [kept[i] for i in keep]
    images = box_downsample(images_full[keep], FULL_RESOLUTION // SHIPPED_RESOLUTION)

    bases = list(dict.fromkeys(e.base_unified for e in kept))  # kept is already in canonical order
    group_of = {base: g for g, base in enumerate(bases)}
    split = np.array([split_of_group(e.base_unified) for e in kept])
    meta = {
        "format_version": FORMAT_VERSION,
        "artwork": "Google Noto Color Emoji, Apache-2.0 (see NOTO_EMOJI_LICENSE.txt)",
        "font": describe_font(font_path),
        "index": {"package": "emoji-datasource-google", "version": datasource_version(emoji_json)},
        "pixels": "font bitmap 136x128 drawn on white, 4 px side margins cropped -> 128x128, "
                  "2x2 box average -> 64x64",
        "split_rule": "test iff int(sha256(base_unified)[:8], 16) % 10 == 0",
        "dropped_missing_from_font": missing,
        "dropped_duplicates": duplicates,
        "counts": {s: int((split == s).sum()) for s in ("train", "test")},
    }
    write_npz(output, {
        "images": images,
        "names": np.array([e.name for e in kept]),
        "unified": np.array([e.unified for e in kept]),
        "groups": np.array([group_of[e.base_unified] for e in kept], dtype=np.int32),
        "categories": np.array([e.category for e in kept]),
        "split": split,
        "meta": np.array(json.dumps(meta, sort_keys=True)),
    })
    print(f"{len(entries)} listed, {len(missing)} missing from the font, {len(duplicates)} duplicates "
          f"dropped -> {len(kept)} images in {len(bases)} groups; "
          f"train {meta['counts']['train']}, test {meta['counts']['test']}")
    report(output)


def read_png_on_white(path: Path) -> np.ndarray:
    """A PNG (any mode, with or without alpha) alpha-composited on opaque white: ``(H, W, 3)`` uint8."""
    with Image.open(path) as image:
        rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))


def noto_repeats_of_held_out() -> set[str]:
    """Names of emoji the Noto build dropped as repeats of a test-split image (shared flag
    designs, ...): their pictures are held out even where their own group is not."""
    index = load_emoji_index("all")
    split_of_name = dict(zip((str(n) for n in index["names"]), (str(s) for s in index["split"])))
    with np.load(shipped_path(), allow_pickle=False) as archive:
        dropped = json.loads(str(archive["meta"]))["dropped_duplicates"]
    return {repeat for repeat, kept in dropped if split_of_name.get(kept) == "test"}


def build_twemoji(emoji_json: Path, output: Path) -> None:
    """Write the Twemoji artwork of training-split emoji (see the module docstring)."""
    entries = read_index(emoji_json, "twitter")
    folder = emoji_json.parent / "img" / "twitter" / str(SHIPPED_RESOLUTION)
    absent = [e.image for e in entries if not (folder / e.image).is_file()]
    if absent:
        raise SystemExit(f"{folder}: {len(absent)} of the {len(entries)} PNGs that {emoji_json} lists are "
                         f"missing (e.g. {absent[0]}); expected the npm package emoji-datasource-twitter.")
    images = np.stack([read_png_on_white(folder / e.image) for e in tqdm(entries, desc="read", unit="emoji")])
    if images.shape[1:] != (SHIPPED_RESOLUTION, SHIPPED_RESOLUTION, 3):
        raise SystemExit(f"{folder}: expected {SHIPPED_RESOLUTION} x {SHIPPED_RESOLUTION} PNGs, "
                         f"got {images.shape[1]} x {images.shape[2]}")
    repeats_of_held_out = noto_repeats_of_held_out()
    in_test_split = [split_of_group(e.base_unified) == "test" for e in entries]
    held_out = [test or e.name in repeats_of_held_out for test, e in zip(in_test_split, entries)]
    # Held-out pictures come first in the duplicate search, so an image that repeats one of
    # them is the one dropped; among the others the emoji introduced first is kept.
    priority = sorted(range(len(entries)), key=lambda i: (not held_out[i], entries[i].added_in, i))
    duplicate_of = find_duplicates(images, priority)
    keep = [i for i in range(len(entries)) if not held_out[i] and i not in duplicate_of]
    repeats = [[entries[i].name, entries[j].name] for i, j in sorted(duplicate_of.items()) if not held_out[i]]
    repeats_of_held_out_here = sorted(entries[i].name for i, j in duplicate_of.items()
                                      if not held_out[i] and held_out[j])
    kept = [entries[i] for i in keep]
    meta = {
        "format_version": FORMAT_VERSION,
        "artwork": "Twemoji graphics (https://github.com/jdecked/twemoji), CC-BY 4.0 "
                   "(see TWEMOJI_LICENSE.txt)",
        "index": {"package": "emoji-datasource-twitter", "version": datasource_version(emoji_json)},
        "pixels": f"img/twitter/{SHIPPED_RESOLUTION}/*.png alpha-composited on white",
        "split_rule": "training split only: int(sha256(base_unified)[:8], 16) % 10 != 0, as emoji_64.npz",
        "dropped_held_out": sum(held_out),
        "dropped_repeats_of_held_out_in_noto": sorted(repeats_of_held_out),
        "dropped_repeats_of_held_out_in_twemoji": repeats_of_held_out_here,
        "dropped_duplicates": repeats,
        "count": len(kept),
    }
    write_npz(output, {
        "images": images[keep],
        "names": np.array([e.name for e in kept]),
        "unified": np.array([e.unified for e in kept]),
        "bases": np.array([e.base_unified for e in kept]),
        "categories": np.array([e.category for e in kept]),
        "meta": np.array(json.dumps(meta, sort_keys=True)),
    })
    print(f"{len(entries)} listed, {sum(held_out)} held out ({sum(held_out) - sum(in_test_split)} of them "
          f"training-split emoji that Noto draws like a test image), {len(repeats)} repeats dropped "
          f"({len(repeats_of_held_out_here)} of a held-out image) -> {len(kept)} training-split images")
    report(output)


def build_full(font_path: Path, output: Path) -> None:
    """Render the shipped emoji at 128 px; any the font lacks become 2x upsampled 64 px images."""
    with np.load(shipped_path(), allow_pickle=False) as archive:
        unified, names, small = archive["unified"], archive["names"], archive["images"]
    renderer = GlyphRenderer(font_path)
    images = np.empty((len(unified), FULL_RESOLUTION, FULL_RESOLUTION, 3), dtype=np.uint8)
    upsampled = np.zeros(len(unified), dtype=bool)
    for i, code in enumerate(tqdm(unified, desc="render", unit="emoji")):
        image = renderer.render(str(code))
        if image is None:
            upsampled[i] = True
            image = np.asarray(Image.fromarray(small[i]).resize((FULL_RESOLUTION,) * 2, Image.LANCZOS))
        images[i] = image
    if upsampled.any():
        warnings.warn(f"{upsampled.sum()} emoji are missing from {font_path} (an older font?); "
                      f"they are 2x upsampled from the 64 px set: {', '.join(names[upsampled][:10])}"
                      + (" ..." if upsampled.sum() > 10 else ""), stacklevel=1)
    differs = np.abs(box_downsample(images, 2).astype(np.int16) - small).mean(axis=(1, 2, 3)) > 1.0
    differs &= ~upsampled
    if differs.any():
        print(f"note: {differs.sum()} images differ from the shipped 64 px set "
              "(this font version draws them differently)")
    meta = {"format_version": FORMAT_VERSION, "font": describe_font(font_path),
            "pixels": "font bitmap 136x128 drawn on white, 4 px side margins cropped -> 128x128",
            "upsampled_from_64": [str(n) for n in names[upsampled]]}
    write_npz(output, {"images": images, "unified": unified, "upsampled": upsampled,
                       "meta": np.array(json.dumps(meta, sort_keys=True))})
    report(output)


def cli_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--font", type=Path, default=DEFAULT_FONT,
                        help=f"NotoColorEmoji.ttf (default {DEFAULT_FONT})")
    commands = parser.add_subparsers(dest="command", required=True)
    shipped = commands.add_parser("shipped", help="build transinr/data/assets/emoji_64.npz")
    shipped.add_argument("--emoji-json", type=Path, required=True,
                         help="emoji.json of the npm package emoji-datasource-google")
    shipped.add_argument("--output", type=Path, default=shipped_path())
    twemoji = commands.add_parser("twemoji", help="build transinr/data/assets/twemoji_64.npz")
    twemoji.add_argument("--emoji-json", type=Path, required=True,
                         help="emoji.json of the npm package emoji-datasource-twitter")
    twemoji.add_argument("--output", type=Path, default=extra_artwork_path("twemoji"))
    full = commands.add_parser("full", help="build the 128 px cache read by resolution='full'")
    full.add_argument("--output", type=Path, default=None,
                      help="default: $TRANSINR_DATA/emoji_full.npz or ~/.cache/transinr/emoji_full.npz")
    args = parser.parse_args(argv)
    if args.command == "shipped":
        build_shipped(args.emoji_json, args.font, args.output)
    elif args.command == "twemoji":
        build_twemoji(args.emoji_json, args.output)
    else:
        build_full(args.font, args.output or full_cache_path())


if __name__ == "__main__":
    cli_main(sys.argv[1:])

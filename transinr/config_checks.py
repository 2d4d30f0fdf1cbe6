"""Value checks of a config, run whenever one is read (a YAML file, overrides, a checkpoint).

:mod:`transinr.config` already checks keys and types; here every value is checked
against its range, and the values that must fit together (the patch size and the
resolution, the weight groups and the INR's widths) are checked together. A bad value
is one :class:`~transinr.config.ConfigError` naming the key, the value and what is
allowed, raised before anything is built or written.

A new config key gets its range by adding one line to ``RANGES``.
"""

from __future__ import annotations

import math
from typing import Callable

# Each check returns None when the value is allowed, else what is allowed.
Check = Callable[[object], "str | None"]


def at_least(low: int) -> Check:
    return lambda value: None if value >= low else f"an integer ≥ {low}"


def optional(check: Check) -> Check:
    def optional_check(value):
        return None if value is None else check(value)
    return optional_check


def positive_finite(value) -> str | None:
    return None if math.isfinite(value) and value > 0 else "a finite number > 0"


def non_negative_finite(value) -> str | None:
    return None if math.isfinite(value) and value >= 0 else "a finite number ≥ 0"


def finite(value) -> str | None:
    return None if math.isfinite(value) else "a finite number"


def fraction(value) -> str | None:
    return None if 0.0 <= value <= 1.0 else "a number in [0, 1]"


def below_one(value) -> str | None:
    return None if 0.0 <= value < 1.0 else "a number in [0, 1)"


def one_of(*allowed) -> Check:
    return lambda value: None if value in allowed else "one of " + ", ".join(repr(a) for a in allowed)


def non_empty(value) -> str | None:
    return None if value.strip() else "a non-empty string"


positive = at_least(1)


def artwork_sets(value) -> str | None:
    """A list of distinct extra artwork set names (data.augment.extra_artwork)."""
    from .data.emoji import EXTRA_ARTWORK

    known = all(isinstance(name, str) and name in EXTRA_ARTWORK for name in value)
    distinct = len(set(map(str, value))) == len(value)
    return None if known and distinct else \
        "a list of distinct names from " + ", ".join(map(repr, EXTRA_ARTWORK)) + " (or [] for none)"


# key → check of its value (types are already checked when the config is read).
RANGES: dict[str, Check] = {
    "name": non_empty,
    "task": one_of("image", "nvs"),
    "data.n_support": positive,
    "data.num_workers": at_least(0),
    "data.augment.extra_artwork": artwork_sets,
    "model.patch_size": positive,
    "model.padding": at_least(0),
    "model.dim": positive,
    "model.depth": at_least(0),
    "model.n_heads": positive,
    "model.head_dim": positive,
    "model.mlp_dim": positive,
    "model.dropout": below_one,
    "model.token_init_std": positive_finite,
    "model.ray_frequencies": at_least(0),
    "model.n_groups": positive,
    "model.latent_dim": positive,
    "model.inner_steps": at_least(0),
    "model.test_inner_steps": optional(at_least(0)),
    "model.inner_lr": positive_finite,
    "model.inner_lr_per": one_of("layer", "parameter"),
    "model.inner_rays": optional(positive),
    "model.pattern_layer": at_least(0),
    "model.hyponet.depth": positive,
    "model.hyponet.width": positive,
    "model.hyponet.pe_dim": positive,
    "model.hyponet.pe_sigma": positive_finite,
    "model.hyponet.out_bias": finite,
    "nvs.near": non_negative_finite,
    "nvs.far": positive_finite,
    "nvs.n_samples": positive,
    "nvs.train_rays": positive,
    "nvs.foreground_fraction": fraction,
    "nvs.foreground_epochs": at_least(0),
    "nvs.render_chunk": positive,
    "nvs.train_views": positive,
    "nvs.train_query_views": positive,
    "nvs.eval_views": optional(positive),
    "nvs.tto_steps": at_least(0),
    "nvs.tto_lr": positive_finite,
    "nvs.tto_rays": positive,
    "nvs.tto_batch": positive,
    "nvs.turntable_frames": positive,
    "nvs.render_convention": one_of("learnit", "nerf"),
    "train.epochs": positive_finite,
    "train.max_images": optional(positive),
    "train.batch_size": positive,
    "train.lr": positive_finite,
    "train.lr_decay_at": fraction,
    "train.lr_decay_factor": positive_finite,
    "train.warmup_steps": at_least(0),
    "train.weight_decay": non_negative_finite,
    "train.grad_clip": optional(positive_finite),
    # fp16 autocast would need loss scaling to train safely; bf16 does not.
    "train.amp": one_of("off", "bf16"),
    "train.log_every": positive,
    "train.eval_every": optional(positive),
    "train.probe_every": optional(positive),
    "train.checkpoint_every": positive,
    "train.eval_images": optional(positive),
    "train.figure_images": positive,
}

# data.resolution strings each dataset accepts besides a number of pixels, and the
# size in pixels that string stands for (None: the files' own size, unknown here).
RESOLUTION_WORDS = {"emoji": {"full": 128}, "shapes3d": {"native": None}, "learnit": {"native": None}}
EMOJI_RESOLUTIONS = (32, 64)


MISSING = object()


def lookup(config, key: str):
    value = config
    for part in key.split("."):
        value = getattr(value, part, MISSING)
        if value is MISSING:
            return MISSING
    return value


def validate(config) -> None:
    """Raise :class:`~transinr.config.ConfigError` for the first value out of its range."""
    for key, check in RANGES.items():
        value = lookup(config, key)
        if value is MISSING:  # a key of a newer (or older) schema than this config's
            continue
        allowed = check(value)
        if allowed is not None:
            _fail(key, value, allowed)
    _check_dataset(config)
    _check_device(config.train.device)
    if config.train.probe_every and config.task != "nvs":
        _fail("train.probe_every", config.train.probe_every,
              "null for an image task: the input-dependence probe swaps the posed views of view synthesis")
    if config.nvs.far <= config.nvs.near:
        _fail("nvs.far", config.nvs.far, f"a depth beyond nvs.near={config.nvs.near}")
    image_size = _image_size(config)
    if image_size is not None and config.model.name != "learned_init":
        _check_patches(config, image_size)
    _check_model_builds(config, image_size)


def _fail(key: str, value, allowed: str):
    from .config import ConfigError

    raise ConfigError(f"{key}={value!r} is not allowed: expected {allowed}")


def _check_dataset(config) -> None:
    from .data import IMAGE_DATASETS, VIEW_DATASETS

    name = config.data.name
    fitting = IMAGE_DATASETS if config.task == "image" else VIEW_DATASETS
    if name not in fitting:
        known = name in IMAGE_DATASETS + VIEW_DATASETS
        _fail("data.name", name, f"a dataset of task {config.task!r}: one of {', '.join(map(repr, fitting))}"
              + (" (or set task to the other task)" if known else ""))


def _image_size(config) -> int | None:
    """The side in pixels of the inputs, where the config alone says it."""
    name, value = config.data.name, config.data.resolution
    words = RESOLUTION_WORDS.get(name, {})
    if isinstance(value, str):
        if value.strip().lower() not in words:
            allowed = "a number of pixels" + "".join(f" or {w!r}" for w in words)
            _fail("data.resolution", value, allowed + f" for dataset {name!r}")
        return words[value.strip().lower()]
    if name == "emoji" and value not in EMOJI_RESOLUTIONS:
        _fail("data.resolution", value, "32, 64 or 'full' (128 px) for the emoji dataset")
    if value < 1:
        _fail("data.resolution", value, "a positive number of pixels")
    return value


def _check_patches(config, image_size: int) -> None:
    m = config.model
    padded = image_size + 2 * m.padding
    if padded % m.patch_size:
        divisors = [d for d in range(2, padded) if padded % d == 0][:6]
        _fail("model.patch_size", m.patch_size,
              f"a divisor of data.resolution + 2·model.padding = {image_size} + 2·{m.padding} = {padded}"
              + (f" (e.g. {', '.join(map(str, divisors))})" if divisors else ""))


def _check_device(name: str) -> None:
    import torch

    if name == "auto":
        return
    try:
        torch.device(name)
    except (RuntimeError, ValueError):
        _fail("train.device", name, "auto, cpu, cuda, cuda:N or mps")


def _check_model_builds(config, image_size: int | None) -> None:
    """Build the model without memory (on the meta device) to run every shape check its
    constructors make — weight groups against the INR's widths, the pattern layer —
    and report the first failure against the config."""
    import torch

    from .models import build_model
    from .models.factory import MODEL_NAMES, build_hyponet

    m = config.model
    if m.name not in MODEL_NAMES:
        _fail("model.name", m.name, "one of " + ", ".join(map(repr, MODEL_NAMES)))
    with torch.device("meta"):
        try:
            shapes = build_hyponet(config).layer_shapes
        except ValueError as error:
            from .config import ConfigError

            raise ConfigError(f"model.hyponet: {error}") from None
        if m.name in ("trans_inr", "single_vector"):
            for layer, (_, fan_out) in enumerate(shapes):
                groups = min(m.n_groups, fan_out)
                if fan_out % groups:
                    _fail("model.n_groups", m.n_groups,
                          f"a number that splits every INR layer's output columns evenly: layer {layer} "
                          f"has {fan_out} (divisors of {fan_out}, or ≥ {fan_out})")
        if m.name == "instance_pattern" and m.pattern_layer >= len(shapes):
            _fail("model.pattern_layer", m.pattern_layer,
                  f"a layer of the {len(shapes)}-layer INR (0 … {len(shapes) - 1})")
        if image_size is None and m.name != "learned_init":
            return
        try:
            build_model(config, image_size or 1)
        except ValueError as error:
            from .config import ConfigError

            raise ConfigError(f"model: {error}") from None

"""Experiment configs: YAML files read into dataclasses, strictly.

An unknown or misspelled key, or a value of the wrong type, is an error that
names the key and the file — a typo must never silently fall back to a default.
Overrides use dotted keys: ``train.lr=3e-4 model.n_groups=16``.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .config_checks import validate

CONFIG_DIR = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


@dataclass
class AugmentConfig:
    """Emoji training split only: a fresh variant of each image every epoch (data/augment.py)."""
    crop: bool = False  # random resized crop of the source artwork
    crop_scale: float = 0.35  # smallest crop area, a fraction of the image
    flip: bool = False  # left-right mirror with probability 1/2
    hue: float = 0.0  # largest hue rotation, a fraction of a turn (0.5: any hue); 0: off
    composite: float = 0.0  # probability that a signal is several emoji on one canvas
    composite_max: int = 4  # emoji on a composite canvas: 2 … composite_max
    source: int | str = 64  # resolution crops are cut from: 64 (shipped) or "full" (128 px cache)
    # Further artwork sets, training-split emoji only, added to the stream as more source
    # images ("twemoji": Twemoji, CC-BY 4.0, assets/twemoji_64.npz); []: the Noto set alone.
    extra_artwork: list[str] = field(default_factory=list)


@dataclass
class DataConfig:
    name: str = "emoji"  # emoji | celeba | imagenette | folder | shapes3d | learnit
    root: str | None = None  # dataset folder (paper datasets, image folders, learnit)
    resolution: int | str = 32
    category: str = "chair"  # NVS only: object category
    n_support: int = 1  # NVS only: input views per object
    # Embedded 3D set only (data.name: shapes3d without data.root): objects per category,
    # split 80 / 10 / 10 by a seeded shuffle. Object k is the same chair at every size, but
    # the split is drawn per size: a 100-object set's test chairs are mostly in a
    # 1,000-object set's train split, so score a model on the size it trained on.
    n_objects: int = 100
    num_workers: int = 0
    cache_in_memory: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Image tasks: an out-of-distribution set scored next to the test split
    # ("textures": procedural textures, data/textures.py); null: none.
    ood: str | None = "textures"
    # View synthesis: a folder in the learnit layout (e.g. the Sweet Home 3D furniture built by
    # ``python -m transinr build-3d --source sweethome3d``) whose test split of
    # ``data.category`` is scored as out-of-distribution objects, on the same held-out views
    # as the test split; null: none.
    ood_root: str | None = None
    # Which objects of data.ood_root are scored: "test" (its test split: right when training
    # may have used the folder's train split) or "all" (every object: for models that trained
    # on none of them, so the row is not read off a handful of objects).
    ood_split: str = "test"
    # View synthesis: more training objects, beside the train split of data.category under
    # data.root. Each entry is "ROOT" (its train split of data.category) or "ROOT:CATEGORY"
    # (e.g. "data/shapes3d_3000:car", "~/.cache/transinr/sweethome3d/64px:chair"); a missing
    # ROOT is "" (data.root itself: "":car trains on its cars too). Held-out splits stay
    # data.root's data.category, so scores compare with runs that train on it alone.
    train_sources: list[str] = field(default_factory=list)


@dataclass
class HyponetConfig:
    depth: int = 5
    width: int = 256
    pe_dim: int = 128
    pe_sigma: float = 1024.0
    out_bias: float = 0.5
    use_viewdirs: bool = False  # NeRF only
    # As in the official code, ``pe_dim`` counts the Fourier features of ONE input
    # coordinate (cos and sin of pe_dim / 2 frequencies): an image hyponet's first layer
    # reads 2 · pe_dim features, a NeRF's 3 · pe_dim. false: pe_dim counts all features.
    pe_dim_per_coordinate: bool = True
    # Multiply the frequencies by π. null: the paper's choice for the task — images
    # cos(π x w_k) with w_k in [1, σ], NeRF cos(x · 2^k) without π.
    pe_times_pi: bool | None = None


@dataclass
class ModelConfig:
    name: str = "trans_inr"  # trans_inr | learned_init | single_vector | instance_pattern
    patch_size: int = 9
    padding: int = 1
    dim: int = 768
    depth: int = 6
    n_heads: int = 12
    head_dim: int = 64
    mlp_dim: int = 3072
    dropout: float = 0.0
    # Learned biases on the attention's query, key and value projections (the paper has
    # none; its output projection has one).
    qkv_bias: bool = False
    # Standard deviation of the initial weight tokens and of the image tokenizer's
    # positional embedding (the paper draws both from N(0, 1)).
    token_init_std: float = 1.0
    # A learned positional embedding on posed-view tokens; the paper has none, the pose
    # is in each pixel's ray channels.
    view_position_embedding: bool = False
    # Posed views: cos / sin(2^k · ray channel), k < ray_frequencies, beside the raw rays in
    # each pixel (0: the paper's raw rays only).
    ray_frequencies: int = 0
    n_groups: int = 64  # G; instance_pattern: the rank of the composed layer
    hyponet: HyponetConfig = field(default_factory=HyponetConfig)
    # single_vector: size of the one latent vector every INR weight is computed from.
    latent_dim: int = 256
    # learned_init: SGD steps on each signal's observations during meta-training, and at
    # test time (null: the same as inner_steps).
    inner_steps: int = 2
    test_inner_steps: int | None = None
    inner_lr: float = 0.1  # initial (or fixed) inner SGD step size
    learn_inner_lr: bool = True  # meta-learn the (log) step sizes
    inner_lr_per: str = "layer"  # layer: one step size per hyponet layer; parameter: one per weight (Meta-SGD)
    second_order: bool = False  # backpropagate through the inner gradients (MAML) or not (FOMAML)
    inner_rays: int | None = None  # learned_init on views: support rays per object per inner step (null: nvs.tto_rays)
    # instance_pattern: the one hyponet layer whose weights are instance-specific.
    pattern_layer: int = 1


@dataclass
class NVSConfig:
    near: float = 2.0
    far: float = 6.0
    n_samples: int = 128  # points per ray
    train_rays: int = 128  # query rays per object per step
    foreground_fraction: float = 0.5  # of the query rays, first epoch only
    foreground_epochs: int = 1
    render_chunk: int = 4096  # rays per chunk when rendering whole views
    # Training draws support and query views from views 0 … train_views-1 (learnit: 25);
    # held-out objects are scored on views train_views … (learnit's 25–49).
    train_views: int = 25
    train_query_views: int = 1  # views per object the training rays are drawn from
    # Draw the training rays from the support views too (as well as from the
    # train_query_views others), so the generated NeRF must reproduce what each of its input
    # views shows; false: from the other views only (the paper).
    supervise_support_views: bool = False
    # Which support views a training item gets: "random" (drawn from the training views, the
    # paper) or "fixed" (the evaluation's: the first data.n_support views; for a set built with
    # ``build-3d --first-view`` that is one canonical camera for every object).
    train_support: str = "random"
    eval_views: int | None = None  # cap on held-out views rendered per test object (None: all)
    tto_steps: int = 100  # test-time optimisation
    tto_lr: float = 1e-4
    tto_rays: int = 1024  # support rays per object per step
    tto_batch: int = 4  # objects optimised at once: a memory bound, each object is fitted on its own
    evaluate_with_tto: bool = False  # score (and draw) after test-time optimisation
    turntable_frames: int = 40  # frames of the turntable GIF written with the samples
    # Volume-rendering quadrature. learnit (the paper's numbers): sample spacing in
    # depth units, last interval 1e-3, stratified samples shifted by up to one spacing.
    # nerf: spacing × ‖direction‖, last interval 1e10, samples drawn between mid-points.
    render_convention: str = "learnit"


@dataclass
class TrainConfig:
    epochs: float = 30.0
    max_images: int | None = None  # overrides epochs: a budget in training signals seen
    batch_size: int = 16
    lr: float = 1e-4
    lr_decay_at: float = 0.8  # ×lr_decay_factor after this fraction of the steps
    lr_decay_factor: float = 0.1
    warmup_steps: int = 0
    weight_decay: float = 0.0
    grad_clip: float | None = None
    seed: int = 0
    device: str = "auto"
    amp: str = "off"  # off | bf16 (CUDA only)
    compile: bool = False
    log_every: int = 20
    eval_every: int | None = None  # steps; None: only at the end
    # steps; view synthesis only: log how far the NeRFs of a few held-out objects move when
    # each is given another object's views (does the model read its input?). None: never.
    probe_every: int | None = None
    checkpoint_every: int = 200  # steps
    eval_images: int | None = None  # cap on held-out signals evaluated during training
    figure_images: int = 8
    # Fine-tune: start from the weights of a trained model (a shipped name, a run folder,
    # a checkpoint or a .safetensors file) instead of a random init. Its model section
    # must equal this config's (``train --init`` copies it).
    init_from: str | None = None


@dataclass
class Config:
    name: str = "experiment"
    task: str = "image"  # image | nvs
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    nvs: NVSConfig = field(default_factory=NVSConfig)


def _type_matches(value, annotation) -> bool:
    """Whether a YAML value fits a (string) annotation of our dataclasses."""
    if annotation is typing.Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_matches(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        return isinstance(value, list)
    return isinstance(value, annotation)


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of keys for {cls.__name__}, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{where or 'top level'}: unknown key(s) {', '.join(repr(u) for u in unknown)} for {cls.__name__}; "
            f"known keys: {', '.join(sorted(known))}"
        )
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        value = _number_from_string(value, hint)
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{where}.{name}" if where else name)
            continue
        if not _type_matches(value, hint):
            raise ConfigError(
                f"{where + '.' if where else ''}{name}: expected {_describe(hint)}, got {value!r}"
            )
        if hint is float or (float in typing.get_args(hint) and isinstance(value, int)
                             and not isinstance(value, bool) and int not in typing.get_args(hint)):
            value = float(value)
        kwargs[name] = value
    return cls(**kwargs)


def _number_from_string(value, hint):
    """YAML 1.1 reads ``3e-4`` (no dot) as a string; take it as the number it is."""
    accepts_float = hint is float or float in typing.get_args(hint)
    if isinstance(value, str) and accepts_float:
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _describe(annotation) -> str:
    args = typing.get_args(annotation)
    if args:
        return " or ".join(_describe(a) for a in args)
    return "null" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


def resolve_shipped_yaml(name_or_path: str | Path, folder: Path, kind: str) -> Path:
    """A path to a YAML file, or the name of one shipped in ``folder``; ``kind`` names
    what it is in the error ("config", "study")."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = folder / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    available = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
    raise ConfigError(f"no {kind} file {str(name_or_path)!r}; shipped {kind}s: {available}")


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A path to a YAML file, or the name of a shipped config (``emoji32``)."""
    return resolve_shipped_yaml(name_or_path, CONFIG_DIR, "config")


def parse_overrides(overrides: list[str]) -> dict:
    """``["train.lr=3e-4", "model.n_groups=16"]`` → nested dict (values parsed as YAML)."""
    nested: dict = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            problem = " ".join(str(error).split())
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({problem})") from None
    return nested


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def config_from_dict(values: dict, where: str = "config") -> Config:
    config = _build(Config, values or {}, where)
    try:
        validate(config)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    return config


def load_config(name_or_path: str | Path, overrides: list[str] | None = None) -> Config:
    path = resolve_config_path(name_or_path)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    if overrides:
        values = _merge(values, parse_overrides(overrides))
    try:
        config = _build(Config, values, "")
        validate(config)
        return config
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


# Keys whose default changed to the paper's; a stored config (a checkpoint, a shipped
# model) saved before a key existed was trained with the value given here, so it
# is rebuilt with it rather than with today's default.
LEGACY_VALUES = {
    ("model", "qkv_bias"): True,
    ("model", "token_init_std"): 0.02,
    ("model", "view_position_embedding"): True,
    ("model", "hyponet", "pe_dim_per_coordinate"): False,
    ("model", "hyponet", "pe_times_pi"): True,
    ("nvs", "render_convention"): "nerf",
}


def stored_config(values: dict, where: str = "stored config") -> Config:
    """A config saved with a checkpoint or shipped model, read with today's schema.

    Keys it lacks take today's defaults, except those in ``LEGACY_VALUES``: they take
    the value the model was built with before the key existed, so old models keep
    computing the function they were trained as.
    """
    values = copy.deepcopy(values or {})
    for path, legacy in LEGACY_VALUES.items():
        node = values
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node.setdefault(path[-1], legacy)
    return config_from_dict(values, where)


def config_to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)

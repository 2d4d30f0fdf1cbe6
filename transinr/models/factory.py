"""Build a model from a config."""

from __future__ import annotations

from ..config import Config
from .hyponets import ImageHyponet, NeRFHyponet
from .tokenizers import ImageTokenizer, ViewsTokenizer
from .trans_inr import TransINR
from .transformer import TransformerEncoder


def build_hyponet(config: Config):
    h = config.model.hyponet
    if config.task == "image":
        return ImageHyponet(h.depth, h.width, h.pe_dim, h.pe_sigma, h.out_bias)
    if config.task == "nvs":
        return NeRFHyponet(h.depth, h.width, h.pe_dim, h.pe_sigma, h.use_viewdirs)
    raise ValueError(f"unknown task {config.task!r}: expected 'image' or 'nvs'")


def build_tokenizer(config: Config, image_size: int):
    m = config.model
    if config.task == "image":
        return ImageTokenizer(image_size, m.patch_size, m.dim, m.padding)
    return ViewsTokenizer(image_size, m.patch_size, m.dim, m.padding)


def build_transformer(config: Config) -> TransformerEncoder:
    m = config.model
    return TransformerEncoder(m.dim, m.depth, m.n_heads, m.head_dim, m.mlp_dim, m.dropout)


def build_model(config: Config, image_size: int):
    """The meta-learner named by ``config.model.name`` for inputs of ``image_size`` px."""
    name = config.model.name
    if name == "trans_inr":
        return TransINR(build_tokenizer(config, image_size), build_transformer(config),
                        build_hyponet(config), config.model.n_groups)
    raise ValueError(f"unknown model {name!r}; available: trans_inr")

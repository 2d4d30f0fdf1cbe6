"""Build a model from a config."""

from __future__ import annotations

from ..config import Config
from .hyponets import ImageHyponet, NeRFHyponet
from .instance_pattern import InstancePatternComposer
from .learned_init import LearnedInit, image_reconstruction_losses, views_reconstruction_losses
from .single_vector import SingleVectorHypernet
from .tokenizers import ImageTokenizer, ViewsTokenizer
from .trans_inr import TransINR
from .transformer import TransformerEncoder


def build_hyponet(config: Config):
    h = config.model.hyponet
    if config.task == "image":
        times_pi = True if h.pe_times_pi is None else h.pe_times_pi
        return ImageHyponet(h.depth, h.width, h.pe_dim, h.pe_sigma, h.out_bias,
                            pe_per_coordinate=h.pe_dim_per_coordinate, pe_times_pi=times_pi)
    if config.task == "nvs":
        times_pi = False if h.pe_times_pi is None else h.pe_times_pi
        return NeRFHyponet(h.depth, h.width, h.pe_dim, h.pe_sigma, h.use_viewdirs,
                           pe_per_coordinate=h.pe_dim_per_coordinate, pe_times_pi=times_pi,
                           render_convention=config.nvs.render_convention)
    raise ValueError(f"unknown task {config.task!r}: expected 'image' or 'nvs'")


def build_tokenizer(config: Config, image_size: int):
    m = config.model
    if config.task == "image":
        return ImageTokenizer(image_size, m.patch_size, m.dim, m.padding, position_init_std=m.token_init_std)
    position_std = m.token_init_std if m.view_position_embedding else 0.0
    return ViewsTokenizer(image_size, m.patch_size, m.dim, m.padding, position_init_std=position_std,
                          ray_frequencies=m.ray_frequencies)


def build_transformer(config: Config) -> TransformerEncoder:
    m = config.model
    return TransformerEncoder(m.dim, m.depth, m.n_heads, m.head_dim, m.mlp_dim, m.dropout, m.qkv_bias)


MODEL_NAMES = ("trans_inr", "learned_init", "single_vector", "instance_pattern")


def build_learned_init(config: Config) -> LearnedInit:
    """Learned Init; its inner loop fits the task's observations (pixels, or support-view rays)."""
    m = config.model
    if config.task == "image":
        loss_builder = image_reconstruction_losses
    else:
        nvs = config.nvs
        rays = nvs.tto_rays if m.inner_rays is None else m.inner_rays
        loss_builder = views_reconstruction_losses(nvs.near, nvs.far, nvs.n_samples, rays)
    return LearnedInit(build_hyponet(config), m.inner_steps, m.test_inner_steps, m.inner_lr,
                       m.learn_inner_lr, m.second_order, loss_builder, m.inner_lr_per)


def build_model(config: Config, image_size: int):
    """The meta-learner named by ``config.model.name`` for inputs of ``image_size`` px.

    Every one maps observations to per-layer INR weights (B, in+1, out) and renders
    them with its ``.hyponet``, so the training loop and evaluation serve them all.
    """
    m = config.model
    name = m.name
    if name == "trans_inr":
        return TransINR(build_tokenizer(config, image_size), build_transformer(config),
                        build_hyponet(config), m.n_groups, token_init_std=m.token_init_std)
    if name == "learned_init":
        return build_learned_init(config)
    if name == "single_vector":
        return SingleVectorHypernet(build_tokenizer(config, image_size), build_transformer(config),
                                    build_hyponet(config), m.latent_dim, m.n_groups,
                                    token_init_std=m.token_init_std)
    if name == "instance_pattern":
        return InstancePatternComposer(build_tokenizer(config, image_size), build_transformer(config),
                                       build_hyponet(config), m.n_groups, m.pattern_layer,
                                       token_init_std=m.token_init_std)
    raise ValueError(f"unknown model {name!r}; available: {', '.join(MODEL_NAMES)}")

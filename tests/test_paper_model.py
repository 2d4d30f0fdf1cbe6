"""The paper configs build the official implementation's model (yinboc/trans-inr ``cfgs/``).

Shapes and parameter counts below were read off the official code built from its own
configs: ``imgrec_celeba`` / ``imgrec_imagenette`` 44,462,851 parameters,
``nvs_shapenet_*`` (1 and 2 views) 44,463,484.
"""

import math

import pytest
import torch

from transinr.config import load_config, stored_config, config_to_dict
from transinr.models import build_model

IMAGE_LAYERS = [(257, 256)] * 4 + [(257, 3)]
NERF_LAYERS = [(121, 256)] + [(257, 256)] * 4 + [(257, 4)]
PAPER_MODELS = [
    ("celeba178", 178, 44_462_851, IMAGE_LAYERS, 259),
    ("imagenette178", 178, 44_462_851, IMAGE_LAYERS, 259),
] + [
    (f"shapenet_{category}_{views}view", 128, 44_463_484, NERF_LAYERS, 164)
    for category in ("chairs", "cars", "lamps") for views in (1, 2)
]


@pytest.mark.parametrize("name,size,n_params,layers,n_tokens", PAPER_MODELS)
def test_paper_configs_build_the_official_model(name, size, n_params, layers, n_tokens):
    config = load_config(name)
    with torch.device("meta"):  # shapes only: no 44M-parameter allocation
        model = build_model(config, size)
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert [tuple(shape) for shape in model.hyponet.layer_shapes] == layers
    assert model.weight_tokens.n_tokens == n_tokens
    assert all(block.attn.qkv.bias is None for block in model.transformer.blocks)


def test_paper_initial_scales_and_encodings():
    image = build_model(load_config("celeba178", ["model.depth=1"]), 178)
    assert image.weight_tokens.tokens.std().item() == pytest.approx(1.0, rel=0.05)
    assert image.tokenizer.position.std().item() == pytest.approx(1.0, rel=0.05)
    # Base weights and bias rows as the official code draws them (nn.Linear's default, which
    # for kaiming_uniform with a = √5 is U(±1/√fan_in) for both).
    for base in image.weight_tokens.base:
        bound = 1 / math.sqrt(base.shape[0] - 1)
        assert 0.95 * bound < base.abs().max().item() <= bound
        assert base.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
    freqs = image.hyponet.encoding.freqs
    assert len(freqs) == 64 and freqs[0].item() == pytest.approx(math.pi) and freqs[-1].item() == pytest.approx(1024 * math.pi)
    nerf = build_model(load_config("shapenet_chairs_1view", ["model.depth=1"]), 128)
    freqs = nerf.hyponet.encoding.freqs
    assert torch.allclose(freqs, 2.0 ** torch.linspace(0, 8, 20), rtol=1e-5)  # no π
    assert nerf.tokenizer.image.position is None  # the pose is in the ray channels
    assert nerf.hyponet.render_convention == "learnit"


def test_models_saved_before_the_paper_defaults_keep_their_own():
    config = load_config("emoji32_demo")
    values = config_to_dict(config)
    for section, key in (("model", "qkv_bias"), ("model", "token_init_std"), ("nvs", "render_convention")):
        del values[section][key]
    del values["model"]["hyponet"]["pe_dim_per_coordinate"]
    old = stored_config(values)
    assert old.model.qkv_bias and old.model.token_init_std == 0.02 and old.nvs.render_convention == "nerf"
    assert not old.model.hyponet.pe_dim_per_coordinate
    assert "qkv_bias" not in values["model"]  # the caller's dict is left as it was
    # A config that names the keys keeps what it says.
    assert stored_config(config_to_dict(config)).model.qkv_bias is False


def option_effects():
    """(config, override, what it must change) for every deviation the paper configs leave off."""
    def blocks(model):
        return model.transformer.blocks
    return [
        ("celeba178", "model.qkv_bias=true", lambda m: all(b.attn.qkv.bias is not None for b in blocks(m))),
        ("celeba178", "model.token_init_std=0.02",
         lambda m: abs(m.weight_tokens.tokens.std().item() - 0.02) < 0.002
         and abs(m.tokenizer.position.std().item() - 0.02) < 0.002),
        ("shapenet_chairs_1view", "model.view_position_embedding=true",
         lambda m: m.tokenizer.image.position is not None),
        ("shapenet_chairs_1view", "model.ray_frequencies=4",
         lambda m: m.tokenizer.image.project.in_features == 8 * 8 * (9 + 12 * 4)),
        ("celeba178", "model.hyponet.pe_dim_per_coordinate=false",
         lambda m: tuple(m.hyponet.layer_shapes[0]) == (129, 256)),
        ("shapenet_chairs_1view", "model.hyponet.pe_times_pi=true",
         lambda m: torch.allclose(m.hyponet.encoding.freqs, math.pi * 2.0 ** torch.linspace(0, 8, 20))),
        ("shapenet_chairs_1view", "nvs.render_convention=nerf", lambda m: m.hyponet.render_convention == "nerf"),
    ]


@pytest.mark.parametrize("name,override,changed", option_effects(),
                         ids=[override for _, override, _ in option_effects()])
def test_each_deviation_is_an_option_that_does_what_it_names(name, override, changed):
    size = 178 if name == "celeba178" else 128
    paper = build_model(load_config(name, ["model.depth=1"]), size)
    deviating = build_model(load_config(name, ["model.depth=1", override]), size)
    assert changed(deviating) and not changed(paper)

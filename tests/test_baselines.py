import pytest
import torch

from transinr.config import load_config
from transinr.fit import fit_from_scratch
from transinr.models import build_model
from transinr.models.instance_pattern import InstancePatternComposer
from transinr.models.learned_init import LearnedInit, adapt, image_reconstruction_losses
from transinr.models.single_vector import SingleVectorHypernet
from transinr.tasks.image import ImageRegression

from .helpers import smooth_images, tiny_image_config

BASELINES = ["learned_init", "single_vector", "instance_pattern"]


def tiny_model(name: str, **model):
    config = tiny_image_config()
    config.model.name = name
    for key, value in model.items():
        setattr(config.model, key, value)
    torch.manual_seed(0)
    return config, build_model(config, 32)


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_meta_trains_through_the_image_task(name):
    config, model = tiny_model(name)
    task = ImageRegression(config)
    images = smooth_images(8)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        loss, psnr = task.training_loss(model, images, epoch=0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.9 * losses[0]
    # Evaluation (under no_grad, eval mode) works too, including Learned Init's inner loop.
    scores = task.psnr(model.eval(), images)
    assert scores.shape == (8,) and torch.isfinite(scores).all()


def test_unknown_model_and_bad_options_are_clear_errors():
    config = tiny_image_config()
    config.model.name = "maml++"
    with pytest.raises(ValueError, match="learned_init"):
        build_model(config, 32)
    with pytest.raises(ValueError, match="pattern_layer 7"):
        tiny_model("instance_pattern", pattern_layer=7)


# ----------------------------------------------------------------------------- Learned Init

def test_inner_loop_reduces_the_loss_on_the_observed_signal():
    _, model = tiny_model("learned_init", inner_steps=3)
    images = smooth_images(4, seed=3)
    loss_fn = image_reconstruction_losses(model.hyponet, images)
    with torch.no_grad():
        before = loss_fn(model.initial_weights(4))
        history = []
        adapted = model.train()(images, on_step=lambda step, w: history.append(loss_fn(w)))
    assert len(history) == 3
    assert (history[-1] < before).all(), "every signal's loss should drop"
    assert (history[0] < before).all() and (history[-1] < history[0]).all()
    assert not any(w.requires_grad for w in adapted), "no graph is kept under no_grad"


def test_meta_and_test_time_step_counts_are_separate():
    _, model = tiny_model("learned_init", inner_steps=2, test_inner_steps=0)
    images = smooth_images(2)
    with torch.no_grad():
        eval_weights = model.eval()(images)
        train_weights = model.train()(images)
    for theta0, w in zip(model.initial_weights(2), eval_weights):
        assert torch.equal(theta0, w)  # 0 test-time steps: θ_0 itself
    assert not torch.equal(train_weights[0], eval_weights[0])


def test_first_order_outer_gradient_is_the_gradient_at_the_adapted_weights():
    _, model = tiny_model("learned_init", inner_steps=2, learn_inner_lr=False)
    images = smooth_images(2, seed=1)
    loss_fn = image_reconstruction_losses(model.hyponet, images)
    adapted = model.train()(images)
    outer = loss_fn(adapted).sum()
    at_adapted = torch.autograd.grad(outer, adapted, retain_graph=True)
    outer.backward()
    # FOMAML: θ_K = θ_0 − Σ α g_i with g_i constants, so ∂L/∂θ_0 = Σ_batch ∂L/∂θ_K.
    for parameter, grad in zip(model.init_weights, at_adapted):
        assert torch.allclose(parameter.grad, grad.sum(0), atol=1e-6)


def test_second_order_differs_from_first_order_and_learns_the_step_size():
    images = smooth_images(2, seed=2)
    grads = {}
    for second_order in (False, True):
        _, model = tiny_model("learned_init", inner_steps=1, second_order=second_order)
        loss_fn = image_reconstruction_losses(model.hyponet, images)
        loss_fn(model.train()(images)).sum().backward()
        grads[second_order] = model.init_weights[0].grad.clone()
        assert model.log_step_sizes.grad is not None and model.log_step_sizes.grad.abs().sum() > 0
    assert not torch.allclose(grads[False], grads[True]), "the Hessian term must change the gradient"


def test_per_parameter_step_sizes_start_as_the_per_layer_ones_and_learn_per_weight():
    images = smooth_images(2, seed=3)
    _, per_layer = tiny_model("learned_init", inner_steps=2, second_order=True)
    _, per_weight = tiny_model("learned_init", inner_steps=2, second_order=True, inner_lr_per="parameter")
    per_weight.init_weights.load_state_dict(per_layer.init_weights.state_dict())
    for a, b in zip(per_layer.train()(images), per_weight.train()(images)):
        assert torch.allclose(a, b, atol=1e-6)  # same α everywhere at the start: same steps
    loss_fn = image_reconstruction_losses(per_weight.hyponet, images)
    loss_fn(per_weight(images)).sum().backward()
    for log_step, weights in zip(per_weight.log_step_sizes, per_weight.init_weights):
        assert log_step.shape == weights.shape
        assert log_step.grad.std() > 0, "each weight's step size gets its own gradient"


def test_per_parameter_step_sizes_must_be_learned():
    with pytest.raises(ValueError, match="Meta-SGD"):
        tiny_model("learned_init", inner_lr_per="parameter", learn_inner_lr=False)


def test_learned_init_adapts_nerfs_on_the_observed_views():
    config = tiny_image_config()
    config.task, config.model.name = "nvs", "learned_init"
    config.model.hyponet.pe_dim = 4  # per coordinate: 12 features
    config.nvs.n_samples, config.nvs.tto_rays = 8, 16
    torch.manual_seed(0)
    model = build_model(config, 8)
    rgb, rays_o = torch.rand(2, 1, 3, 8, 8), torch.zeros(2, 1, 8, 8, 3)
    rays_o[..., 2] = 4.0
    rays_d = torch.nn.functional.normalize(torch.randn(2, 1, 8, 8, 3) * 0.1 + torch.tensor([0, 0, -1.0]), dim=-1)
    weights = model.train()(rgb, rays_o, rays_d)
    assert [tuple(w.shape) for w in weights] == [(2, *shape) for shape in model.hyponet.layer_shapes]
    sum(w.sum() for w in weights).backward()
    assert model.init_weights[0].grad is not None and model.log_step_sizes.grad.abs().sum() > 0


def test_adapt_takes_any_loss_closure():
    # A quadratic with a known minimum: SGD with step 0.25 halves the distance each step.
    target = torch.tensor([[[4.0]]])
    adapted = adapt([torch.zeros(1, 1, 1)], lambda w: ((w[0] - target) ** 2).flatten(1).sum(1),
                    step_sizes=[0.25], steps=3)
    assert torch.allclose(adapted[0], target * (1 - 0.5 ** 3))


# ----------------------------------------------------------------------------- single vector

def test_single_vector_model_passes_only_one_vector():
    _, model = tiny_model("single_vector", latent_dim=5)
    model.eval()
    a, b = smooth_images(1, seed=4), smooth_images(1, seed=5)
    with torch.no_grad():
        z = model.encode(torch.cat([a, b]))
        assert z.shape == (2, 5)
        forward = model(torch.cat([a, b]))
        for w, w_from_z in zip(forward, model.weights_from_latent(z)):
            assert torch.equal(w, w_from_z)
        # Two different images forced to the same latent get the same INR (up to float
        # rounding of the batched matmul), though their own INRs differ.
        same = model.weights_from_latent(z[:1].expand(2, -1))
        assert all(torch.allclose(w[0], w[1], rtol=0, atol=1e-6) for w in same)
        assert not torch.allclose(forward[0][0], forward[0][1], rtol=0, atol=1e-3)


def _weight_perturbation_rank(model, image: torch.Tensor, directions: int = 8) -> torch.Tensor:
    """Singular values (normalised) of how all weights move under small image changes."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        base = torch.cat([w.flatten() for w in model(image)])
        moves = []
        for _ in range(directions):
            v = torch.randn(image.shape, generator=generator, dtype=image.dtype)
            moved = torch.cat([w.flatten() for w in model(image + 1e-6 * v)])
            moves.append(moved - base)
    singular = torch.linalg.svdvals(torch.stack(moves, dim=1))
    return singular / singular[0]


def test_single_vector_weights_vary_in_only_latent_dim_directions():
    # The INR is a function of z alone, so however the image changes, the weights
    # can only move within a latent_dim-dimensional family; Trans-INR's cannot.
    _, single = tiny_model("single_vector", latent_dim=2)
    _, trans = tiny_model("trans_inr")
    image = smooth_images(1, seed=6).double()
    single_sv = _weight_perturbation_rank(single.double().eval(), image)
    trans_sv = _weight_perturbation_rank(trans.double().eval(), image)
    assert single_sv[2] < 1e-4, single_sv
    assert trans_sv[2] > 1e-2, trans_sv


# ----------------------------------------------------------------------------- instance pattern

@pytest.mark.parametrize("pattern_layer", [0, 1])
def test_instance_pattern_only_one_low_rank_layer_is_instance_specific(pattern_layer):
    _, model = tiny_model("instance_pattern", pattern_layer=pattern_layer, n_groups=4)
    assert isinstance(model, InstancePatternComposer)
    with torch.no_grad():
        weights = model.eval()(smooth_images(3, seed=7))
    for layer, w in enumerate(weights):
        shared = all(torch.equal(w[0], w[i]) for i in range(1, 3))
        assert shared == (layer != pattern_layer), f"layer {layer}"
    composed = weights[pattern_layer][:, :-1]  # weight rows, bias row excluded
    assert int(torch.linalg.matrix_rank(composed[0])) <= 4
    assert torch.equal(weights[pattern_layer][0, -1], weights[pattern_layer][1, -1]), "bias row is shared"


def test_model_classes_and_parameter_layout():
    assert isinstance(tiny_model("learned_init")[1], LearnedInit)
    _, model = tiny_model("learned_init", learn_inner_lr=False)
    assert "log_step_sizes" in model.state_dict()
    assert all(p is not model.log_step_sizes for p in model.parameters())
    assert isinstance(tiny_model("single_vector")[1], SingleVectorHypernet)


# ----------------------------------------------------------------------------- from scratch

def test_fit_from_scratch_improves_psnr_and_records_time():
    _, model = tiny_model("trans_inr")
    fitted = fit_from_scratch(model.hyponet, smooth_images(3, seed=8), steps=60, lr=1e-2, record_every=20)
    assert fitted["steps"] == [0, 20, 40, 60]
    assert len(fitted["psnr"]) == 4 and len(fitted["psnr"][0]) == 3
    assert all(a < b for a, b in zip(fitted["psnr"][0], fitted["psnr"][-1]))
    assert fitted["psnr_mean"][-1] > fitted["psnr_mean"][0] + 3
    assert fitted["seconds"][0] == 0 and fitted["seconds"] == sorted(fitted["seconds"])


@pytest.mark.parametrize("name", ["emoji32_learned_init", "emoji32_single_vector", "emoji32_instance_pattern"])
def test_shipped_baseline_configs_build(name):
    config = load_config(name)
    model = build_model(config, int(config.data.resolution))
    assert sum(p.numel() for p in model.parameters()) > 0

import torch
import torch.nn.functional as F

from transinr.coords import make_coord_grid
from transinr.models import ImageHyponet, ImageTokenizer, NeRFHyponet, TransformerEncoder, build_model
from transinr.models.hyponets import FourierFeatures
from transinr.models.tokenizers import ViewsTokenizer, patchify
from transinr.models.weight_tokens import WeightTokens, modulate_columns
from transinr.tasks.image import ImageRegression, render_image

from .helpers import smooth_images, tiny_image_config


def test_patchify_orders_patches_row_major():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    patches = patchify(x, 2)
    assert patches.shape == (1, 4, 4)
    assert patches[0, 0].tolist() == [0, 1, 4, 5]
    assert patches[0, 1].tolist() == [2, 3, 6, 7]
    assert patches[0, 2].tolist() == [8, 9, 12, 13]


def test_image_tokenizer_pads_178_into_9px_patches():
    tokenizer = ImageTokenizer(178, 9, dim=24, padding=1)
    tokens = tokenizer(torch.rand(2, 3, 178, 178))
    assert tokenizer.grid_shape == (20, 20)
    assert tokens.shape == (2, 400, 24)


def test_views_tokenizer_concatenates_views():
    tokenizer = ViewsTokenizer(16, 4, dim=8)
    rgb, rays = torch.rand(2, 3, 3, 16, 16), torch.rand(2, 3, 16, 16, 3)
    assert tokenizer(rgb, rays, rays).shape == (2, 3 * 16, 8)


def test_views_tokenizer_encodes_rays_at_log_spaced_frequencies_when_asked():
    plain, encoded = ViewsTokenizer(8, 4, dim=8), ViewsTokenizer(8, 4, dim=8, ray_frequencies=3)
    assert plain.image.project.in_features == 16 * 9
    assert encoded.image.project.in_features == 16 * (9 + 12 * 3)
    rays = torch.tensor([[0.5, -1.0, 2.0, 0.0, 0.25, 1.0]])
    angles = (rays[..., None] * torch.tensor([1.0, 2.0, 4.0])).flatten(-2)
    expected = torch.cat([rays, angles.cos(), angles.sin()], dim=-1)
    assert torch.allclose(encoded.encode_rays(rays), expected)
    assert torch.equal(plain.encode_rays(rays), rays)  # the paper's raw rays
    rgb, rays_o = torch.rand(2, 2, 3, 8, 8), torch.rand(2, 2, 8, 8, 3)
    assert encoded(rgb, rays_o, rays_o).shape == (2, 2 * 4, 8)


def test_transformer_attention_is_a_distribution_and_matches_fused_path():
    torch.manual_seed(0)
    encoder = TransformerEncoder(dim=16, depth=3, n_heads=2, head_dim=8, mlp_dim=32).eval()
    x = torch.randn(2, 7, 16)
    fused = encoder(x)
    explicit = encoder(x, return_attention=True, return_hidden=True)
    assert len(explicit.attention) == 3 and explicit.attention[0].shape == (2, 2, 7, 7)
    for attention in explicit.attention:
        assert torch.allclose(attention.sum(-1), torch.ones(2, 2, 7), atol=1e-5)
        assert (attention >= 0).all()
    assert torch.allclose(fused.tokens, explicit.tokens, atol=1e-5)
    assert torch.equal(explicit.hidden[-1], explicit.tokens)


def test_fourier_features_use_log_spaced_frequencies():
    features = FourierFeatures(in_dim=2, n_features=8, sigma=4.0)
    assert torch.allclose(features.freqs, torch.tensor([1.0, 4.0]) * torch.pi)
    x = torch.tensor([[0.25, -0.5]])
    out = features(x)
    angles = torch.tensor([0.25, 1.0, -0.5, -2.0]) * torch.pi
    assert torch.allclose(out, torch.cat([angles.cos(), angles.sin()])[None], atol=1e-6)


def test_hyponet_runs_batch_of_different_inrs_like_a_loop():
    hyponet = ImageHyponet(depth=3, width=8, pe_dim=4, pe_sigma=4.0)
    shapes = hyponet.layer_shapes
    assert shapes == [(9, 8), (9, 8), (9, 3)]  # pe_dim 4 per coordinate: 2 × 4 features
    weights = [torch.randn(4, *shape) for shape in shapes]
    coords = make_coord_grid(5, 6).expand(4, 5, 6, 2)
    batched = hyponet(coords, weights)
    assert batched.shape == (4, 5, 6, 3)
    for b in range(4):
        x = hyponet.encoding(coords[b].reshape(-1, 2))
        for index, w in enumerate(weights):
            x = x @ w[b, :-1] + w[b, -1]
            if index < 2:
                x = F.relu(x)
        assert torch.allclose(batched[b].reshape(-1, 3), x + 0.5, atol=1e-5)


def test_nerf_hyponet_outputs_colour_in_unit_range_and_nonnegative_density():
    hyponet = NeRFHyponet(depth=3, width=16, pe_dim=12, pe_sigma=4.0, use_viewdirs=True, viewdir_pe_dim=6)
    weights = [torch.randn(2, *shape) * 3 for shape in hyponet.layer_shapes]
    out = hyponet(torch.randn(2, 10, 3), weights, viewdirs=torch.randn(2, 10, 3))
    assert out.shape == (2, 10, 4)
    assert (out[..., :3] >= 0).all() and (out[..., :3] <= 1).all() and (out[..., 3] >= 0).all()


def test_generated_weights_equal_normalised_modulated_base_columns():
    base = torch.tensor([[1.0, 2.0, 0.0, 1.0],
                         [0.0, 1.0, 3.0, -1.0],
                         [0.5, 0.5, 0.5, 0.5]])  # (in 2 + bias, out 4)
    u = torch.tensor([[[2.0, 1.0], [1.0, -1.0]]])  # one instance, 2 groups of 2 columns
    weights = modulate_columns(base, u)[0]
    expected = torch.zeros(3, 4)
    for j in range(4):
        column = base[:2, j] * u[0, j // 2]
        expected[:2, j] = column / column.norm()
    expected[2] = base[2]
    assert torch.allclose(weights, expected)
    assert torch.allclose(weights[:2, 0], torch.tensor([1.0, 0.0]))
    assert torch.allclose(weights[:2, 2], torch.tensor([0.0, -1.0]))


def test_weight_tokens_cap_groups_by_layer_width_and_keep_bias_rows():
    tokens = WeightTokens([(9, 8), (9, 8), (9, 3)], n_groups=4, dim=6)
    assert tokens.groups == {0: 4, 1: 4, 2: 3} and tokens.n_tokens == 11
    weights = tokens.decode(torch.randn(5, 11, 6))
    for weight, base in zip(weights, tokens.base):
        assert weight.shape == (5, *base.shape)
        assert torch.equal(weight[:, -1], base[-1].expand(5, -1))
        assert torch.allclose(weight[:, :-1].norm(dim=1), torch.ones(5, base.shape[1]), atol=1e-5)


def test_weight_tokens_with_shared_layers_pass_base_weights_through():
    tokens = WeightTokens([(9, 8), (9, 8), (9, 3)], n_groups=4, dim=6, generated_layers=[0])
    assert tokens.n_tokens == 4
    weights = tokens.decode(torch.randn(2, 4, 6))
    assert torch.equal(weights[1][0], tokens.base[1]) and torch.equal(weights[2][1], tokens.base[2])


def test_gradients_reach_every_parameter():
    config = tiny_image_config()
    model = build_model(config, 32)
    task = ImageRegression(config)
    loss, _ = task.training_loss(model, smooth_images(4), epoch=0)
    loss.backward()
    silent = [name for name, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not silent, f"no gradient reached {silent}"


def test_inr_is_continuous_and_renders_at_any_resolution():
    config = tiny_image_config()
    model = build_model(config, 32).eval()
    with torch.no_grad():
        weights = model(smooth_images(2))
        low = render_image(model.hyponet, weights, 32, 32)
        high = render_image(model.hyponet, weights, 128, 128)
    assert high.shape == (2, 3, 128, 128)
    # Average-pooling the 4× render returns close to the native render.
    assert (F.avg_pool2d(high, 4) - low).abs().mean() < 0.05


def test_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    config = tiny_image_config()
    model = build_model(config, 32)
    task = ImageRegression(config)
    images = smooth_images(8)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    _, start = task.training_loss(model, images, 0)
    for _ in range(150):
        loss, psnr = task.training_loss(model, images, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert psnr > start + 6.0, f"PSNR only went from {start:.2f} to {psnr:.2f} dB"


def test_shared_coordinates_give_the_same_output_as_expanded_ones():
    hyponet = ImageHyponet(depth=3, width=8, pe_dim=8, pe_sigma=4.0)
    weights = [torch.randn(4, *shape, requires_grad=True) for shape in hyponet.layer_shapes]
    grid = make_coord_grid(5, 6)
    shared = hyponet(grid[None], weights)
    expanded = hyponet(grid.expand(4, 5, 6, 2), weights)
    assert shared.shape == (4, 5, 6, 3)
    assert torch.allclose(shared, expanded, atol=1e-5)
    grads_shared = torch.autograd.grad(shared.square().sum(), weights)
    grads_expanded = torch.autograd.grad(expanded.square().sum(), weights)
    for a, b in zip(grads_shared, grads_expanded):
        assert torch.allclose(a, b, atol=1e-4)

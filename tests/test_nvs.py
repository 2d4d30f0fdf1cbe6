"""Novel view synthesis end to end on a tiny procedural set written into tmp."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from PIL import Image
from torch.utils.data import default_collate

from transinr.config import Config, ConfigError, load_config
from transinr.data import build_ood_dataset
from transinr.data.procedural_shapes import build_embedded_3d
from transinr.data.views import build_view_dataset
from transinr.evaluate import evaluate_checkpoint, evaluate_split
from transinr.models import build_model
from transinr.tasks import build_task
from transinr.tasks.nvs import object_psnr, render_novel_view
from transinr.train import train
from transinr.tto import optimise_on_support_views, support_mse, support_rays

from . import helpers

SIZE = 16
N_VIEWS = 6
TRAIN_VIEWS = 4  # views 4 and 5 are held out


@pytest.fixture(scope="module")
def views_root(tmp_path_factory):
    """4 procedural chairs (2 train, 1 val, 1 test), 6 views of 16 px each."""
    root = tmp_path_factory.mktemp("views")
    build_embedded_3d(root, n_objects_per_category=4, n_views=N_VIEWS, resolution=SIZE, categories=("chair",))
    return root


OOD_OBJECTS = 3


@pytest.fixture(scope="module")
def ood_root(tmp_path_factory):
    """A learnit-layout folder of 3 test 'chairs' (a coloured square on white, 6 views of 16 px)."""
    import numpy as np

    from transinr.render import pose_spherical

    root = tmp_path_factory.mktemp("ood_views")
    ids = [f"thing_{k}" for k in range(OOD_OBJECTS)]
    for k, object_id in enumerate(ids):
        folder = root / "chair" / object_id
        folder.mkdir(parents=True)
        frames = []
        for view in range(N_VIEWS):
            rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
            rgba[4:12, 4:12] = (60 * k + 20, 200 - 30 * view, 90, 255)
            Image.fromarray(rgba, "RGBA").save(folder / f"r_{view:03d}.png")
            pose = pose_spherical(60.0 * view + 10.0 * k, 20.0, 4.0)
            frames.append({"file_path": f"./r_{view:03d}", "transform_matrix": pose.tolist()})
        (folder / "transforms.json").write_text(json.dumps({"camera_angle_x": 0.69, "frames": frames}))
    (root / "chair_splits.json").write_text(json.dumps({"train": [], "val": [], "test": ids}))
    return root


def tiny_nvs_config(root, n_support: int = 1) -> Config:
    return helpers.tiny_nvs_config(root, n_support, SIZE, TRAIN_VIEWS)


def first_batch(dataset, n: int):
    return default_collate([dataset[i] for i in range(n)])


def test_a_few_training_steps_write_results_figure_and_turntable(views_root, ood_root, tmp_path):
    config = tiny_nvs_config(views_root)
    config.data.ood_root = str(ood_root)
    results = train(config, tmp_path / "run", device="cpu", progress=False)
    assert results["steps"] == 3
    assert math.isfinite(results["test_psnr_mean"]) and results["test_items"] == 1
    assert 0 < results["blank_white_psnr"] < 60
    assert len(results["test_psnr_per_object"]) == 1
    # The out-of-distribution objects, scored on the same held-out views, with their own floor.
    assert results["ood_items"] == OOD_OBJECTS and math.isfinite(results["ood_psnr_mean"])
    assert results["ood_psnr_se"] == pytest.approx(results["ood_psnr_std"] / math.sqrt(OOD_OBJECTS))
    ood_set = build_ood_dataset(config)
    assert results["ood_blank_white_psnr"] == pytest.approx(build_task(config).blank_white_psnr(ood_set))
    assert results["ood_blank_white_psnr"] != pytest.approx(results["blank_white_psnr"])
    assert (tmp_path / "run" / "samples.png").is_file()
    with Image.open(tmp_path / "run" / "turntable.gif") as gif:
        assert gif.n_frames == config.nvs.turntable_frames

    # Evaluation after test-time optimisation, switched on by overrides as on the command line.
    scores = evaluate_checkpoint(tmp_path / "run" / "checkpoint.pt", device="cpu",
                                 overrides=["nvs.evaluate_with_tto=true", "nvs.tto_steps=2"])
    assert scores["tto_steps"] == 2 and math.isfinite(scores["psnr_mean"])
    assert (tmp_path / "run" / "samples_tto.png").is_file()
    assert json.loads((tmp_path / "run" / "evaluation_test.json").read_text())["tto_steps"] == 2


def test_held_out_views_are_the_same_for_one_and_two_support_views(views_root):
    one = build_view_dataset(tiny_nvs_config(views_root, 1), "test")
    two = build_view_dataset(tiny_nvs_config(views_root, 2), "test")
    assert one.query_views_of(0) == two.query_views_of(0) == [4, 5]
    item = two[0]
    assert item["support_rgb"].shape == (2, 3, SIZE, SIZE)
    assert item["query_rgb"].shape == (2, 3, SIZE, SIZE)
    capped = tiny_nvs_config(views_root)
    capped.nvs.eval_views = 1
    assert len(build_view_dataset(capped, "test").query_views_of(0)) == 1


def test_foreground_rays_only_in_the_first_epochs(views_root):
    config = tiny_nvs_config(views_root)
    config.nvs.foreground_fraction, config.nvs.foreground_epochs, config.nvs.train_rays = 1.0, 2, 256
    dataset = build_view_dataset(config, "train")
    dataset.set_epoch(1)
    assert dataset.foreground_fraction == 1.0
    rays = dataset[0]["query_rgb"]  # (R, 3)
    assert (rays < 1.0).any(dim=-1).all(), "every ray should hit the object while the schedule is on"
    dataset.set_epoch(2)
    assert dataset.foreground_fraction == 0.0
    torch.manual_seed(0)
    rays = dataset[0]["query_rgb"]
    assert (rays == 1.0).all(dim=-1).any(), "rays anywhere in the view also hit the white background"


def test_rendered_novel_views_have_the_requested_shape(views_root):
    config = tiny_nvs_config(views_root)
    task = build_task(config)
    test_set = build_view_dataset(config, "test")
    model = build_model(config, SIZE).eval()
    batch = first_batch(test_set, 1)
    with torch.no_grad():
        weights = task.generate(model, batch)
    image = render_novel_view(model, weights, batch["query_poses"][:, 0], batch["focal"], 12, 20,
                              near=3.0, far=5.0, n_samples=8)
    assert image.shape == (1, 3, 12, 20)
    assert image.min() >= 0 and image.max() <= 1
    views = task.render_query_views(model, batch, weights)
    assert views.shape == batch["query_rgb"].shape


def test_test_time_optimisation_lowers_the_support_ray_error(views_root):
    torch.manual_seed(0)
    config = tiny_nvs_config(views_root)
    task = build_task(config)
    model = build_model(config, SIZE).eval()
    batch = first_batch(build_view_dataset(config, "test"), 1)
    with torch.no_grad():
        weights = task.generate(model, batch)
    kept = [w.clone() for w in weights]
    origins, directions, colours = support_rays(batch)
    before = support_mse(model.hyponet, weights, origins, directions, colours, 3.0, 5.0, 16)
    tuned = optimise_on_support_views(model.hyponet, weights, origins, directions, colours, 3.0, 5.0,
                               steps=30, lr=1e-2, n_rays=128, n_samples=16, progress=False)
    after = support_mse(model.hyponet, tuned, origins, directions, colours, 3.0, 5.0, 16)
    assert after.item() < 0.7 * before.item()
    # The generated weights are a starting point, never modified in place.
    assert all(torch.equal(a, b) for a, b in zip(weights, kept))
    assert [w.shape for w in tuned] == [w.shape for w in weights]


def test_two_support_views_give_twice_the_data_tokens(views_root):
    config = tiny_nvs_config(views_root, n_support=2)
    batch = first_batch(build_view_dataset(config, "train"), 2)
    model = build_model(config, SIZE)
    assert batch["support_rgb"].shape == (2, 2, 3, SIZE, SIZE)
    two = model.tokenizer(batch["support_rgb"], batch["support_rays_o"], batch["support_rays_d"])
    one = model.tokenizer(batch["support_rgb"][:, :1], batch["support_rays_o"][:, :1],
                          batch["support_rays_d"][:, :1])
    assert two.shape[1] == 2 * one.shape[1] == 2 * (SIZE // 8) ** 2
    loss, psnr = build_task(config).training_loss(model, batch, epoch=0)
    assert loss.ndim == 0 and math.isfinite(psnr)


def test_ood_objects_are_read_like_the_test_split(views_root, ood_root):
    config = tiny_nvs_config(views_root, n_support=2)
    assert build_ood_dataset(config) is None  # data.ood_root unset: no OOD row
    config.data.ood_root = str(ood_root)
    ood_set, test_set = build_ood_dataset(config), build_view_dataset(config, "test")
    assert [o["id"] for o in ood_set.objects] == [f"thing_{k}" for k in range(OOD_OBJECTS)]
    assert ood_set.query_views_of(0) == test_set.query_views_of(0) == [4, 5]
    assert ood_set[0]["support_rgb"].shape == test_set[0]["support_rgb"].shape == (2, 3, SIZE, SIZE)
    config.nvs.eval_views = 1
    assert build_ood_dataset(config).query_views_of(0) == test_set.query_views_of(0)[:1]


def test_ood_split_all_scores_every_object_of_the_folder(views_root, tmp_path):
    """A folder no model trained on is scored whole with data.ood_split=all; any other
    value is an error naming the key."""
    config = tiny_nvs_config(views_root)
    config.data.ood_root = str(views_root)  # the embedded chairs, standing in for an OOD set
    test_only = {o["id"] for o in build_ood_dataset(config).objects}
    config.data.ood_split = "all"
    every = {o["id"] for o in build_ood_dataset(config).objects}
    splits = json.loads(next(views_root.glob("chair_splits.json")).read_text())
    assert test_only == set(splits["test"]) and every == set(splits["train"] + splits["val"] + splits["test"])
    assert build_ood_dataset(config).split == "all"
    config.data.ood_split = "train"
    with pytest.raises(ConfigError, match="data.ood_split must be 'test' or 'all'"):
        build_ood_dataset(config)


def test_train_sources_add_their_train_objects_and_leave_held_out_splits_alone(views_root, ood_root, tmp_path):
    config = tiny_nvs_config(views_root)
    alone = build_view_dataset(config, "train")
    (tmp_path / "lamps" / "lamp").mkdir(parents=True)  # another category, under another root
    for thing in ood_root.joinpath("chair").iterdir():
        (tmp_path / "lamps" / "lamp" / thing.name).symlink_to(thing)
    ids = [p.name for p in ood_root.joinpath("chair").iterdir()]
    (tmp_path / "lamps" / "lamp_splits.json").write_text(json.dumps({"train": ids, "val": [], "test": []}))
    config.data.train_sources = [f"{tmp_path / 'lamps'}:lamp"]
    mixed = build_view_dataset(config, "train")
    assert [o["id"] for o in mixed.objects] == [o["id"] for o in alone.objects] + sorted(ids, key=ids.index)
    assert mixed[len(alone.objects)]["support_rgb"].shape == alone[0]["support_rgb"].shape
    assert [o["id"] for o in build_view_dataset(config, "test").objects] == \
        [o["id"] for o in build_view_dataset(tiny_nvs_config(views_root), "test").objects]
    config.data.train_sources = [f"{tmp_path / 'lamps'}:sofa"]
    with pytest.raises(ConfigError, match=r"data.train_sources entry .*lamps:sofa.*holds no 'sofa' objects"):
        build_view_dataset(config, "train")


def test_a_missing_ood_folder_is_one_error_naming_it_and_its_build_command(views_root, tmp_path):
    config = tiny_nvs_config(views_root)
    config.data.ood_root = str(tmp_path / "no_such_folder")
    for build in (lambda: build_view_dataset(config, "train"), lambda: build_ood_dataset(config)):
        with pytest.raises(ConfigError, match=r"data.ood_root.*no_such_folder does not exist.*"
                                              r"build-3d --source sweethome3d"):
            build()
    (tmp_path / "empty").mkdir()
    config.data.ood_root = str(tmp_path / "empty")
    with pytest.raises(ConfigError, match="holds no 'chair' objects in the learnit layout"):
        build_view_dataset(config, "test")


def test_object_psnr_averages_view_psnrs_and_the_standard_error_counts_objects(views_root, ood_root):
    # Object 0: one perfect-ish view and one poor one; its PSNR is the mean of the two view
    # PSNRs (not the PSNR of the pooled error, which the poor view would dominate).
    target = torch.full((2, 2, 3, 4, 4), 0.5)
    rendered = target.clone()
    rendered[0, 0] += 0.01
    rendered[0, 1] += 0.3
    rendered[1] += 0.1
    view_psnr = [-10 * math.log10(0.01 ** 2), -10 * math.log10(0.3 ** 2)]
    scores = object_psnr(rendered, target)
    assert scores[0].item() == pytest.approx(sum(view_psnr) / 2, rel=1e-4)
    assert scores[0].item() > -10 * math.log10((0.01 ** 2 + 0.3 ** 2) / 2) + 5
    assert scores[1].item() == pytest.approx(20.0, rel=1e-4)

    # Through evaluate_split, in batches that mix objects: one score per object.
    torch.manual_seed(0)
    config = tiny_nvs_config(views_root)
    config.data.ood_root = str(ood_root)
    task, model = build_task(config), build_model(config, SIZE).eval()
    ood_set = build_ood_dataset(config)
    result = evaluate_split(task, model, ood_set, "cpu", batch_size=2)
    assert result["n"] == OOD_OBJECTS and len(result["per_item"]) == OOD_OBJECTS
    assert result["psnr_se"] == pytest.approx(result["psnr_std"] / math.sqrt(OOD_OBJECTS))
    batch = first_batch(ood_set, OOD_OBJECTS)
    with torch.no_grad():
        rendered = task.render_query_views(model, batch, task.generate(model, batch))
    expected = object_psnr(rendered, batch["query_rgb"])
    assert result["per_item"] == pytest.approx(expected.tolist(), rel=1e-4)


def test_support_view_use_given_the_first_view_matches_the_one_view_protocol(views_root):
    from transinr.analysis import camera_angles, support_view_use

    torch.manual_seed(0)
    config = tiny_nvs_config(views_root, n_support=2)
    task, model = build_task(config), build_model(config, SIZE).eval()
    batch = first_batch(build_view_dataset(config, "test"), 1)
    use = support_view_use(task, model, batch)
    assert use["angles"].shape == (1, 2, 2)  # held-out views 4, 5 against support views 0, 1
    assert camera_angles(batch["support_poses"], batch["support_poses"]).diagonal(dim1=1, dim2=2).abs().max() < 0.1
    assert set(use["held_out"]) == set(use["support"]) == {(0, 1), (0,), (1,)}
    assert use["support"][(0, 1)].shape == (1, 2)
    # Given only view 0, the scores are those of the 1-view evaluation of the same object.
    one_view = tiny_nvs_config(views_root, n_support=1)
    with torch.no_grad():
        expected = task.psnr(model, first_batch(build_view_dataset(one_view, "test"), 1))
    assert use["held_out"][(0,)].mean(1).tolist() == pytest.approx(expected.tolist(), rel=1e-5)
    assert not torch.allclose(use["held_out"][(0,)], use["held_out"][(1,)])
    # The mean of two single-view weight sets: with view 0 in both slots it is view 0's own NeRF.
    support_keys = ("support_rgb", "support_rays_o", "support_rays_d", "support_poses")
    twice_view_0 = dict(batch, **{key: batch[key][:, [0, 0]] for key in support_keys})
    same = support_view_use(task, model, twice_view_0)
    assert same["midpoint_held_out"] == pytest.approx(same["held_out"][(0,)], rel=1e-5)
    assert use["midpoint_held_out"].shape == (1, 2) and use["midpoint_distance"].shape == (1,)


def test_input_dependence_tells_a_model_that_reads_its_views_from_one_that_ignores_them(views_root, ood_root):
    """Swapping support views between objects moves a (random) Trans-INR's renders; with its
    data tokens zeroed it writes the same NeRF whatever it is shown, and the measure says so."""
    from transinr.analysis import input_dependence

    config = tiny_nvs_config(views_root)
    config.data.ood_root = str(ood_root)
    task = build_task(config)
    torch.manual_seed(0)
    model = build_model(config, SIZE).eval()
    batch = first_batch(build_ood_dataset(config), OOD_OBJECTS)
    with torch.no_grad():
        reads = input_dependence(task, model, batch)
        assert (reads["render_change"] > 1e-4).all() and (reads["truth_change"] > 1e-2).all()
        assert not torch.allclose(reads["own"], reads["other"])
        model.tokenizer.image.project.weight.zero_()
        model.tokenizer.image.project.bias.zero_()
        ignores = input_dependence(task, model, batch)
    assert ignores["render_change"].max() < 1e-6
    assert ignores["own"].tolist() == pytest.approx(ignores["other"].tolist(), abs=1e-4)
    with pytest.raises(ValueError, match="at least two objects"):
        input_dependence(task, model, first_batch(build_ood_dataset(config), 1))


def test_views_used_reports_each_subset_of_the_support_views(views_root, tmp_path, capsys):
    """`python -m transinr views-used RUN` on a tiny 2-view run: the held-out figure given
    view 0 alone is the 1-view evaluation's, and the attention shares sum to one per layer."""
    from transinr.cli import main
    from transinr.views_used import measure

    config = tiny_nvs_config(views_root, n_support=2)
    train(config, tmp_path / "run", device="cpu", progress=False)
    result = measure(tmp_path / "run")
    one_view = evaluate_checkpoint(tmp_path / "run" / "checkpoint.pt", device="cpu", out_dir=tmp_path / "one",
                                   overrides=["data.n_support=1"])
    assert result["objects"] == 1 and set(result["held_out"]) == {"0+1", "0", "1"}
    assert result["held_out"]["0"] == pytest.approx(one_view["psnr_mean"], rel=1e-5)
    assert len(result["attention"]) == config.model.depth
    assert all(sum(row) == pytest.approx(1.0, abs=1e-4) for row in result["attention"])
    main(["views-used", str(tmp_path / "run"), "--out", str(tmp_path / "used.json")])
    assert "second view, feed-forward" in capsys.readouterr().out
    assert math.isnan(result["other_object"]["held_out"])  # one test object: no other to swap with
    assert json.loads((tmp_path / "used.json").read_text())["held_out"] == pytest.approx(result["held_out"])
    assert sum(row["objects"] for row in result["by_separation"]) == 1
    assert result["per_object"]["0+1"] == [pytest.approx(result["held_out"]["0+1"])]
    assert math.isfinite(result["midpoint"]["held_out"]) and result["midpoint"]["distance"] >= 0


def test_second_view_gains_are_binned_by_the_support_cameras_separation():
    """Each object lands in the bin of its support cameras' angle (180° included in the last);
    the gain over the better view uses whichever single view scored higher."""
    from transinr.views_used import gains_by_separation

    rows = gains_by_separation({"separation": [10.0, 50.0, 170.0, 180.0], "0+1": [20.0, 20.0, 22.0, 21.0],
                                "0": [19.0, 20.5, 20.0, 20.0], "1": [19.5, 19.0, 21.0, 20.0]})
    assert [row["objects"] for row in rows] == [1, 1, 0, 2]
    assert rows[0]["second_view"] == pytest.approx(1.0) and rows[0]["over_better_view"] == pytest.approx(0.5)
    assert rows[1]["over_better_view"] == pytest.approx(-0.5)
    assert rows[3]["second_view"] == pytest.approx(1.5) and rows[3]["over_better_view"] == pytest.approx(1.0)
    assert math.isnan(rows[2]["second_view"])


def test_a_first_view_camera_and_fixed_training_support_give_every_object_the_same_input_camera(tmp_path):
    """`build-3d --first-view AZ EL` puts view 0 of every object at one camera (the others stay
    random), and nvs.train_support=fixed trains on that view as the test split scores it."""
    from transinr.data.procedural_shapes import cli_main as build_3d

    root = tmp_path / "view0"
    build_3d(["--objects", "4", "--views", str(N_VIEWS), "--resolution", str(SIZE), "--categories", "chair",
              "--first-view", "30", "20", "--out", str(root)])
    frames = [json.loads((d / "transforms.json").read_text())["frames"] for d in sorted((root / "chair").iterdir())]
    assert all((f[0]["azimuth_deg"], f[0]["elevation_deg"]) == (30.0, 20.0) for f in frames)
    assert len({f[1]["azimuth_deg"] for f in frames}) == len(frames)  # view 1 still random
    assert json.loads((root / "build_info.json").read_text())["first_view"] == [30.0, 20.0]

    config = tiny_nvs_config(root)
    config.nvs.train_support = "fixed"
    train_set = build_view_dataset(config, "train")
    for _ in range(4):
        item = train_set[0]
        assert torch.equal(item["support_poses"][0], torch.tensor(frames[0][0]["transform_matrix"]).float())
        assert not torch.equal(item["query_poses"][0], item["support_poses"][0])
    config.nvs.train_support = "canonical"
    with pytest.raises(ConfigError, match="nvs.train_support"):
        build_view_dataset(config, "train")


def test_supervising_the_support_views_draws_training_rays_from_them_too(views_root):
    config = tiny_nvs_config(views_root, n_support=2)
    config.nvs.train_rays, config.nvs.foreground_epochs = 256, 0
    torch.manual_seed(0)
    plain = build_view_dataset(config, "train")[0]
    assert plain["query_poses"].shape == (1, 4, 4)
    assert not any(torch.equal(plain["query_poses"][0], pose) for pose in plain["support_poses"])

    config.nvs.supervise_support_views = True
    torch.manual_seed(0)
    item = build_view_dataset(config, "train")[0]
    assert item["query_poses"].shape == (3, 4, 4)
    assert torch.equal(item["query_poses"][1:], item["support_poses"])
    # Every ray starts at one of the three query cameras, and each camera sends some.
    centres = item["query_poses"][:, :3, 3]  # (3, 3)
    nearest = torch.cdist(item["query_rays_o"], centres).argmin(dim=1)
    assert torch.cdist(item["query_rays_o"], centres).min(dim=1).values.max() < 1e-4
    assert set(nearest.tolist()) == {0, 1, 2}


def test_the_training_probe_logs_input_dependence_from_initialisation_on_and_changes_no_step(views_root, tmp_path):
    """``train.probe_every`` logs, at step 0 and every N steps, how far the renders of held-out
    objects move when their views are swapped; a probed run takes exactly the unprobed run's steps."""
    import shutil

    root = tmp_path / "views"
    shutil.copytree(views_root, root)
    splits = json.loads((root / "chair_splits.json").read_text())
    splits["test"] = splits["val"] + splits["test"]  # the probe swaps views between two objects
    (root / "chair_splits.json").write_text(json.dumps(splits))
    runs = {}
    for probe_every in (None, 2):
        config = tiny_nvs_config(root)
        config.train.probe_every, config.train.log_every = probe_every, 1
        train(config, tmp_path / f"run_{probe_every}", device="cpu", progress=False, evaluate_at_end=False)
        runs[probe_every] = helpers.read_metrics(tmp_path / f"run_{probe_every}")
    losses = {every: [r["loss"] for r in records if "loss" in r] for every, records in runs.items()}
    assert len(losses[2]) == 3 and losses[2] == losses[None]
    probes = [r for r in runs[2] if r.get("split") == "probe"]
    assert [r["step"] for r in probes] == [0, 2, 3]
    for record in probes:
        assert record["truth_change"] > 1e-2 and record["render_change"] > 0
        assert record["dependence"] == pytest.approx(record["render_change"] / record["truth_change"], rel=1e-3)
        assert math.isfinite(record["own_psnr"]) and math.isfinite(record["other_psnr"])
        assert len(record["data_attention"]) == config.model.depth
        assert all(0 < share < 1 for share in record["data_attention"])
    assert not [r for r in runs[None] if r.get("split") == "probe"]
    # so a run, or a study's run, may be probed when resumed without counting as another run
    from transinr.train import run_config_changes

    stored = yaml.safe_load((tmp_path / "run_None" / "config.yaml").read_text())
    assert run_config_changes(stored, config, "config.yaml") == []


def test_the_embedded_sets_size_counts_as_a_change_only_where_it_is_read():
    """A run trained on a folder (data.root) is the same run whatever data.n_objects says:
    the 3D study's runs stay finished when the configs' default size changes."""
    from transinr.config import config_to_dict
    from transinr.train import run_config_changes

    config = load_config("shapes3d_chairs_1view", ["data.root=data/some_chairs"])
    stored = config_to_dict(config)
    stored["data"].pop("n_objects")  # a run written before the key existed
    assert run_config_changes(stored, config, "config.yaml") == []
    embedded = load_config("shapes3d_chairs_1view", ["data.n_objects=100"])
    assert run_config_changes(config_to_dict(embedded), load_config("shapes3d_chairs_1view"),
                              "config.yaml") == ["data.n_objects: 100 → 1000"]


def test_the_input_dependence_probe_is_refused_for_an_image_task():
    config = helpers.tiny_image_config()
    config.train.probe_every = 10
    with pytest.raises(ConfigError, match="train.probe_every"):
        from transinr.config_checks import validate

        validate(config)

import csv
import json

import numpy as np
import pytest
import yaml
from PIL import Image

from transinr.compare import check_comparable, cli_main, compare, lower_median, time_to_reach, write_csv
from transinr.config import ConfigError, config_to_dict

from .helpers import smooth_images, tiny_image_config

N_IMAGES = 40  # the folder's hash split puts 5 of these names in the test split


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("pictures")
    for index, image in enumerate(smooth_images(N_IMAGES, seed=11)):
        pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(root / f"picture_{index:03d}.png")
    return root


def folder_config(root, name: str, model: str, **model_fields):
    config = tiny_image_config(max_images=16, checkpoint_every=1000, figure_images=2)
    config.name = name
    config.data.name, config.data.root = "folder", str(root)
    config.train.device = "cpu"
    config.model.name = model
    for key, value in model_fields.items():
        setattr(config.model, key, value)
    return config


def test_configs_must_share_data_and_budget(image_folder):
    a = folder_config(image_folder, "a", "trans_inr")
    b = folder_config(image_folder, "b", "learned_init")
    assert check_comparable([a, b], train_size=35) == 16
    b.train.batch_size = 4  # 4 steps × 4 = 16 signals: still the same budget
    assert check_comparable([a, b], train_size=35) == 16
    b.data.resolution = 16
    b.train.max_images = 32
    with pytest.raises(ConfigError, match=r"data.resolution differs \(a: 32; b: 16\).*training signals seen"):
        check_comparable([a, b], train_size=35)
    with pytest.raises(ConfigError, match="share the name"):
        check_comparable([a, folder_config(image_folder, "a", "single_vector")], train_size=35)


def test_time_to_reach_takes_the_first_record_at_or_above_the_target():
    import torch

    trajectory = {"steps": [0, 10, 20], "seconds": [0.0, 2.0, 4.0],
                  "psnr": [[10.0, 10.0], [15.0, 11.0], [21.0, 12.0]]}
    seconds, steps = time_to_reach(trajectory, torch.tensor([15.0, 20.0]))
    assert seconds.tolist() == [1.0, float("inf")]  # batch time / 2 signals
    assert steps.tolist() == [10.0, float("inf")]
    assert lower_median(torch.tensor([1.0, float("inf")])) == 1.0
    assert lower_median(torch.tensor([1.0, float("inf"), float("inf")])) == float("inf")


def test_compare_writes_both_tables(image_folder, tmp_path):
    configs = [folder_config(image_folder, "tiny_trans_inr", "trans_inr"),
               folder_config(image_folder, "tiny_learned_init", "learned_init"),
               folder_config(image_folder, "tiny_single_vector", "single_vector", latent_dim=8),
               folder_config(image_folder, "tiny_pattern", "instance_pattern")]
    out = compare(configs, tmp_path / "cmp", progress=False, time_signals=3, scratch_steps=6, record_every=2)

    markdown = (tmp_path / "cmp" / "results.md").read_text()
    for label in ("Trans-INR", "Learned Init", "Single-vector hypernetwork", "Instance pattern composer",
                  "Fitting from scratch", "Time to reach PSNR", "Held-out PSNR"):
        assert label in markdown
    with open(tmp_path / "cmp" / "results.csv") as file:
        rows = list(csv.DictReader(file))
    assert [r["config"] for r in rows] == [c.name for c in configs]
    assert all(r["training_signals"] == "16" and float(r["parameters"]) > 0 for r in rows)
    assert float(rows[1]["parameters"]) < float(rows[0]["parameters"])  # θ_0 alone is small

    time_rows = {r["method"]: r for r in out["time_rows"]}
    assert len(time_rows) == 5
    reference = time_rows["Trans-INR (tiny_trans_inr)"]
    assert reference["signals_reaching_target"] == 3 and reference["ratio_to_reference"] == 1.0
    assert time_rows["Learned Init (tiny_learned_init)"]["procedure"].startswith("2 SGD steps")
    trajectories = json.loads((tmp_path / "cmp" / "trajectories.json").read_text())
    assert trajectories["trajectories"]["Fitting from scratch"]["steps"] == [0, 2, 4, 6]
    assert (tmp_path / "cmp" / "psnr_vs_time.png").stat().st_size > 0
    assert (tmp_path / "cmp" / "time_to_psnr.csv").exists()


def test_cli_reuses_finished_runs_and_applies_shared_overrides(image_folder, tmp_path, capsys):
    paths = []
    for name, model in (("cli_trans_inr", "trans_inr"), ("cli_learned_init", "learned_init")):
        config = folder_config(image_folder, name, model)
        config.train.max_images = 999  # overridden below, for both alike
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config_to_dict(config)))
        paths.append(str(path))
    out = tmp_path / "cli"
    args = paths + ["train.max_images=8", "--out", str(out), "--quiet", "--time-signals", "2",
                    "--scratch-steps", "2", "--record-every", "1", "--target-psnr", "5"]
    cli_main(args)
    first = (out / "runs" / "cli_trans_inr" / "metrics.jsonl").read_text()
    printed = capsys.readouterr().out
    assert "5.00 dB" in printed and "| Learned Init |" in printed
    cli_main(args)  # a second run resumes the finished checkpoints: no new training steps
    assert (out / "runs" / "cli_trans_inr" / "metrics.jsonl").read_text().count('"images_seen"') \
        == first.count('"images_seen"')
    with open(out / "results.csv") as file:
        assert {r["training_signals"] for r in csv.DictReader(file)} == {"8"}


def test_view_synthesis_configs_may_differ_in_support_views_only(image_folder, tmp_path):
    from .helpers import tiny_nvs_config

    one, two = tiny_nvs_config(tmp_path, n_support=1), tiny_nvs_config(tmp_path, n_support=2)
    assert check_comparable([one, two], train_size=4) == one.train.max_images
    two.data.category = "lamp"
    with pytest.raises(ConfigError, match=r"data.category differs"):
        check_comparable([one, two], train_size=4)
    # Images have no held-out views that stay fixed: there the key must still agree.
    a = folder_config(image_folder, "a", "trans_inr")
    b = folder_config(image_folder, "b", "trans_inr")
    b.data.n_support = 2
    with pytest.raises(ConfigError, match=r"data.n_support differs"):
        check_comparable([a, b], train_size=35)


def test_view_synthesis_compare_table_ranks_1_and_2_views_with_standard_errors(tmp_path):
    from transinr.data.procedural_shapes import build_embedded_3d

    from .helpers import tiny_nvs_config

    # 30 chairs split 24 / 3 / 3, so the held-out mean has a standard error over 3 objects.
    root = tmp_path / "views"
    build_embedded_3d(root, n_objects_per_category=30, n_views=6, resolution=16, categories=("chair",))
    configs = []
    for views in (1, 2):
        config = tiny_nvs_config(root, n_support=views, turntable_frames=2)
        config.name, config.train.max_images, config.nvs.eval_views = f"views_{views}", 4, 1
        config.data.ood_root = str(root)  # the test chairs again, standing in for an OOD set
        configs.append(config)
    out = compare(configs, tmp_path / "cmp", progress=False)
    rows = {r["config"]: r for r in out["rows"]}
    assert rows["views_1"]["method"] == "Trans-INR (1 view)" and rows["views_2"]["method"] == "Trans-INR (2 views)"
    markdown = out["markdown"]
    assert "mean ± standard error over the 3 test objects" in markdown
    for row in rows.values():
        results = json.loads((tmp_path / "cmp" / "runs" / row["config"] / "results.json").read_text())
        assert row["test_signals"] == row["ood_signals"] == 3
        assert row["test_psnr_se"] == pytest.approx(results["test_psnr_std"] / 3 ** 0.5, abs=1e-3)
        cells = f"| {row['test_psnr_mean']:.2f} ± {row['test_psnr_se']:.2f} |"
        assert cells in markdown and f"| {row['ood_psnr_mean']:.2f} ± {row['ood_psnr_se']:.2f} |" in markdown
    first = json.loads((tmp_path / "cmp" / "runs" / "views_1" / "results.json").read_text())
    assert f"a blank white image scores {first['ood_blank_white_psnr']:.2f} dB" in markdown


def test_write_csv_keeps_fields_that_only_later_rows_have(tmp_path):
    # A study table mixes rows recorded by an older release with new ones that carry more fields.
    rows = [{"config": "old", "test_psnr_mean": 21.2},
            {"config": "new", "test_psnr_mean": 23.3, "ood_split": "test"}]
    write_csv(tmp_path / "table.csv", rows)
    with (tmp_path / "table.csv").open() as file:
        read = list(csv.DictReader(file))
    assert list(read[0]) == ["config", "test_psnr_mean", "ood_split"]
    assert read[0]["ood_split"] == "" and read[1]["ood_split"] == "test"

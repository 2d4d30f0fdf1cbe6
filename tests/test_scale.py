"""The scaling study: runs planned per budget and size, tables written, finished runs skipped."""

from __future__ import annotations

import json

import pytest
import yaml

from transinr import scale
from transinr.config import ConfigError, config_to_dict

from .helpers import folder_config


def write_study(tmp_path, image_folder):
    base = folder_config(image_folder, checkpoint_every=1000)
    base.train.device = "cpu"
    paths = {}
    for method in ("trans_inr", "single_vector"):
        config = config_to_dict(base)
        config["model"]["name"], config["name"] = method, method
        paths[method] = tmp_path / f"{method}.yaml"
        paths[method].write_text(yaml.safe_dump(config))
    study = {"name": "tiny", "budgets": [16, 8], "overrides": ["data.ood=null"],
             "methods": {k: str(v) for k, v in paths.items()},
             "sizes_for": "trans_inr", "sizes": {"wide": ["model.dim=48"]}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def test_study_trains_each_run_once_and_writes_the_tables(tmp_path, image_folder, one_thread, monkeypatch):
    study = scale.load_study(write_study(tmp_path, image_folder))
    runs = scale.plan_runs(study)
    assert [r.config.name for r in runs] == ["trans_inr_8", "single_vector_8", "trans_inr_wide_8",
                                             "trans_inr_16", "single_vector_16", "trans_inr_wide_16"]
    assert runs[2].config.model.dim == 48 and runs[0].config.model.dim == 32
    rows = scale.run_study(study, tmp_path / "out", runs, progress=False)
    assert [r["training_signals"] for r in rows] == [8, 8, 8, 16, 16, 16]
    table = json.loads((tmp_path / "out" / "scale.json").read_text())
    assert table == json.loads(json.dumps(rows))
    assert (tmp_path / "out" / "scale.png").stat().st_size > 0
    assert "trans_inr_wide_16" in (tmp_path / "out" / "scale.md").read_text()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(scale, "train", no_training)
    again = scale.run_study(study, tmp_path / "out", runs, progress=False)
    assert [r["test_psnr_mean"] for r in again] == [r["test_psnr_mean"] for r in rows]


def test_bad_study_files_name_the_key(tmp_path, image_folder):
    path = write_study(tmp_path, image_folder)
    values = yaml.safe_load(path.read_text())
    values["budget"] = [1]
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(ConfigError, match="unknown key.*budget"):
        scale.load_study(path)
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        scale.plan_runs(scale.load_study(write_study(tmp_path, image_folder)), methods=["nope"])


def test_a_later_budget_keeps_the_rows_of_an_earlier_one(tmp_path, image_folder, one_thread):
    """Running a study one budget at a time must not drop the finished budgets from the tables."""
    study = scale.load_study(write_study(tmp_path, image_folder))
    every_run = scale.plan_runs(study, sizes=[])
    first = scale.plan_runs(study, budgets=[8], sizes=[])
    scale.run_study(study, tmp_path / "out", first, progress=False, report_runs=every_run)
    table = json.loads((tmp_path / "out" / "scale.json").read_text())
    assert [(r["config"], r["budget"]) for r in table] == [("trans_inr_8", 8), ("single_vector_8", 8)]
    second = scale.plan_runs(study, budgets=[16], methods=["trans_inr"], sizes=[])
    rows = scale.run_study(study, tmp_path / "out", second, progress=False, report_runs=every_run)
    assert [r["config"] for r in rows] == ["trans_inr_8", "single_vector_8", "trans_inr_16"]
    assert "single_vector_8" in (tmp_path / "out" / "scale.md").read_text()


def test_a_budget_outside_the_study_is_trained_and_reported(tmp_path, image_folder, one_thread):
    """``--budgets`` may probe a budget the study file does not list; its rows must reach the tables."""
    study = scale.load_study(write_study(tmp_path, image_folder))
    every_run = scale.plan_runs(study, sizes=[])
    probe = scale.plan_runs(study, budgets=[4], methods=["trans_inr"], sizes=[])
    rows = scale.run_study(study, tmp_path / "out", probe, progress=False, report_runs=every_run)
    assert [(r["config"], r["budget"]) for r in rows] == [("trans_inr_4", 4)]
    assert "trans_inr_4" in (tmp_path / "out" / "scale.md").read_text()


def test_recorded_rows_outlive_their_run_folders(tmp_path, image_folder, one_thread, monkeypatch):
    """On a machine without the checkpoints, the committed table keeps its rows and adds the new runs."""
    study = scale.load_study(write_study(tmp_path, image_folder))
    every_run = scale.plan_runs(study, sizes=[])
    first = scale.plan_runs(study, budgets=[8], sizes=[])
    scale.run_study(study, tmp_path / "out", first, progress=False, runs_dir=tmp_path / "old_runs",
                    report_runs=every_run)
    recorded = json.loads((tmp_path / "out" / "scale.json").read_text())

    trained = []
    real_train = scale.train
    monkeypatch.setattr(scale, "train", lambda config, *a, **k: trained.append(config.name) or
                        real_train(config, *a, **k))
    second = scale.plan_runs(study, sizes=[])  # both budgets; the 8s are recorded, their folders elsewhere
    rows = scale.run_study(study, tmp_path / "out", second, progress=False, runs_dir=tmp_path / "new_runs",
                           report_runs=every_run)
    assert trained == ["trans_inr_16", "single_vector_16"]
    assert rows[:2] == recorded
    assert [r["config"] for r in rows] == ["trans_inr_8", "single_vector_8", "trans_inr_16", "single_vector_16"]
    (tmp_path / "out" / "scale.json").write_text("{not json")
    with pytest.raises(ConfigError, match="scale.json"):
        scale.run_study(study, tmp_path / "out", second, progress=False, runs_dir=tmp_path / "new_runs")


def test_a_run_saved_before_a_config_key_existed_still_counts_as_finished(tmp_path, image_folder, one_thread,
                                                                           monkeypatch):
    study = scale.load_study(write_study(tmp_path, image_folder))
    runs = scale.plan_runs(study, budgets=[8], methods=["trans_inr"], sizes=[])
    scale.run_study(study, tmp_path / "out", runs, progress=False)
    config_path = tmp_path / "out" / "runs" / "trans_inr_8" / "config.yaml"
    stored = yaml.safe_load(config_path.read_text())
    del stored["data"]["augment"]["extra_artwork"]  # as written before the key existed
    config_path.write_text(yaml.safe_dump(stored))
    assert scale.finished_results(runs[0], config_path.parent) is not None
    stored["model"]["dim"] = 48  # a real change is still a different run
    config_path.write_text(yaml.safe_dump(stored))
    assert scale.finished_results(runs[0], config_path.parent) is None


def test_a_view_synthesis_study_runs_and_may_vary_the_render_convention(tmp_path, one_thread):
    """A 3D study: models sized from the posed views; the volume-rendering convention is
    part of a method, so runs that differ in it share one table."""
    from transinr.data.procedural_shapes import build_embedded_3d

    from .helpers import tiny_nvs_config, write_config_yaml

    root = tmp_path / "views"
    build_embedded_3d(root, n_objects_per_category=4, n_views=6, resolution=16, categories=("chair",))
    config = tiny_nvs_config(root, turntable_frames=2)
    config.nvs.eval_views = 1
    path = write_config_yaml(config, tmp_path / "nvs.yaml")
    study_path = tmp_path / "study.yaml"
    study_path.write_text(yaml.safe_dump({
        "name": "tiny_nvs", "budgets": [4], "methods": {"trans_inr": str(path)},
        "sizes_for": "trans_inr", "sizes": {"nerf": ["nvs.render_convention=nerf"]}}))
    study = scale.load_study(study_path)
    rows = scale.run_study(study, tmp_path / "out", scale.plan_runs(study), progress=False)
    assert [r["config"] for r in rows] == ["trans_inr_4", "trans_inr_nerf_4"]
    assert all(r["training_signals"] == 4 and r["test_psnr_mean"] > 0 for r in rows)


def test_a_3d_study_puts_1_and_2_views_in_one_table_with_standard_errors_and_ood(tmp_path, one_thread):
    from transinr.data.procedural_shapes import build_embedded_3d

    from .helpers import read_metrics, tiny_nvs_config, write_config_yaml

    root = tmp_path / "views"  # 30 chairs: 3 test chairs, so a standard error over objects
    build_embedded_3d(root, n_objects_per_category=30, n_views=6, resolution=16, categories=("chair",))
    methods = {}
    for views in (1, 2):
        config = tiny_nvs_config(root, n_support=views, turntable_frames=2)
        config.nvs.eval_views = 1
        methods[f"trans_inr_{views}view"] = str(write_config_yaml(config, tmp_path / f"nvs_{views}.yaml"))
    study_path = tmp_path / "study.yaml"
    study_path.write_text(yaml.safe_dump({"name": "tiny_3d", "budgets": [4], "methods": methods}))
    study = scale.load_study(study_path)
    runs = scale.plan_runs(study)
    rows = scale.run_study(study, tmp_path / "out", runs, progress=False)
    assert [r["method"] for r in rows] == ["Trans-INR (1 view)", "Trans-INR (2 views)"]
    table = (tmp_path / "out" / "scale.md").read_text()
    for row in rows:
        assert f"| {row['test_psnr_mean']:.2f} ± {row['test_psnr_se']:.2f} |" in table
        assert row["ood_psnr_mean"] is None
    assert "mean ± standard error over objects" in table

    # An OOD folder named after the runs finished: they are re-scored, not retrained.
    runs = scale.plan_runs(study, extra=[f"data.ood_root={root}"])
    run_dir = tmp_path / "out" / "runs" / runs[0].config.name
    def training_records():
        return [record for record in read_metrics(run_dir) if "loss" in record]

    trained = training_records()
    assert scale.finished_results(runs[0], run_dir) is None
    rows = scale.run_study(study, tmp_path / "out", runs, progress=False)
    assert training_records() == trained
    assert all(r["ood_signals"] == 3 and r["ood_psnr_se"] is not None for r in rows)
    table = (tmp_path / "out" / "scale.md").read_text()
    assert f"| {rows[1]['ood_psnr_mean']:.2f} ± {rows[1]['ood_psnr_se']:.2f} |" in table
    # The legend says which OOD objects were scored, from each run's results.
    assert all(r["ood_split"] == "test" for r in rows) and "OOD: the test objects of" in table
    (tmp_path / "every").mkdir()
    scale.write_tables(study, [dict(r, ood_split="all") for r in rows], tmp_path / "every")
    assert "OOD: the objects (every split) of" in (tmp_path / "every" / "scale.md").read_text()


SHIPPED_STUDIES = sorted(path.stem for path in scale.STUDY_DIR.glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED_STUDIES)
def test_every_shipped_study_plans_its_runs_with_distinct_names(name):
    # A typo in a study's overrides or sizes would otherwise surface only hours into the study.
    study = scale.load_study(name)
    runs = scale.plan_runs(study)
    names = [run.config.name for run in runs]
    assert len(names) == len(set(names)) == len(study.budgets) * (len(study.methods) + len(study.sizes))
    assert all(run.config.train.max_images == run.budget for run in runs)


def test_plot_series_keeps_two_methods_of_one_display_name_apart():
    # Both Learned Inits are shown as "Learned Init" in the table; the plot must not join them.
    def row(config, method, budget, size="config"):
        return {"config": config, "method": method, "size": size, "budget": budget}

    rows = [row("learned_init_16k", "Learned Init", 16000), row("learned_init_paper_16k", "Learned Init", 16000),
            row("learned_init_64k", "Learned Init", 64000), row("trans_inr_64k", "Trans-INR", 64000),
            row("trans_inr_p4_64k", "Trans-INR", 64000, size="p4")]
    series = scale.plot_series(rows)
    assert sorted(series) == ["Learned Init [learned_init]", "Learned Init [learned_init_paper]",
                              "Trans-INR", "Trans-INR (p4)"]
    assert [r["budget"] for r in series["Learned Init [learned_init]"]] == [16000, 64000]

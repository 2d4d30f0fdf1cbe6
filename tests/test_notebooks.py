"""The notebooks' conventions, and the one command that regenerates every figure.

The notebooks themselves run under nbval (``--nbval-lax``, see pyproject.toml); these
tests check what nbval cannot: that they are committed clean and stay thin.
"""

import json
from pathlib import Path

import matplotlib
import nbformat
import pytest
import torch

from transinr import figures
from transinr.config import config_to_dict
from transinr.models import build_model

from .helpers import tiny_image_config

matplotlib.use("Agg")
NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


def code_cells(path: Path) -> list[str]:
    return [cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]


def test_the_ordered_notebooks_exist():
    names = [path.stem for path in NOTEBOOKS]
    assert names == sorted(names) and len(names) >= 4
    assert all(name[:2].isdigit() and name[2] == "_" for name in names)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, \
                f"{path.name}: clear the outputs before committing (see notebooks/README.md)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_thin_and_has_a_smoke_switch(path):
    source = "\n".join(code_cells(path))
    assert "smoke_mode()" in source, f"{path.name} needs SMOKE = widgets.smoke_mode()"
    for forbidden in ("nn.Module", "torch.nn", "class ", "def ", ".backward("):
        assert forbidden not in source, f"{path.name}: model code belongs in transinr, found {forbidden!r}"
    assert max(len(cell.splitlines()) for cell in code_cells(path)) <= 12, f"{path.name}: a cell is long"
    if "Explorer(" in source:  # ipywidgets hides callback errors: each explorer is driven once
        assert ".value =" in source and "assert " in source and "explorer.last" in source


def write_shipped(config, path: Path) -> Path:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = build_model(config, 32)
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"config": json.dumps(config_to_dict(config)), "image_size": "32"})
    return path


def test_figures_all_writes_every_figure_as_png_and_pdf(tmp_path, capsys):
    trans_inr = write_shipped(tiny_image_config(), tmp_path / "trans_inr.safetensors")
    learned_init_config = tiny_image_config()
    learned_init_config.model.name = "learned_init"
    learned_init = write_shipped(learned_init_config, tmp_path / "learned_init.safetensors")
    out = tmp_path / "figures"
    figures.cli_main(["--all", "--smoke", "--out", str(out), "--trans-inr", str(trans_inr),
                      "--learned-init", str(learned_init)])
    expected = {"samples", "test_psnr_histogram", "weight_token_attention", "weight_group_attention",
                "layerwise_decoding", "gradient_step_attention", "weight_statistics", "weight_groups"}
    assert {p.stem for p in out.glob("*.png")} == expected
    assert {p.stem for p in out.glob("*.pdf")} == expected
    numbers = json.loads((out / "figures_numbers.json").read_text())
    assert set(numbers["layerwise_psnr_mean"]) == {"Trans-INR (Transformer layers)", "Learned Init (gradient steps)"}
    assert numbers["gradient_step"]["max_abs_difference"] < 1e-4
    assert numbers["test_psnr"]["n"] == 32
    assert [row["groups"] for row in numbers["weight_groups"]] == [1, 4, 16, 64]  # the shipped ablation
    assert "| 64 |" in (out / "weight_groups.md").read_text()
    assert "layerwise_decoding" in capsys.readouterr().out
    assert not list(tmp_path.glob(".figures-partial-*"))  # the staging folder is gone


def test_figures_all_leaves_the_folder_as_it_was_when_a_figure_fails(tmp_path, monkeypatch):
    out = tmp_path / "figures"
    out.mkdir()
    (out / "samples.png").write_bytes(b"old")

    def fail_halfway(staging, *args):
        (staging / "samples.png").write_bytes(b"new")
        raise RuntimeError("a figure failed")

    monkeypatch.setattr(figures, "_draw_all_figures", fail_halfway)
    with pytest.raises(RuntimeError, match="a figure failed"):
        figures.write_all_figures(out, smoke=True)
    assert (out / "samples.png").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["figures"]


def test_figures_all_names_a_missing_package_and_its_install_command_before_any_work(tmp_path, monkeypatch):
    from transinr.errors import MissingDependencyError

    monkeypatch.setattr(figures, "FIGURE_DEPENDENCIES", {"no_such_package_xyz": "drawing the 3D figures"})
    monkeypatch.setattr(figures, "_draw_all_figures", lambda *args: pytest.fail("started drawing"))
    with pytest.raises(MissingDependencyError) as error:
        figures.write_all_figures(tmp_path / "figures", view_synthesis=True)
    message = str(error.value)
    assert "no_such_package_xyz" in message and "pip install" in message and "\n" not in message
    assert not (tmp_path / "figures").exists()


def test_figures_all_leaves_out_a_missing_learned_init(capsys):
    # Learned Init is optional in --all: a missing file is skipped, never trained live.
    assert figures._load_model("no_such_model_anywhere", smoke=True, device="cpu", train_live=False) is None
    assert "skipped: no model 'no_such_model_anywhere'" in capsys.readouterr().out


def test_figures_command_takes_a_checkpoint_or_all_not_both():
    with pytest.raises(SystemExit):
        figures.cli_main([])
    with pytest.raises(SystemExit):
        figures.cli_main(["some_checkpoint.pt", "--all"])

import pytest
import torch

from transinr.pretrained import export_pretrained, load_or_train, load_pretrained, read_metadata
from transinr.train import load_model_from_checkpoint, train

from .helpers import folder_config, smooth_images


def test_exported_model_loads_without_pickle_and_matches_in_fp16(tmp_path, image_folder, one_thread):
    config = folder_config(image_folder, max_images=16)
    train(config, tmp_path / "run", device="cpu", progress=False, evaluate_at_end=False)
    path = export_pretrained(tmp_path / "run" / "checkpoint.pt", tmp_path / "tiny.safetensors",
                             results={"test_psnr_mean": 12.5})
    assert read_metadata(path)["step"] == "2"
    model, loaded_config, metadata = load_pretrained(path)
    original, _, _ = load_model_from_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert loaded_config == config and metadata["results"]["test_psnr_mean"] == 12.5
    images = smooth_images(2, size=16)
    with torch.no_grad():
        for ours, theirs in zip(model(images), original.eval()(images)):
            assert torch.allclose(ours, theirs, atol=5e-3)


def test_missing_pretrained_model_falls_back_to_training(tmp_path, image_folder, one_thread, monkeypatch):
    from .helpers import write_config_yaml

    path = write_config_yaml(folder_config(image_folder), tmp_path / "tiny.yaml")
    model, config, metadata = load_or_train("no_such_model", config_name=str(path), max_images=16,
                                            run_dir=tmp_path / "live")
    assert metadata["trained_live"] == "1" and (tmp_path / "live" / "checkpoint.pt").exists()


def test_export_data_settings_change_where_the_data_is_not_the_model(tmp_path, image_folder, one_thread):
    from transinr.config import ConfigError
    from transinr.pretrained import cli_main
    from transinr.trained import load_trained

    config = folder_config(image_folder, max_images=16)
    train(config, tmp_path / "run", device="cpu", progress=False, evaluate_at_end=False)
    cli_main([str(tmp_path / "run"), "moved", "--out-dir", str(tmp_path), "--data", "data.root=/elsewhere"])
    shipped = load_trained(tmp_path / "moved.safetensors")
    assert shipped.config.data.root == "/elsewhere" and shipped.config.model == config.model
    with pytest.raises(ConfigError, match="data.\\* settings only"):
        cli_main([str(tmp_path / "run"), "bad", "--out-dir", str(tmp_path), "--data", "model.dim=8"])
    assert not (tmp_path / "bad.safetensors").exists()

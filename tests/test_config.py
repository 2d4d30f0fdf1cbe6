import pytest

from transinr.config import CONFIG_DIR, ConfigError, load_config, parse_overrides


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
def test_every_shipped_config_loads(name):
    config = load_config(name)
    assert config.name == name


def test_paper_configs_hold_the_paper_hyperparameters():
    config = load_config("celeba178")
    m, t = config.model, config.train
    assert (m.dim, m.depth, m.n_heads, m.head_dim, m.mlp_dim, m.n_groups) == (768, 6, 12, 64, 3072, 64)
    assert (m.patch_size, m.padding, config.data.resolution) == (9, 1, 178)
    assert (m.hyponet.depth, m.hyponet.width, m.hyponet.pe_dim, m.hyponet.pe_sigma) == (5, 256, 128, 1024.0)
    assert (t.lr, t.batch_size, t.epochs, t.lr_decay_at) == (1e-4, 16, 30, 0.8)
    assert load_config("imagenette178").train.epochs == 400


def test_misspelled_key_is_named(tmp_path):
    path = write(tmp_path, "model:\n  n_group: 16\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "'n_group'" in str(error.value) and "model" in str(error.value) and str(path) in str(error.value)


def test_unknown_top_level_section_is_named(tmp_path):
    with pytest.raises(ConfigError, match="'trian'"):
        load_config(write(tmp_path, "trian:\n  lr: 0.1\n"))


def test_wrong_type_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.batch_size: expected int, got 'many'"):
        load_config(write(tmp_path, "train:\n  batch_size: many\n"))
    with pytest.raises(ConfigError, match=r"model\.hyponet"):
        load_config(write(tmp_path, "model:\n  hyponet: 5\n"))


def test_int_is_accepted_where_a_float_is_expected(tmp_path):
    config = load_config(write(tmp_path, "train:\n  lr: 1\nmodel:\n  padding: 2\n"))  # 32 + 4 px: 4 patches of 9
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)


def test_overrides_are_dotted_and_typed(tmp_path):
    config = load_config("celeba178", ["train.lr=3e-4", "model.hyponet.width=128", "data.root=/x"])
    assert config.train.lr == 3e-4 and config.model.hyponet.width == 128 and config.data.root == "/x"
    assert parse_overrides(["a.b=1"]) == {"a": {"b": 1}}
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["train.lr"])
    with pytest.raises(ConfigError, match="'lrr'"):
        load_config("celeba178", ["train.lrr=1"])


def test_missing_config_lists_shipped_ones():
    with pytest.raises(ConfigError, match="celeba178"):
        load_config("no_such_config")

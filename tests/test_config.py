from pathlib import Path

import pytest
import yaml

from gnn_center.config import ConfigError, config_from_dict, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob(
    "*.yaml"))
BASE = dict(datasets=["csbm"], methods=["gcn", "centered"], depths=[2, 4])


def write(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    config = load_config(path)
    assert list(config.cells())


def test_defaults_and_merging(tmp_path):
    path = write(tmp_path, yaml.safe_dump(dict(
        BASE, seeds=[0, 13], model={"dropout": 0.3},
        train={"lr": "5e-3"},  # YAML reads this as a string
        dataset_options={"csbm": {"data": {"split_index": "seed"},
                                  "model": {"hidden_channels": 32}}},
        method_options={"centered": {"model": {"dropout": 0.1}}})))
    config = load_config(path)
    assert config.name == "exp"
    assert str(config.output_dir) == "runs/exp"
    cells = list(config.cells())
    assert len(cells) == 2 * 2 * 2
    by = {(c.method, c.num_layers, c.seed): c for c in cells}
    gcn, centered = by["gcn", 2, 13], by["centered", 2, 13]
    assert gcn.model_options == {"dropout": 0.3, "hidden_channels": 32}
    assert centered.model_options["dropout"] == 0.1
    assert gcn.train_options == {"lr": 0.005}
    assert gcn.data_options == {"split_index": 3}  # 13 % 10
    # Every setting is part of the key; seeds differ.
    assert len({c.key for c in cells}) == len(cells)
    assert by["gcn", 2, 0].key != gcn.key
    # Cells come seed by seed, so partial sweeps hold whole tables.
    assert [c.seed for c in cells] == [0] * 4 + [13] * 4


@pytest.mark.parametrize("change,message", [
    ({"colour": 1}, "colour: unknown key; valid keys"),
    ({"model": {"hiden_channels": 3}},
     "model.hiden_channels: unknown model option; valid: hidden_channels"),
    ({"model": {"dropout": "lots"}}, "model.dropout: expected float"),
    ({"model": {"hidden_channels": 2.5}}, "model.hidden_channels: expected int"),
    ({"model": {"dropout": 1.5}}, r"dropout=1.5 is outside \[0, 1\)"),
    ({"train": {"lr": -1}}, "lr=-1.0 must be positive"),
    ({"train": {"device": "tpu"}}, "Unknown device='tpu'"),
    ({"depths": [2, 200]}, "num_layers=200 is out of range"),
    ({"depths": []}, "depths: must not be empty"),
    ({"methods": ["gcn", "gin"]}, r"methods\[1\]: unknown method 'gin'"),
    ({"datasets": ["imagenet"]}, r"datasets\[0\]: unknown dataset"),
    ({"seeds": ["a"]}, r"seeds\[0\]: expected int"),
    ({"data": {"split_index": "all"}}, "split_index: expected an integer"),
    ({"method_options": {"gat": {}}}, "method_options.gat: not one of"),
    ({"method_options": {"gcn": {"data": {}}}},
     "method_options.gcn.data: unknown section"),
    ({"dataset_options": {"csbm": {"model": {"norm": "layer"}}}},
     "Unknown norm='layer'"),
    ({"layer_metrics": "yes"}, "layer_metrics: expected bool"),
    ({"train": {"lr": "nan"}}, "train.lr: expected float"),
])
def test_errors_name_the_file_and_key(tmp_path, change, message):
    path = write(tmp_path, yaml.safe_dump(dict(BASE, **change)))
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_missing_required_key(tmp_path):
    path = write(tmp_path, "datasets: [cora]\nmethods: [gcn]\n")
    with pytest.raises(ConfigError, match="depths: missing"):
        load_config(path)


def test_malformed_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "datasets: [cora\nmethods: [gcn]\n")
    with pytest.raises(ConfigError, match=r"malformed YAML \(line \d+"):
        load_config(path)


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(ConfigError, match="the file is empty"):
        load_config(write(tmp_path, ""))
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="expected a mapping"):
        config_from_dict([1, 2], source="x.yaml")


def test_variants_are_named_methods(tmp_path):
    path = write(tmp_path, yaml.safe_dump(dict(
        BASE, methods=["gcn", "spec-rs"], model={"dropout": 0.3},
        variants={"spec-rs": {"method": "centered-spectral",
                              "model": {"rescale": True, "dropout": 0.2}}},
        method_options={"spec-rs": {"model": {"dropout": 0.1}},
                        "centered-spectral": {"model": {"beta": 0.5,
                                                        "rescale": False}}})))
    config = load_config(path)
    cells = {(c.method, c.num_layers): c for c in config.cells()}
    variant = cells["spec-rs", 2]
    assert variant.base_method == "centered-spectral"
    # The method's own options reach the variant, which overrides them.
    assert variant.model_options == {"dropout": 0.1, "rescale": True,
                                     "beta": 0.5}
    assert cells["gcn", 2].base_method == "gcn"


@pytest.mark.parametrize("variants,message", [
    ({"gcn": {"method": "gcn"}}, "cannot take the name of a method"),
    ({"v": {"model": {}}}, "expected a mapping with 'method'"),
    ({"v": {"method": "gin"}}, "v.method: unknown method 'gin'"),
    ({"v": {"method": "gcn", "data": {}}}, "v.data: unknown section"),
    ({"v": {"method": "gcn", "model": {"rescale": 3}}},
     "v.model.rescale: expected bool"),
    ({"v": {"method": "gcn", "model": {"center": "mean"}}},
     "only applies to the centered"),
])
def test_variant_errors(tmp_path, variants, message):
    path = write(tmp_path, yaml.safe_dump(dict(
        BASE, methods=list(variants), variants=variants)))
    with pytest.raises(ConfigError, match=message):
        load_config(path)

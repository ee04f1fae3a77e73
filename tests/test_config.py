import json
from pathlib import Path

import pytest
import yaml

from gnn_center.config import ConfigError, config_from_dict, load_config

# The configs a user runs, probes included (common/ holds blocks that
# only an include reads).
CONFIGS = sorted(
    path for pattern in ("*.yaml", "probes/*.yaml")
    for path in (Path(__file__).resolve().parents[1] / "configs").glob(pattern))
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
    ({"datasets": ["ogbn-nope"]}, "datasets: Unknown dataset 'ogbn-nope'"),
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


# The data section: checked at load by DataOptions, for every dataset.

@pytest.mark.parametrize("change,message", [
    ({"data": {"split_index": 12, "split": "bogus"}},  # YAML sorts keys
     r"data\.split: Unknown split 'bogus' for dataset 'csbm'"),
    ({"data": {"split_index": 12}},
     r"data\.split_index: split_index=12 is out of range"),
    ({"data": {"split": "bogus"}},
     r"data\.split: Unknown split 'bogus' for dataset 'csbm'"),
    ({"data": {"snr": -1}}, r"data\.snr: snr=-1\.0 must not be negative"),
    ({"data": {"num_classes": 1}}, r"data\.num_classes: num_classes=1 must"),
    ({"data": {"p_intra": "2e0"}}, r"data\.p_intra: p_intra=2\.0 is outside"),
    ({"dataset_options": {"csbm": {"data": {"split": "public"}}}},
     r"dataset_options\.csbm\.data\.split: Unknown split 'public'"),
    ({"datasets": ["csbm", "cora"], "data": {"num_nodes": 50}},
     r"data\.num_nodes: option\(s\) num_nodes only apply to dataset 'csbm'"),
])
def test_data_section_is_checked_on_load(tmp_path, change, message):
    path = write(tmp_path, yaml.safe_dump(dict(BASE, **change)))
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_data_section_accepts_yaml_strings_and_split_index_seed(tmp_path):
    path = write(tmp_path, yaml.safe_dump(dict(
        BASE, datasets=["chameleon", "csbm"], seeds=[0, 17],
        data={"snr": "5e-1"},  # YAML reads this as a string
        dataset_options={"chameleon": {"data": {"split_index": "seed",
                                                "snr": None}}})))
    cells = list(load_config(path).cells())
    by = {(c.dataset, c.seed): c.data_options for c in cells}
    assert by["csbm", 0] == {"snr": 0.5}
    assert by["chameleon", 17] == {"snr": None, "split_index": 7}


def test_data_options_types_follow_the_dataclass():
    from dataclasses import fields

    from gnn_center.config import SECTION_TYPES
    from gnn_center.data import DataOptions
    assert list(SECTION_TYPES["data"]) == [f.name for f in
                                           fields(DataOptions)]


# Lists: no duplicates; seeds in the range torch and numpy accept.

@pytest.mark.parametrize("change,message", [
    ({"methods": ["gcn", "gcn"]}, r"methods\[1\]: 'gcn' is listed twice"),
    ({"seeds": [0, 1, 0]}, r"seeds\[2\]: 0 is listed twice"),
    ({"depths": [2, 4, 2]}, r"depths\[2\]: 2 is listed twice"),
    ({"datasets": ["csbm", "CSBM"]}, r"datasets\[1\]: 'csbm' is listed twice"),
    ({"seeds": [-1]}, r"seeds\[0\]: seed -1 is out of range 0 to 2\*\*32 - 1"),
    ({"seeds": [0, 2 ** 32]}, r"seeds\[1\]: seed 4294967296 is out of range"),
    ({"depths": [0]}, "num_layers=0 is out of range"),
])
def test_lists_are_checked(tmp_path, change, message):
    path = write(tmp_path, yaml.safe_dump(dict(BASE, **change)))
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_largest_seed_is_accepted(tmp_path):
    path = write(tmp_path, yaml.safe_dump(dict(BASE, seeds=[2 ** 32 - 1])))
    assert load_config(path).seeds == [2 ** 32 - 1]


def test_directory_is_reported_as_a_directory(tmp_path):
    write(tmp_path, yaml.safe_dump(BASE), name="a.yaml")
    with pytest.raises(ConfigError, match="is a directory, not a config "
                                          "file.*a.yaml"):
        load_config(tmp_path)


# include: configs share blocks.

def test_include_merges_deeply_and_the_including_file_wins(tmp_path):
    (tmp_path / "common").mkdir()
    write(tmp_path / "common", yaml.safe_dump(dict(
        methods=["gcn", "centered"], depths=[2, 4, 8],
        model={"hidden_channels": 32, "dropout": 0.3},
        method_options={"centered": {"model": {"dropout": 0.1},
                                     "train": {"lr": 0.1}}})),
        name="base.yaml")
    path = write(tmp_path, yaml.safe_dump(dict(
        include="common/base.yaml", datasets=["csbm"], depths=[2],
        model={"dropout": 0.4},
        method_options={"centered": {"train": {"lr": 0.2}}})))
    config = load_config(path)
    assert config.name == "exp"  # the including file's name
    assert config.depths == [2]  # lists are replaced, not joined
    assert config.model == {"hidden_channels": 32, "dropout": 0.4}
    assert config.method_options == {"centered": {
        "model": {"dropout": 0.1}, "train": {"lr": 0.2}}}


def test_includes_chain_in_order(tmp_path):
    write(tmp_path, "model: {dropout: 0.1, hidden_channels: 8}\n", "a.yaml")
    write(tmp_path, "include: a.yaml\nmodel: {dropout: 0.2}\n", "b.yaml")
    write(tmp_path, "model: {dropout: 0.3}\n", "c.yaml")
    path = write(tmp_path, yaml.safe_dump(dict(
        BASE, include=["b.yaml", "c.yaml"])))
    assert load_config(path).model == {"dropout": 0.3, "hidden_channels": 8}


@pytest.mark.parametrize("files,message", [
    ({"a.yaml": "include: b.yaml\n", "b.yaml": "include: a.yaml\n"},
     r"include cycle: .*exp\.yaml -> .*a\.yaml -> .*b\.yaml -> .*a\.yaml"),
    ({}, r"exp\.yaml: include\[0\]: .*missing\.yaml: no such config file"),
    ({"a.yaml": "model: [1]\n"}, "model: expected a mapping"),
    ({"a.yaml": "- 1\n"}, r"a\.yaml: expected a mapping of keys"),
])
def test_include_errors(tmp_path, files, message):
    for name, text in files.items():
        write(tmp_path, text, name)
    include = ["a.yaml"] if files else ["missing.yaml"]
    path = write(tmp_path, yaml.safe_dump(dict(BASE, include=include)))
    with pytest.raises(ConfigError, match=message):
        load_config(path)


@pytest.mark.parametrize("include", [3, [], ["a.yaml", None]])
def test_include_must_name_files(tmp_path, include):
    path = write(tmp_path, yaml.safe_dump(dict(BASE, include=include)))
    with pytest.raises(ConfigError, match=r"exp\.yaml: include"):
        load_config(path)


def test_include_needs_a_file():
    with pytest.raises(ConfigError, match="include: only in a config file"):
        config_from_dict(dict(BASE, include="a.yaml"), source="x")


# The committed results stay complete: every cell of these configs is in
# its results file, so that resuming the sweep runs nothing.
ROOT = Path(__file__).resolve().parents[1]
COMMITTED = {f"full-{name}.yaml": f"full/{name}"
             for name in ("cora", "citeseer", "chameleon", "photo")}
COMMITTED.update({
    "quick-cora.yaml": "quick-cora",
    "deep-training-cora.yaml": "deep_training/cora",
    "deep-training-cora-extra.yaml": "deep_training/cora",
    "deep-training-others.yaml": "deep_training/others",
    "gcnii-chameleon.yaml": "gcnii-chameleon",
})
COMMITTED.update({f"centered-preset-{name}.yaml": f"centered-preset/{name}"
                  for name in ("cora", "citeseer", "chameleon", "photo")})
COMMITTED.update({f"probes/centered-preset-{probe}.yaml":
                  f"centered-preset/{probe}" for probe in ("p1", "p2", "p3", "p4")})


@pytest.mark.parametrize("config_name", sorted(COMMITTED))
def test_committed_results_hold_every_cell(config_name):
    results = ROOT / "experiments" / "results" / COMMITTED[config_name] / \
        "results.jsonl"
    keys = {json.loads(line)["key"]
            for line in results.read_text().splitlines() if line.strip()}
    cells = list(load_config(ROOT / "configs" / config_name).cells())
    missing = [str(cell) for cell in cells if cell.key not in keys]
    assert cells and not missing, f"{len(missing)} cells to run: {missing[:5]}"


def test_full_configs_share_one_block():
    for name in COMMITTED:
        if name.startswith("full-"):
            raw = yaml.safe_load((ROOT / "configs" / name).read_text())
            assert raw["include"] == "common/full-baselines.yaml"
            assert "method_options" not in raw



def test_dataset_whose_package_is_missing_is_left_to_the_run(tmp_path,
                                                             monkeypatch):
    # ogbn-* without ogb: loading the dataset says what to install.
    import gnn_center.data.ogb as ogb_module

    def without_ogb():
        raise ModuleNotFoundError("no ogb", name="ogb")
    monkeypatch.setattr(ogb_module, "master", without_ogb)
    path = write(tmp_path, yaml.safe_dump(dict(BASE, datasets=["ogbn-arxiv"],
                                               data={"split": "official"})))
    assert load_config(path).datasets == ["ogbn-arxiv"]


def test_only_cuts_cells_and_keeps_their_keys(tmp_path):
    config = load_config(write(tmp_path, yaml.safe_dump(dict(
        BASE, datasets=["csbm", "cora"], methods=["gcn", "centered", "v"],
        variants={"v": {"method": "centered", "model": {"beta": 0.5}}}))))
    whole = {c.key: c for c in config.cells()}
    cut = list(config.only(datasets=["cora"], methods=["v", "gcn"]).cells())
    # The config's order, not the order asked for.
    assert [(c.dataset, c.method) for c in cut][:2] == [("cora", "gcn"),
                                                       ("cora", "v")]
    assert {c.key for c in cut} == {k for k, c in whole.items()
                                    if c.dataset == "cora"
                                    and c.method in ("gcn", "v")}
    for cell in cut:
        assert cell.model_options == whole[cell.key].model_options
    assert config.only().datasets == config.datasets
    assert config.datasets == ["csbm", "cora"]  # the original is unchanged


@pytest.mark.parametrize("kwargs, message", [
    (dict(datasets=["photo"]), "datasets: photo not in the config; choose "
                               "among csbm"),
    (dict(methods=["gcnii", "gcn"]), "methods: gcnii not in the config"),
])
def test_only_rejects_names_outside_the_config(tmp_path, kwargs, message):
    config = load_config(write(tmp_path, yaml.safe_dump(BASE)))
    with pytest.raises(ConfigError, match=message):
        config.only(**kwargs)

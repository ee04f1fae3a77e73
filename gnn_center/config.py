r"""Experiment configs: one YAML schema for ``train`` and ``sweep``,
validated on load.

.. code-block:: yaml

    include: common/base.yaml    # optional: file(s) this one builds on
    name: quick-cora             # default: the file name without .yaml
    output_dir: runs/quick-cora  # default: runs/<name>
    root: null                   # dataset root; default: $GNN_CENTER_DATA,
                                 # then the user cache
    datasets: [cora]
    methods: [gcn, centered, centered-spectral]
    depths: [2, 8, 32, 128]
    seeds: [0, 1, 2]             # each in 0 .. 2**32 - 1
    layer_metrics: true          # record per-layer oversmoothing measures
    data:  {split: public}       # fields of gnn_center.data.DataOptions
    model: {hidden_channels: 64} # fields of gnn_center.nn.ModelOptions
    train: {lr: 0.01}            # fields of gnn_center.train.TrainOptions
    dataset_options:             # per dataset: data/model/train overrides
      chameleon: {data: {split_index: seed}}
    method_options:              # per method: model/train overrides
      gcnii: {model: {dropout: 0.6}, train: {conv_weight_decay: 0.01}}
    variants:                    # named methods: a method plus overrides
      spectral-rescale: {method: centered-spectral, model: {rescale: true}}

Defaults live where the options are defined (:class:`DataOptions`,
:class:`ModelOptions`, :class:`TrainOptions`), and so do the range checks,
which the loader runs for every dataset, method, depth and seed of the
config; the loader itself checks only types (accepting YAML's ``5e-4``,
a string, for a float) and the lists (not empty, no value twice, seeds
in range). Later
sections override earlier ones: ``data``/``model``/``train`` <
``dataset_options`` < ``method_options`` of the method a variant builds
on < ``variants`` < ``method_options`` of the name itself. A variant's
name can stand in ``methods`` like a method's; its records carry the
variant name as ``method`` and the method it builds on as
``base_method``. ``split_index: seed`` uses the run's seed modulo 10, so
that seeds walk through the 10 geom-gcn splits.

``include`` reads other config files first and merges this one over
them (see :mod:`gnn_center.config_files`); ``name`` defaults to the name
of the file given to :func:`load_config`.
"""
import json
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

from gnn_center.config_files import (ConfigError, coerce, read_config_file,
                                     reject_unknown_keys)
from gnn_center.data import DATASETS, NUM_GEOM_GCN_SPLITS, DataOptions
from gnn_center.nn.models import METHODS, ModelOptions, resolve_options
from gnn_center.records import Cell
from gnn_center.train import TrainOptions

#: The top-level keys of a config file.
TOP_LEVEL = ("include", "name", "output_dir", "root", "datasets", "methods",
             "depths", "seeds", "layer_metrics", "data", "model", "train",
             "dataset_options", "method_options", "variants", "tune")
#: Seeds torch and numpy both accept: ``0 <= seed < SEED_LIMIT``.
SEED_LIMIT = 2 ** 32


def _dataclass_types(cls) -> Dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


SECTION_TYPES = {
    # split_index may also be "seed", resolved per run.
    "data": dict(_dataclass_types(DataOptions),
                 split_index=Union[int, str]),
    "model": _dataclass_types(ModelOptions),
    "train": _dataclass_types(TrainOptions),
}


@dataclass
class ExperimentConfig:
    name: str
    output_dir: Path
    datasets: List[str]
    methods: List[str]
    depths: List[int]
    seeds: List[int] = field(default_factory=lambda: [0])
    root: Optional[str] = None
    layer_metrics: bool = True
    data: Dict[str, Any] = field(default_factory=dict)
    model: Dict[str, Any] = field(default_factory=dict)
    train: Dict[str, Any] = field(default_factory=dict)
    dataset_options: Dict[str, Dict[str, Dict[str, Any]]] = field(
        default_factory=dict)
    method_options: Dict[str, Dict[str, Dict[str, Any]]] = field(
        default_factory=dict)
    variants: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    #: The raw ``tune:`` section, validated by gnn_center.tune_options.
    tune: Dict[str, Any] = field(default_factory=dict)
    source: str = "<dict>"

    def base_method(self, method: str) -> str:
        return self.variants[method]["method"] if method in self.variants \
            else method

    def options_for(self, dataset: str, method: str, seed: int):
        r"""The merged data, model and train options of one run."""
        merged = {s: dict(getattr(self, s)) for s in ("data", "model",
                                                      "train")}
        variant = self.variants.get(method, {})
        base = self.base_method(method)
        layers = [self.dataset_options.get(dataset, {})]
        if base != method:  # a variant inherits its method's options
            layers += [self.method_options.get(base, {}),
                       {k: v for k, v in variant.items() if k != "method"}]
        layers.append(self.method_options.get(method, {}))
        for overrides in layers:
            for section, values in overrides.items():
                merged[section].update(values)
        if merged["data"].get("split_index") == "seed":
            merged["data"]["split_index"] = seed % NUM_GEOM_GCN_SPLITS
        return merged["data"], merged["model"], merged["train"]

    def only(self, datasets: Optional[List[str]] = None,
             methods: Optional[List[str]] = None) -> "ExperimentConfig":
        r"""This config cut to some of its datasets and methods (None: all),
        in the config's order. Names, options and tune studies are those of
        the whole config, so the cut and the whole share their results."""
        for what, chosen in (("datasets", datasets), ("methods", methods)):
            unknown = [n for n in chosen or () if n not in getattr(self, what)]
            if unknown:
                raise ConfigError(
                    f"{self.source}: {what}: {', '.join(unknown)} not in the "
                    f"config; choose among {', '.join(getattr(self, what))}")
        kept = [m for m in self.methods if methods is None or m in methods]
        tune = dict(self.tune)
        if isinstance(tune.get("method_space"), dict):
            # The left-out methods' spaces go with them (a tune: section may
            # search only the config's methods; other names stay, and fail).
            tune["method_space"] = {
                m: space for m, space in tune["method_space"].items()
                if m in kept or m not in self.methods}
        return replace(self, datasets=[d for d in self.datasets
                                       if datasets is None or d in datasets],
                       methods=kept, tune=tune)

    def cells(self) -> Iterator[Cell]:
        r"""Every run, ordered so that a partial sweep holds complete
        tables for the first seeds."""
        for dataset in self.datasets:
            for seed in self.seeds:
                for depth in self.depths:
                    for method in self.methods:
                        data, model, train = self.options_for(
                            dataset, method, seed)
                        yield Cell(dataset, method, depth, seed, data, model,
                                   train, self.base_method(method))


def _as_list(value, where: str, item_type, normalize=None) -> list:
    r"""A non-empty list of ``item_type`` without repeats (a single value
    stands for a list of one)."""
    if not isinstance(value, list):
        value = [value]
    if not value:
        raise ConfigError(f"{where}: must not be empty")
    out = []
    for i, item in enumerate(value):
        item = coerce(item, item_type, f"{where}[{i}]")
        item = normalize(item) if normalize else item
        if item in out:  # a repeat would run the same cells again
            raise ConfigError(f"{where}[{i}]: {item!r} is listed twice; "
                              f"list each value once")
        out.append(item)
    return out


def _check_section(values, section: str, where: str) -> Dict[str, Any]:
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping of options, got "
                          f"{values!r}")
    types = SECTION_TYPES[section]
    out = {}
    for key, value in values.items():
        if key not in types:
            raise ConfigError(f"{where}.{key}: unknown {section} option; "
                              f"valid: {', '.join(types)}")
        out[key] = coerce(value, types[key], f"{where}.{key}")
    split_index = out.get("split_index")
    if isinstance(split_index, str) and split_index != "seed":
        raise ConfigError(f"{where}.split_index: expected an integer or "
                          f"'seed', got {split_index!r}")
    return out


def _check_overrides(values, kind: str, names, sections, where: str):
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping from {kind} names")
    out = {}
    for name, overrides in values.items():
        if name not in names:
            raise ConfigError(f"{where}.{name}: not one of this config's "
                              f"{kind}s ({', '.join(names)})")
        if not isinstance(overrides, dict):
            raise ConfigError(f"{where}.{name}: expected a mapping with "
                              f"keys {', '.join(sections)}")
        out[name] = {}
        for section, section_values in overrides.items():
            if section not in sections:
                raise ConfigError(f"{where}.{name}.{section}: unknown "
                                  f"section; valid: {', '.join(sections)}")
            out[name][section] = _check_section(
                section_values, section, f"{where}.{name}.{section}")
    return out


def _check_variants(values, where: str) -> Dict[str, Dict[str, Any]]:
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping from variant names "
                          f"to {{method: ..., model: ..., train: ...}}")
    out = {}
    for name, spec in values.items():
        at = f"{where}.{name}"
        if name in METHODS:
            raise ConfigError(f"{at}: a variant cannot take the name of a "
                              f"method")
        if not isinstance(spec, dict) or "method" not in spec:
            raise ConfigError(f"{at}: expected a mapping with 'method' (one "
                              f"of {', '.join(METHODS)}) and optional "
                              f"'model' and 'train'")
        if spec["method"] not in METHODS:
            raise ConfigError(f"{at}.method: unknown method "
                              f"{spec['method']!r}; choose from "
                              f"{', '.join(METHODS)}")
        out[name] = {"method": spec["method"]}
        for section, section_values in spec.items():
            if section == "method":
                continue
            if section not in ("model", "train"):
                raise ConfigError(f"{at}.{section}: unknown section; valid: "
                                  f"method, model, train")
            out[name][section] = _check_section(section_values, section,
                                                f"{at}.{section}")
    return out


def _valid_dataset(name: str) -> bool:
    return name in DATASETS or name.startswith("ogbn-")


def _check_ranges(config: ExperimentConfig, source: str) -> None:
    r"""Range checks by the code that owns each option, for every
    combination the sweep will run."""
    for dataset in config.datasets:
        _check_data(config, dataset, source)
        for method in config.methods:
            _, model, train = config.options_for(dataset, method,
                                                 config.seeds[0])
            for depth in config.depths:
                try:
                    resolve_options(config.base_method(method), depth,
                                    **model)
                except ValueError as err:
                    raise ConfigError(f"{source}: {dataset}/{method}/depth "
                                      f"{depth}: {err}") from None
            try:
                TrainOptions(**train)
            except ValueError as err:
                raise ConfigError(f"{source}: train ({dataset}/{method}): "
                                  f"{err}") from None


def _check_data(config: ExperimentConfig, dataset: str, source: str):
    r"""Checks the data options of ``dataset`` for each seed (they depend
    on the seed through ``split_index: seed``, not on the method), naming
    the section a bad value comes from."""
    try:
        DataOptions().check_for(dataset)
    except ImportError:  # ogbn-* without ogb: the run says what to install
        return
    except ValueError as err:  # e.g. an ogbn-* name OGB does not know
        raise ConfigError(f"{source}: datasets: {err}") from None
    override = config.dataset_options.get(dataset, {}).get("data", {})
    checked = set()
    for seed in config.seeds:
        data = config.options_for(dataset, config.methods[0], seed)[0]
        if json.dumps(data, sort_keys=True) in checked:
            continue
        checked.add(json.dumps(data, sort_keys=True))
        for key, value in data.items():
            section = f"dataset_options.{dataset}.data" if key in override \
                else "data"
            problem = _data_problem(dataset, {key: value})
            if problem:
                raise ConfigError(f"{source}: {section}.{key}: {problem}")
        problem = _data_problem(dataset, data)  # what no option shows alone
        if problem:
            raise ConfigError(f"{source}: data of {dataset}: {problem}")


def _data_problem(dataset: str, options: Dict[str, Any]) -> Optional[str]:
    try:
        DataOptions(**options).check_for(dataset)
    except ValueError as err:
        return str(err)
    return None


def _check_lists(raw, where, variants) -> Tuple[list, list, list, list]:
    r"""The datasets, methods, depths and seeds of a config."""
    datasets = _as_list(raw["datasets"], where("datasets"), str, str.lower)
    for i, name in enumerate(datasets):
        if not _valid_dataset(name):
            raise ConfigError(f"{where(f'datasets[{i}]')}: unknown dataset "
                              f"{name!r}; choose from "
                              f"{', '.join(DATASETS)} or ogbn-*")
    methods = _as_list(raw["methods"], where("methods"), str)
    for i, name in enumerate(methods):
        if name not in METHODS and name not in variants:
            known = ", ".join(list(METHODS) + list(variants))
            raise ConfigError(f"{where(f'methods[{i}]')}: unknown method "
                              f"{name!r}; choose from {known}")
    depths = _as_list(raw["depths"], where("depths"), int)
    seeds = _as_list(raw.get("seeds", [0]), where("seeds"), int)
    for i, seed in enumerate(seeds):
        if not 0 <= seed < SEED_LIMIT:
            raise ConfigError(f"{where(f'seeds[{i}]')}: seed {seed} is out "
                              f"of range 0 to 2**32 - 1, the seeds torch "
                              f"and numpy accept")
    return datasets, methods, depths, seeds


def config_from_dict(raw: Dict[str, Any], source: str = "<dict>",
                     default_name: str = "experiment") -> ExperimentConfig:
    r"""Validates a config given as a mapping (as read from YAML)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at the top "
                          f"level, got {type(raw).__name__}")
    where = lambda key: f"{source}: {key}"  # noqa: E731
    if "include" in raw:
        raise ConfigError(f"{where('include')}: only in a config file read "
                          f"by load_config (paths are relative to it)")
    reject_unknown_keys(raw, TOP_LEVEL, where)
    for key in ("datasets", "methods", "depths"):
        if key not in raw:
            raise ConfigError(f"{where(key)}: missing (required: datasets, "
                              f"methods, depths)")

    variants = _check_variants(raw.get("variants"), where("variants"))
    datasets, methods, depths, seeds = _check_lists(raw, where, variants)

    tune = {} if raw.get("tune") is None else raw["tune"]
    if not isinstance(tune, dict):
        raise ConfigError(f"{where('tune')}: expected a mapping of tuning "
                          f"options, got {tune!r}")
    name = raw.get("name", default_name)
    name = coerce(name, str, where("name"))
    output_dir = raw.get("output_dir") or f"runs/{name}"
    config = ExperimentConfig(
        name=name,
        output_dir=Path(coerce(output_dir, str, where("output_dir"))),
        datasets=datasets, methods=methods, depths=depths, seeds=seeds,
        root=coerce(raw.get("root"), Optional[str], where("root")),
        layer_metrics=coerce(raw.get("layer_metrics", True), bool,
                              where("layer_metrics")),
        data=_check_section(raw.get("data"), "data", where("data")),
        model=_check_section(raw.get("model"), "model", where("model")),
        train=_check_section(raw.get("train"), "train", where("train")),
        dataset_options=_check_overrides(
            {k.lower(): v for k, v in (raw.get("dataset_options")
                                       or {}).items()},
            "dataset", datasets, ("data", "model", "train"),
            where("dataset_options")),
        method_options=_check_overrides(
            raw.get("method_options"), "method",
            list(dict.fromkeys(methods + [variants[m]["method"]
                                          for m in methods
                                          if m in variants])),
            ("model", "train"), where("method_options")),
        variants=variants, tune=tune, source=source)

    _check_ranges(config, source)
    return config


def load_config(path: Union[str, Path]) -> ExperimentConfig:
    r"""Reads and validates a YAML experiment config and the files it
    includes (see :mod:`gnn_center.config_files`)."""
    path = Path(path)
    raw, included = read_config_file(path)
    try:
        return config_from_dict(raw, source=str(path),
                                default_name=path.stem)
    except ConfigError as err:
        if not included:
            raise
        raise ConfigError(f"{err} (the key may come from an included file: "
                          f"{', '.join(dict.fromkeys(map(str, included)))})") \
            from None

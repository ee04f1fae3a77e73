r"""Experiment configs: one YAML schema for ``train`` and ``sweep``,
validated on load.

.. code-block:: yaml

    name: quick-cora             # default: the file name without .yaml
    output_dir: runs/quick-cora  # default: runs/<name>
    root: null                   # dataset root; default: $GNN_CENTER_DATA,
                                 # then the user cache
    datasets: [cora]
    methods: [gcn, centered, centered-spectral]
    depths: [2, 8, 32, 128]
    seeds: [0, 1, 2]
    layer_metrics: true          # record per-layer oversmoothing measures
    data:  {split: public}       # options of gnn_center.data.load_dataset
    model: {hidden_channels: 64} # fields of gnn_center.nn.ModelOptions
    train: {lr: 0.01}            # fields of gnn_center.train.TrainOptions
    dataset_options:             # per dataset: data/model/train overrides
      chameleon: {data: {split_index: seed}}
    method_options:              # per method: model/train overrides
      gcnii: {model: {dropout: 0.6}, train: {conv_weight_decay: 0.01}}
    variants:                    # named methods: a method plus overrides
      spectral-rescale: {method: centered-spectral, model: {rescale: true}}

Defaults live where the options are defined (:class:`ModelOptions`,
:class:`TrainOptions`, :data:`DATA_OPTIONS`); later sections override
earlier ones: ``data``/``model``/``train`` < ``dataset_options`` <
``method_options`` of the method a variant builds on < ``variants`` <
``method_options`` of the name itself. A variant's name can stand in
``methods`` like a method's; its records carry the variant name as
``method`` and the method it builds on as ``base_method``. ``split_index: seed`` uses the run's seed modulo 10,
so that seeds walk through the 10 geom-gcn splits.
"""
import hashlib
import math
import json
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union

import yaml

from gnn_center.data import DATASETS, NUM_GEOM_GCN_SPLITS
from gnn_center.nn.models import METHODS, ModelOptions, resolve_options
from gnn_center.train import TrainOptions

# Options of load_dataset (defaults are in its signature and CSBM_DEFAULTS).
DATA_OPTIONS: Dict[str, Any] = {
    "split": Optional[str],
    "split_index": Union[int, str],  # an index or "seed"
    "normalize_features": bool,
    "download": bool,
    "num_nodes": int,
    "num_classes": int,
    "p_intra": Optional[float],
    "p_inter": Optional[float],
    "feature_dim": int,
    "snr": float,
}

TOP_LEVEL = ("name", "output_dir", "root", "datasets", "methods", "depths",
             "seeds", "layer_metrics", "data", "model", "train",
             "dataset_options", "method_options", "variants", "tune")


class ConfigError(ValueError):
    r"""A config that cannot be used; the message names the file and the
    key."""


def _dataclass_types(cls) -> Dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


SECTION_TYPES = {
    "data": DATA_OPTIONS,
    "model": _dataclass_types(ModelOptions),
    "train": _dataclass_types(TrainOptions),
}


def _type_name(tp) -> str:
    args = typing.get_args(tp)
    if args:
        return " or ".join(_type_name(a) for a in args)
    return "null" if tp is type(None) else tp.__name__


def _coerce(value, tp, where: str):
    r"""Checks ``value`` against ``tp``; YAML reads ``5e-4`` (no dot) as a
    string, so numbers in strings are accepted for float fields."""
    args = typing.get_args(tp)
    if args:  # Optional[...] / Union[...]
        for arg in args:
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got "
                          f"{value!r}")
    if tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None and math.isfinite(number):
            return number
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")


@dataclass(frozen=True)
class Cell:
    r"""One run of a sweep: a dataset, method, depth and seed with every
    option resolved."""
    dataset: str
    method: str  # a method of METHODS or a variant's name
    num_layers: int
    seed: int
    data_options: Dict[str, Any] = field(hash=False)
    model_options: Dict[str, Any] = field(hash=False)
    train_options: Dict[str, Any] = field(hash=False)
    base_method: str = ""  # the method of METHODS that is built

    def __post_init__(self):
        if not self.base_method:
            object.__setattr__(self, "base_method", self.method)

    @property
    def key(self) -> str:
        r"""Identifies the run: a hash of everything that determines its
        result, so that a changed option is a new run."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __str__(self) -> str:
        return (f"{self.dataset} {self.method} L={self.num_layers} "
                f"seed={self.seed}")


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


def _as_list(value, where: str, item_type) -> list:
    if not isinstance(value, list):
        value = [value]
    if not value:
        raise ConfigError(f"{where}: must not be empty")
    return [_coerce(v, item_type, f"{where}[{i}]")
            for i, v in enumerate(value)]


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
        out[key] = _coerce(value, types[key], f"{where}.{key}")
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


def config_from_dict(raw: Dict[str, Any], source: str = "<dict>",
                     default_name: str = "experiment") -> ExperimentConfig:
    r"""Validates a config given as a mapping (as read from YAML)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at the top "
                          f"level, got {type(raw).__name__}")
    where = lambda key: f"{source}: {key}"  # noqa: E731
    unknown = [k for k in raw if k not in TOP_LEVEL]
    if unknown:
        raise ConfigError(f"{where(unknown[0])}: unknown key; valid keys: "
                          f"{', '.join(TOP_LEVEL)}")
    for key in ("datasets", "methods", "depths"):
        if key not in raw:
            raise ConfigError(f"{where(key)}: missing (required: datasets, "
                              f"methods, depths)")

    datasets = [d.lower() for d in _as_list(raw["datasets"],
                                            where("datasets"), str)]
    for i, name in enumerate(datasets):
        if not _valid_dataset(name):
            raise ConfigError(f"{where(f'datasets[{i}]')}: unknown dataset "
                              f"{name!r}; choose from "
                              f"{', '.join(DATASETS)} or ogbn-*")
    variants = _check_variants(raw.get("variants"), where("variants"))
    methods = _as_list(raw["methods"], where("methods"), str)
    for i, name in enumerate(methods):
        if name not in METHODS and name not in variants:
            known = ", ".join(list(METHODS) + list(variants))
            raise ConfigError(f"{where(f'methods[{i}]')}: unknown method "
                              f"{name!r}; choose from {known}")
    depths = _as_list(raw["depths"], where("depths"), int)
    seeds = _as_list(raw.get("seeds", [0]), where("seeds"), int)

    tune = {} if raw.get("tune") is None else raw["tune"]
    if not isinstance(tune, dict):
        raise ConfigError(f"{where('tune')}: expected a mapping of tuning "
                          f"options, got {tune!r}")
    name = raw.get("name", default_name)
    name = _coerce(name, str, where("name"))
    output_dir = raw.get("output_dir") or f"runs/{name}"
    config = ExperimentConfig(
        name=name,
        output_dir=Path(_coerce(output_dir, str, where("output_dir"))),
        datasets=datasets, methods=methods, depths=depths, seeds=seeds,
        root=_coerce(raw.get("root"), Optional[str], where("root")),
        layer_metrics=_coerce(raw.get("layer_metrics", True), bool,
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

    # Range checks by the code that owns each option, for every
    # combination the sweep will run.
    for dataset in datasets:
        for method in methods:
            _, model, train = config.options_for(dataset, method, seeds[0])
            for depth in depths:
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
    return config


def load_config(path: Union[str, Path]) -> ExperimentConfig:
    r"""Reads and validates a YAML experiment config."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark \
            else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{path}: malformed YAML{at}: {problem}") from None
    if raw is None:
        raise ConfigError(f"{path}: the file is empty")
    return config_from_dict(raw, source=str(path), default_name=path.stem)


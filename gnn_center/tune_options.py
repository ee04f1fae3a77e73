r"""The ``tune:`` section of an experiment config, as typed options.

.. code-block:: yaml

    tune:
      trials: 20                 # per (dataset, method, depth) study
      seeds: [0, 1]              # seeds (and splits) the trials train on
      final_seeds: [0, 1, 2, 3, 4]   # default: the config's seeds
      sampler_seed: 0            # TPE's seed
      pruner: {median: {n_startup_trials: 5, n_warmup_steps: 50}}
      # or {hyperband: {min_resource: 10, reduction_factor: 3}}, or none
      space:                     # searched for every method
        lr: {log: [1.0e-3, 5.0e-2]}
        dropout: {float: [0.0, 0.8]}
      method_space:              # per method: added to (or replacing) space
        gcnii: {alpha: {float: [0.05, 0.5]}}
        centered: {center: {choice: [mean, uniform, spectral]}}

A parameter is a field of :class:`~gnn_center.nn.ModelOptions` or
:class:`~gnn_center.train.TrainOptions`; its distribution is one of
``float: [low, high]``, ``log: [low, high]`` (log-uniform, low > 0),
``int: [low, high]`` or ``choice: [values]``. The epoch budget
(``max_epochs``, ``patience``) is not searched: every method of a config
gets the same one.
"""
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

import optuna

from gnn_center.config import SECTION_TYPES, ExperimentConfig
from gnn_center.config_files import ConfigError, coerce as _coerce, \
    reject_unknown_keys
from gnn_center.nn.models import resolve_options
from gnn_center.train import TrainOptions

KINDS = ("float", "log", "int", "choice")
#: Train options that are the same for every method (the budget) or are
#: not hyperparameters.
NOT_SEARCHED = ("max_epochs", "patience", "device")
SEARCHABLE = {name: section for section in ("model", "train")
              for name in SECTION_TYPES[section] if name not in NOT_SEARCHED}
TUNE_KEYS = ("trials", "seeds", "final_seeds", "sampler_seed", "pruner",
             "space", "method_space")
PRUNERS = {"median": dict(n_startup_trials=5, n_warmup_steps=0,
                          interval_steps=1),
           "hyperband": dict(min_resource=1, reduction_factor=3),
           "none": {}}


def _accepts(name: str, tp) -> bool:
    field_type = SECTION_TYPES[SEARCHABLE[name]][name]
    return tp in (typing.get_args(field_type) or (field_type, ))


@dataclass(frozen=True)
class Param:
    r"""One searched option and its distribution."""
    name: str
    kind: str
    values: Tuple[Any, ...]  # (low, high), or the choices

    def __post_init__(self):
        if self.name not in SEARCHABLE:
            hint = (" (every method gets the same epoch budget: set it in "
                    "train)" if self.name in NOT_SEARCHED else "")
            raise ValueError(f"unknown parameter {self.name!r}{hint}; "
                             f"valid: {', '.join(SEARCHABLE)}")
        if self.kind not in KINDS:
            raise ValueError(f"unknown distribution {self.kind!r}; use one "
                             f"of {', '.join(KINDS)}")
        if self.kind == "choice":
            if not self.values:
                raise ValueError("choice: must list at least one value")
            return
        number = int if self.kind == "int" else float
        if not _accepts(self.name, number):
            raise ValueError(f"{self.kind}: {self.name} is not a "
                             f"{number.__name__} option; use "
                             f"{'float or log' if number is int else 'int'}"
                             f" or choice")
        low, high = self.values
        if not low < high:
            raise ValueError(f"{self.kind}: empty or inverted range "
                             f"[{low}, {high}]; low must be below high")
        if self.kind == "log" and low <= 0:
            raise ValueError(f"log: range [{low}, {high}] must be positive")

    @property
    def section(self) -> str:
        return SEARCHABLE[self.name]

    def bounds(self) -> Tuple[Any, ...]:
        r"""The values whose validity implies that of the whole range."""
        return self.values

    def suggest(self, trial: optuna.Trial):
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.values))
        if self.kind == "int":
            return trial.suggest_int(self.name, *self.values)
        return trial.suggest_float(self.name, *self.values,
                                   log=self.kind == "log")


@dataclass(frozen=True)
class PrunerOptions:
    r"""Optuna's median or Hyperband pruner on the validation accuracy of
    each epoch, or none."""
    kind: str = "median"
    options: Dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in PRUNERS:
            raise ValueError(f"unknown pruner {self.kind!r}; use one of "
                             f"{', '.join(PRUNERS)}")
        for key, value in self.options.items():
            if key not in PRUNERS[self.kind]:
                raise ValueError(f"{self.kind}.{key}: unknown option; "
                                 f"valid: {', '.join(PRUNERS[self.kind])}")
            if not isinstance(value, int) or isinstance(value, bool) \
                    or value < (0 if key.startswith("n_") else 1):
                raise ValueError(f"{self.kind}.{key}: expected a positive "
                                 f"integer, got {value!r}")

    def build(self) -> optuna.pruners.BasePruner:
        options = {**PRUNERS[self.kind], **self.options}
        if self.kind == "median":
            return optuna.pruners.MedianPruner(**options)
        if self.kind == "hyperband":
            return optuna.pruners.HyperbandPruner(**options)
        return optuna.pruners.NopPruner()


@dataclass(frozen=True)
class TuneOptions:
    r"""How each (dataset, method, depth) cell is tuned and then run."""
    trials: int = 20
    seeds: Tuple[int, ...] = (0, )
    final_seeds: Tuple[int, ...] = (0, )
    sampler_seed: int = 0
    pruner: PrunerOptions = field(default_factory=PrunerOptions)
    space: Tuple[Param, ...] = ()
    method_space: Dict[str, Tuple[Param, ...]] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.trials, int) or self.trials < 1:
            raise ValueError(f"trials={self.trials!r} must be a positive "
                             f"integer")
        if not self.seeds or not self.final_seeds:
            raise ValueError("seeds and final_seeds must not be empty")

    def space_for(self, method: str) -> List[Param]:
        r"""The shared space with the method's own parameters added (a
        method's entry replaces a shared one of the same name)."""
        params = {p.name: p for p in self.space}
        params.update({p.name: p for p in self.method_space.get(method, ())})
        return list(params.values())


def _param(name, spec, where: str) -> Param:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(f"{where}: expected one of {{float: [low, high]}}, "
                          f"{{log: [low, high]}}, {{int: [low, high]}}, "
                          f"{{choice: [values]}}; got {spec!r}")
    (kind, values), = spec.items()
    if name in SEARCHABLE and kind in KINDS:
        tp = SECTION_TYPES[SEARCHABLE[name]][name]
        if kind != "choice" and (not isinstance(values, list)
                                 or len(values) != 2):
            raise ConfigError(f"{where}.{kind}: expected [low, high], got "
                              f"{values!r}")
        if kind == "choice" and not isinstance(values, list):
            raise ConfigError(f"{where}.choice: expected a list, got "
                              f"{values!r}")
        number = {"float": float, "log": float, "int": int}.get(kind)
        if number is None or _accepts(name, number):
            # (else Param says which distributions the option takes)
            tp = number or tp
            values = [_coerce(v, tp, f"{where}.{kind}[{i}]")
                      for i, v in enumerate(values)]
    try:
        return Param(name, kind, tuple(values) if isinstance(values, list)
                     else values)
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None


def _space(raw, where: str) -> Tuple[Param, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping from option names to "
                          f"distributions, got {raw!r}")
    return tuple(_param(name, spec, f"{where}.{name}")
                 for name, spec in raw.items())


def _pruner(raw, where: str) -> PrunerOptions:
    if raw is None:
        return PrunerOptions()
    if isinstance(raw, str):
        raw = {raw: {}}
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ConfigError(f"{where}: expected median, hyperband or none, "
                          f"optionally with options ({{median: "
                          f"{{n_startup_trials: 5}}}}), got {raw!r}")
    (kind, options), = raw.items()
    if not isinstance(options or {}, dict):
        raise ConfigError(f"{where}.{kind}: expected a mapping of options, "
                          f"got {options!r}")
    try:
        return PrunerOptions(kind, dict(options or {}))
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None


def tune_options(config: ExperimentConfig) -> TuneOptions:
    r"""Validates ``config.tune`` against the config it belongs to; every
    error names the file and the key."""
    raw, source = config.tune, config.source
    where = lambda key: f"{source}: tune.{key}"  # noqa: E731
    if not raw:
        raise ConfigError(f"{source}: tune: missing; add a tune section "
                          f"with at least a search space")
    reject_unknown_keys(raw, TUNE_KEYS, where)
    trials = raw.get("trials", TuneOptions.trials)
    if not isinstance(trials, int) or isinstance(trials, bool) \
            or trials < 1:
        raise ConfigError(f"{where('trials')}: expected a positive integer, "
                          f"got {trials!r}")
    seeds = {}
    for key, default in (("seeds", [0]), ("final_seeds", config.seeds)):
        values = raw.get(key, default)
        values = values if isinstance(values, list) else [values]
        if not values:
            raise ConfigError(f"{where(key)}: must not be empty")
        seeds[key] = tuple(_coerce(v, int, f"{where(key)}[{i}]")
                           for i, v in enumerate(values))
    method_space = raw.get("method_space") or {}
    if not isinstance(method_space, dict):
        raise ConfigError(f"{where('method_space')}: expected a mapping from "
                          f"method names to spaces, got {method_space!r}")
    for method in method_space:
        if method not in config.methods:
            raise ConfigError(f"{where('method_space')}.{method}: not one of "
                              f"this config's methods "
                              f"({', '.join(config.methods)})")
    options = TuneOptions(
        trials=trials, **seeds,
        sampler_seed=_coerce(raw.get("sampler_seed", 0), int,
                             where("sampler_seed")),
        pruner=_pruner(raw.get("pruner"), where("pruner")),
        space=_space(raw.get("space"), where("space")),
        method_space={m: _space(s, f"{where('method_space')}.{m}")
                      for m, s in method_space.items()})
    _check_against_config(config, options)
    return options


def _check_against_config(config: ExperimentConfig,
                          options: TuneOptions) -> None:
    r"""Every range is valid for every method and depth, and every method
    of a dataset gets the same epoch budget."""
    source = config.source
    for dataset in config.datasets:
        budgets = {}
        for method in config.methods:
            _, model, train = config.options_for(dataset, method, 0)
            base = config.base_method(method)
            budget = TrainOptions(**train)
            budgets[method] = (budget.max_epochs, budget.patience)
            params = options.space_for(method)
            if not params:
                raise ConfigError(f"{source}: tune: nothing to search for "
                                  f"{method}; add tune.space")
            own = options.method_space.get(method, ())
            for param in params:
                at = (f"{source}: tune." + (f"method_space.{method}"
                                            if param in own else "space")
                      + f".{param.name}")
                for value in param.bounds():
                    try:
                        if param.section == "model":
                            for depth in config.depths:
                                resolve_options(base, depth, **{
                                    **model, param.name: value})
                        else:
                            TrainOptions(**{**train, param.name: value})
                    except ValueError as err:
                        raise ConfigError(f"{at}: {value!r} is not valid "
                                          f"for {method}: {err}") from None
        if len(set(budgets.values())) > 1:
            listed = ", ".join(f"{m}: max_epochs={e}, patience={p}"
                               for m, (e, p) in budgets.items())
            raise ConfigError(f"{source}: tune: every method must get the "
                              f"same epoch budget, but on {dataset} {listed}"
                              f"; set max_epochs and patience in train or "
                              f"dataset_options, not per method")

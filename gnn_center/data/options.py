r"""The options of :func:`~gnn_center.data.load_dataset`, validated once."""
import numbers
from dataclasses import dataclass
from typing import Dict, Optional

from gnn_center.data.csbm import CSBM_DEFAULTS
from gnn_center.data.registry import (
    NUM_GEOM_GCN_SPLITS,
    bad_split_error,
    splits_of,
)


@dataclass(frozen=True)
class DataOptions:
    r"""The options of :func:`load_dataset` besides the name, root and
    seed, validated here once (types and ranges); :meth:`check_for` adds
    the checks that depend on the dataset. ``None`` means "unset": the
    dataset's first split, or the ``csbm`` default of
    :data:`CSBM_DEFAULTS`."""
    split: Optional[str] = None
    #: Which of the 10 geom-gcn splits (those datasets only).
    split_index: int = 0
    normalize_features: bool = True
    download: bool = True
    # ``csbm`` only (see load_dataset):
    num_nodes: Optional[int] = None
    num_classes: Optional[int] = None
    p_intra: Optional[float] = None
    p_inter: Optional[float] = None
    feature_dim: Optional[int] = None
    snr: Optional[float] = None

    def __post_init__(self):
        def is_int(value):
            return isinstance(value, numbers.Integral) and \
                not isinstance(value, bool)

        if self.split is not None and not isinstance(self.split, str):
            raise ValueError(f"split={self.split!r} must be a split name")
        if not (is_int(self.split_index)
                and 0 <= self.split_index < NUM_GEOM_GCN_SPLITS):
            raise ValueError(
                f"split_index={self.split_index!r} is out of range: the "
                f"geom-gcn splits are numbered 0-{NUM_GEOM_GCN_SPLITS - 1}")
        for name in ("normalize_features", "download"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r} must be "
                                 f"true or false")
        for name in ("num_nodes", "num_classes", "feature_dim"):
            value = getattr(self, name)
            if value is not None and not (is_int(value) and value >= 1):
                raise ValueError(f"{name}={value!r} must be a positive "
                                 f"integer")
        if self.num_classes is not None and self.num_classes < 2:
            raise ValueError(f"num_classes={self.num_classes} must be at "
                             f"least 2")
        for name in ("p_intra", "p_inter"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, numbers.Real)
                                          and 0.0 <= value <= 1.0):
                raise ValueError(f"{name}={value!r} is outside [0, 1]")
        if self.snr is not None and not (isinstance(self.snr, numbers.Real)
                                         and self.snr >= 0):
            raise ValueError(f"snr={self.snr!r} must not be negative")

    def csbm_options(self) -> Dict[str, object]:
        r"""The ``csbm`` options that were set."""
        return {key: getattr(self, key) for key in CSBM_DEFAULTS
                if getattr(self, key) is not None}

    def check_for(self, name: str) -> None:
        r"""Raises :class:`ValueError` if these options do not fit dataset
        ``name`` (a split it does not have, ``csbm`` options elsewhere)."""
        key = str(name).strip().lower()
        if key != "csbm" and self.csbm_options():
            raise ValueError(
                f"option(s) {', '.join(sorted(self.csbm_options()))} "
                f"only apply to dataset 'csbm', not to '{key}'")
        allowed = splits_of(key)
        if self.split is not None and self.split not in allowed:
            raise bad_split_error(key, self.split, allowed)

    def split_for(self, name: str) -> str:
        r"""The split to load for dataset ``name``: :attr:`split`, or the
        dataset's default when unset (call :meth:`check_for` first)."""
        if self.split is not None:
            return self.split
        return splits_of(str(name).strip().lower())[0]

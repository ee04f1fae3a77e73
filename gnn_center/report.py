r"""Tables and plots from sweep results.

:func:`write_report` reads one or more ``results.jsonl`` files and writes

* ``results.md``: per dataset, mean ± std test accuracy (%) over seeds for
  each method (rows) and depth (columns), the best mean per depth in bold;
  a cell with runs that diverged is marked with a dagger and counted;
* ``results.csv``: the same numbers, one row per (dataset, method, depth);
* ``accuracy_<dataset>.png``: test accuracy against depth, one line per
  method with the standard deviation as error bars;
* ``energy_<dataset>_L<depth>.png`` and ``rank_<dataset>_L<depth>.png``:
  the relative Dirichlet energy and the effective rank of the selected
  model's hidden states against layer index, at one depth (the deepest
  available at most ``energy_depth``), mean over seeds.

The test accuracy of a diverged run is that of its best validation epoch
before the loss became NaN, so it stays in the mean. Each run key counts
once; ``gnn-center sweep`` reports only the cells of its config.
"""
import csv
import math
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set

from gnn_center.records import check_fields, iter_records

# Reading and summing records needs no torch; only the order of the
# built-in methods comes from gnn_center.nn, imported when needed.


def _method_order() -> Dict[str, int]:
    from gnn_center.nn import METHODS
    return {name: i for i, name in enumerate(METHODS)}


@dataclass
class CellSummary:
    dataset: str
    method: str
    num_layers: int
    runs: int
    mean: Optional[float]  # test accuracy in %
    std: Optional[float]
    diverged: int
    base_method: str = ""  # the method a variant builds on

    @property
    def centered(self) -> bool:
        return (self.base_method or self.method).startswith("centered")


def _mean_std(values: Sequence[float]):
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    var = sum((v - mean)**2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def unique_runs(records: Iterable[dict],
                keys: Optional[Set[str]] = None) -> List[dict]:
    r"""Finished runs, each run key once (the last record wins), and only
    the given keys when ``keys`` is set (e.g. the cells of the current
    config, when the file also holds runs of earlier settings)."""
    runs: Dict[object, dict] = {}
    for i, r in enumerate(records):
        if r.get("status") not in ("ok", "diverged"):
            continue
        key = r.get("key", i)
        if keys is not None and key not in keys:
            continue
        runs[key] = r
    return list(runs.values())


def summarize(records: Iterable[dict]) -> List[CellSummary]:
    r"""Mean and sample standard deviation of the test accuracy (in %)
    per (dataset, method, depth): datasets in first-seen order, the
    built-in methods in the order of :data:`gnn_center.nn.METHODS` and
    other labels after them in first-seen order (runs of a parallel sweep
    finish in no fixed order), depths increasing. ``runs`` counts the runs with an
    accuracy (a run that diverged before its first epoch has none) and
    ``diverged`` those that diverged. Pass records through
    :func:`unique_runs` first."""
    method_order = _method_order()
    groups: Dict[tuple, list] = defaultdict(list)
    order_d: Dict[str, int] = {}
    order_m: Dict[str, int] = {}
    for r in records:
        order_d.setdefault(r["dataset"], len(order_d))
        order_m.setdefault(r["method"], len(method_order) + len(order_m))
        groups[(r["dataset"], r["method"], r["num_layers"])].append(r)
    rows = []
    for (dataset, method, depth), runs in groups.items():
        accs = [100 * r["test_acc"] for r in runs
                if r.get("test_acc") is not None]
        mean, std = _mean_std(accs)
        rows.append(CellSummary(dataset, method, depth, len(accs), mean, std,
                                sum(r["status"] == "diverged"
                                    for r in runs),
                                runs[0].get("base_method", method)))
    rows.sort(key=lambda c: (order_d[c.dataset],
                             method_order.get(c.method, order_m[c.method]),
                             c.num_layers))
    return rows


def markdown_tables(rows: List[CellSummary]) -> str:
    r"""One Markdown table per dataset: methods × depths."""
    parts = []
    for dataset in dict.fromkeys(r.dataset for r in rows):
        sub = [r for r in rows if r.dataset == dataset]
        depths = sorted({r.num_layers for r in sub})
        methods = list(dict.fromkeys(r.method for r in sub))
        cell = {(r.method, r.num_layers): r for r in sub}
        best = {}
        for depth in depths:
            means = [cell[m, depth].mean for m in methods
                     if (m, depth) in cell and cell[m, depth].mean is not None]
            best[depth] = max(means) if means else None
        most = max((r.runs for r in sub if r.runs), default=0)
        partial = any(0 < r.runs < most for r in sub)
        lines = [f"### {dataset}", "",
                 f"Test accuracy (%), mean ± std over {most} seed(s)"
                 + ("; (n): a cell with only n seeds so far" if partial
                    else "") + "; best per depth in bold.", "",
                 "| method | " + " | ".join(f"L={d}" for d in depths) + " |",
                 "|---|" + "---:|" * len(depths)]
        for method in methods:
            entries = []
            for depth in depths:
                c = cell.get((method, depth))
                if c is None:
                    entries.append("–")
                    continue
                if c.mean is None:
                    text = "–"
                else:
                    # One run has no spread to show.
                    text = (f"{c.mean:.1f}" if c.runs == 1
                            else f"{c.mean:.1f} ± {c.std:.1f}")
                    if best[depth] is not None and c.mean == best[depth]:
                        text = f"**{text}**"
                    if c.runs < most:
                        text += f" ({c.runs})"
                if c.diverged:
                    text += f" †{c.diverged}"
                entries.append(text)
            lines.append(f"| {method} | " + " | ".join(entries) + " |")
        if any(r.diverged for r in sub):
            lines += ["", "† n: n runs diverged (NaN loss); their accuracy is "
                      "that of the best epoch before."]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def write_csv(rows: List[CellSummary], path: os.PathLike) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["dataset", "method", "num_layers", "runs",
                         "test_acc_mean", "test_acc_std", "diverged"])
        for r in rows:
            writer.writerow([
                r.dataset, r.method, r.num_layers, r.runs,
                "" if r.mean is None else f"{r.mean:.2f}",
                "" if r.std is None else f"{r.std:.2f}", r.diverged
            ])


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _style(index: int, centered: bool) -> dict:
    # Centered methods solid, the others dashed; 20 distinct colours.
    import matplotlib
    return dict(color=matplotlib.colormaps["tab20"](index % 20),
                linestyle="-" if centered else "--")


def plot_accuracy(rows: List[CellSummary], dataset: str,
                  path: os.PathLike) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    methods = dict.fromkeys(r.method for r in rows if r.dataset == dataset)
    for i, method in enumerate(methods):
        sub = [r for r in rows if r.dataset == dataset and r.method == method
               and r.mean is not None]
        if not sub:
            continue
        ax.errorbar([r.num_layers for r in sub], [r.mean for r in sub],
                    yerr=[r.std for r in sub], marker="o", capsize=3,
                    label=method, **_style(i, sub[0].centered))
    ax.set_xscale("log", base=2)
    ax.set_xlabel("number of message-passing layers")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{dataset}: accuracy against depth")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# Per-layer plots: (record key, file prefix, log scale). Relative energy
# shows collapse onto the operator's dominant eigenvector; effective rank
# shows collapse onto any few directions, which is how trained deep stacks
# without skips fail even where their energy stays up.
LAYER_PLOTS = (("relative_energy", "energy", True),
               ("effective_rank", "rank", False))


def plot_layer_measure(records: List[dict], dataset: str, depth: int,
                       path: os.PathLike, measure: str = "relative_energy",
                       methods: Optional[Sequence[str]] = None,
                       log: bool = True) -> bool:
    r"""Mean over seeds of a per-layer measure for each method at one
    depth; returns False when no run has it. ``methods`` fixes the order
    (and so the colours, as in the accuracy plot); methods not in it
    follow in first-seen order."""
    per_method: Dict[str, List[List[float]]] = defaultdict(list)
    centered: Dict[str, bool] = {}
    for r in records:
        metrics = r.get("layer_metrics")
        if (r.get("dataset") == dataset and r.get("num_layers") == depth
                and metrics and measure in metrics):
            per_method[r["method"]].append(metrics[measure])
            centered[r["method"]] = r.get("base_method", r["method"]) \
                .startswith("centered")
    if not per_method:
        return False
    order = list(dict.fromkeys(list(methods or []) + list(per_method)))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for i, method in enumerate(order):
        curves = per_method.get(method)
        if not curves:
            continue
        mean = [sum(v) / len(v) for v in zip(*curves)]
        if log:
            mean = [max(m, 1e-30) for m in mean]
        ax.plot(range(len(mean)), mean, label=method,
                **_style(i, centered[method]))
    if log:
        ax.set_yscale("log")
    name = measure.replace("_", " ")
    ax.set_xlabel("layer (0 = input embedding)")
    ax.set_ylabel(name)
    ax.set_title(f"{dataset}, {depth} layers: {name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def read_runs(paths: Sequence[os.PathLike]) -> List[dict]:
    r"""The records of the given results files, in order; raises
    :class:`~gnn_center.records.BadRecord` naming the file and line of a
    finished run that lacks a field the report needs."""
    records = []
    for path in paths:
        for number, record in iter_records(path):
            if record.get("status") in ("ok", "diverged"):
                check_fields(path, number, record)
            records.append(record)
    return records


def write_report(results: Sequence[os.PathLike],
                 out_dir: Optional[os.PathLike] = None,
                 energy_depth: int = 64,
                 keys: Optional[Set[str]] = None) -> Dict[str, object]:
    r"""Writes the table, CSV and plots for the given results files into
    ``out_dir`` (default: the folder of the first file), from each run key
    once and, if ``keys`` is given, only from those runs. Returns the
    Markdown text and the paths written."""
    paths = [Path(p) for p in results]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such results file; run "
                                    f"'gnn-center sweep CONFIG' first")
    records = unique_runs(read_runs(paths), keys)
    rows = summarize(records)
    if not rows:
        raise ValueError(f"{', '.join(map(str, paths))}: no finished runs "
                         f"to report")
    out = Path(out_dir) if out_dir is not None else paths[0].parent
    out.mkdir(parents=True, exist_ok=True)
    markdown = markdown_tables(rows)
    (out / "results.md").write_text(markdown)
    write_csv(rows, out / "results.csv")
    written = [out / "results.md", out / "results.csv"]
    for dataset in dict.fromkeys(r.dataset for r in rows):
        path = out / f"accuracy_{dataset}.png"
        plot_accuracy(rows, dataset, path)
        written.append(path)
        depths = sorted({r.num_layers for r in rows if r.dataset == dataset
                         and r.num_layers <= energy_depth})
        methods = list(dict.fromkeys(r.method for r in rows
                                     if r.dataset == dataset))
        for measure, prefix, log in LAYER_PLOTS if depths else ():
            path = out / f"{prefix}_{dataset}_L{depths[-1]}.png"
            if plot_layer_measure(records, dataset, depths[-1], path,
                                  measure, methods, log):
                written.append(path)
    return dict(markdown=markdown, paths=written)

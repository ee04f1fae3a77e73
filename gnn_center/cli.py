r"""The ``gnn-center`` command: a thin shell over
:func:`gnn_center.train.run`, :func:`gnn_center.sweep.run_sweep`,
:func:`gnn_center.report.write_report` and
:func:`gnn_center.data.dataset_status`."""
import argparse
import json
import os
import sys
from pathlib import Path
from typing import List, Optional

from gnn_center.config import SEED_LIMIT, ConfigError, load_config
from gnn_center.interrupts import interrupt_once, interrupts_deferred
from gnn_center.records import UsageError, append_record

EPILOG = "Datasets: set GNN_CENTER_DATA or --root to a folder in PyG's layout."


def _pick(args, config, what: str, values, default=None):
    r"""The flag's value, else the config's single value, else
    ``default``."""
    flag = getattr(args, what)
    if flag is not None:
        return flag
    if config is None:
        if default is not None:
            return default
        raise ConfigError(f"--{what} is required without --config")
    if len(values) != 1:
        raise ConfigError(f"{config.source}: {what}: the config lists "
                          f"{len(values)} ({', '.join(map(str, values))}); "
                          f"choose one with --{what}")
    return values[0]


def _train(args) -> int:
    from gnn_center.train import TrainOptions, run

    config = load_config(args.config) if args.config else None
    dataset = _pick(args, config, "dataset", config and config.datasets)
    method = _pick(args, config, "method", config and config.methods)
    layers = _pick(args, config, "layers", config and config.depths)
    seed = _pick(args, config, "seed", config and config.seeds, default=0)
    if not 0 <= seed < SEED_LIMIT:  # a config's seeds are checked on load
        raise ConfigError(f"--seed {seed} is out of range 0 to 2**32 - 1, "
                          f"the seeds torch and numpy accept")
    data, model, train, base, root = {}, {}, {}, method, None
    if config is not None:
        if method not in config.methods and method not in config.variants:
            raise ConfigError(f"{config.source}: method {method!r} is not in "
                              f"the config's methods or variants")
        base, root = config.base_method(method), config.root
        data, model, train = config.options_for(dataset.lower(), method,
                                                seed)
    # The flags override the config's merged options.
    model.update({k: v for k, v in dict(hidden_channels=args.hidden,
                                        dropout=args.dropout).items()
                  if v is not None})
    train.update({k: v for k, v in dict(
        lr=args.lr, weight_decay=args.weight_decay, max_epochs=args.epochs,
        patience=args.patience, device=args.device).items()
        if v is not None})
    try:
        record = run(dataset, base, layers, seed, root=args.root or root,
                     data_options=data, model_options=model,
                     train_options=TrainOptions(**train),
                     record_layer_metrics=not args.no_metrics and (
                         config is None or config.layer_metrics),
                     progress=not args.quiet)
    except (ValueError, UsageError):
        raise  # bad input: main says what (exit status 2)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, through interrupt_once
        print("gnn-center train: interrupted; no record was written",
              file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the run failed: say why
        print(f"{dataset} {method} L={layers} seed={seed}: error\n"
              f"  {type(err).__name__}: {err}")
        return 1
    record.update(method=method, base_method=base)
    _print_run(record, method, layers, seed)
    if args.out:
        try:
            with interrupts_deferred():  # the record is written whole
                append_record(args.out, record)
        except KeyboardInterrupt:  # held back until the record was stored
            print(f"gnn-center train: interrupted; the record was appended "
                  f"to {args.out}", file=sys.stderr)
            return 130
        print(f"  record appended to {args.out}")
    return 0 if record["status"] == "ok" else 1


def _print_run(record, method: str, layers: int, seed: int) -> None:
    split = f" ({record['split']})" if "split" in record else ""
    print(f"{record['dataset']}{split} {method} L={layers} seed={seed}: "
          f"{record['status']}")
    if record.get("error"):
        print(f"  {record['error']}")
    if record.get("best_epoch") is not None:
        print(f"  best epoch {record['best_epoch']} of "
              f"{record['epochs_run']}: train {100 * record['train_acc']:.1f}"
              f"  val {100 * record['val_acc']:.1f}"
              f"  test {100 * record['test_acc']:.1f}")
    if "time_per_epoch_s" in record:
        memory = ""
        if record.get("activation_memory_mb") is not None:
            memory = (f", {record['activation_memory_mb']:.0f} MB saved "
                      f"for backward")
        if record.get("peak_memory_mb") is not None:
            memory += f", CUDA peak {record['peak_memory_mb']:.0f} MB"
        print(f"  {1000 * record['time_per_epoch_s']:.1f} ms/epoch{memory}")


def _config_with_overrides(args):
    r"""The config of ``sweep`` and ``tune`` with ``--output-dir`` and
    ``--root`` applied, and the part of it that ``--datasets`` and
    ``--methods`` choose."""
    config = load_config(args.config)
    if args.output_dir:
        config.output_dir = Path(args.output_dir)
    if args.root:
        config.root = args.root
    return config, config.only(args.datasets, args.methods)


def _sweep(args) -> int:
    from gnn_center.ray_backend import RayNotInstalledError
    from gnn_center.sweep import run_sweep

    whole, config = _config_with_overrides(args)
    total = len(list(config.cells()))
    print(f"{config.name}: {len(config.datasets)} dataset(s) x "
          f"{len(config.methods)} method(s) x {len(config.depths)} depth(s) "
          f"x {len(config.seeds)} seed(s) = {total} runs -> "
          f"{config.output_dir}")
    try:
        summary = run_sweep(config, jobs=args.jobs, progress=not args.quiet,
                            backend=args.backend, address=args.address,
                            gpus_per_run=args.gpus_per_run,
                            wait_for_lock=args.wait_for_lock)
    except RayNotInstalledError as err:  # says how to install it
        print(f"gnn-center sweep: error: {err}", file=sys.stderr)
        return 2
    print(summary)
    if not args.no_report and summary.skipped + summary.finished:
        from gnn_center.report import write_report
        # The whole config's cells: a staged part shares the folder, and
        # its report must not replace the whole one with the part alone.
        report = write_report([summary.results_path],
                              keys={cell.key for cell in whole.cells()})
        print()
        print(report["markdown"])
        print("wrote " + ", ".join(str(p) for p in report["paths"]))
    if summary.interrupted:
        return 130
    return 1 if summary.errors else 0


def _tune(args) -> int:
    from gnn_center.tune import SUMMARY_FILE, tune

    whole, config = _config_with_overrides(args)
    summary = tune(config, storage=args.storage, jobs=args.jobs,
                   quiet=args.quiet, whole=whole,
                   wait_for_lock=args.wait_for_lock)
    print((config.output_dir / SUMMARY_FILE).read_text())
    for path in summary.generated:
        print(f"selected settings: {path}")
    for final in summary.final:
        print(final)
    if summary.incomplete and not summary.interrupted:
        print("incomplete studies (no final runs): "
              + ", ".join(str(r.cell) for r in summary.incomplete))
    if summary.interrupted:
        print("interrupted: rerun the same command to continue")
        return 130
    errors = any(final.errors for final in summary.final)
    return 1 if summary.incomplete or errors else 0


def _report(args) -> int:
    from gnn_center.report import write_report

    report = write_report(args.results, args.out,
                          energy_depth=args.energy_depth)
    print(report["markdown"])
    print("wrote " + ", ".join(str(p) for p in report["paths"]))
    return 0


def _datasets(args) -> int:
    from gnn_center.data import dataset_status, resolve_root

    status = dataset_status(args.root)
    print(f"dataset root: {resolve_root(args.root)}")
    width = max(len(name) for name, _, _ in status)
    for name, available, where in status:
        print(f"  {name:<{width}}  {'yes' if available else 'no ':3}  "
              f"{where}")
    if args.json:
        print(json.dumps({name: dict(available=available, where=where)
                          for name, available, where in status}))
    return 0


def _add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train one model and print its metrics",
                       description="Train one (dataset, method, depth, seed) "
                       "run. Flags override the config; a config that lists "
                       "several values needs the flag to pick one.",
                       epilog=EPILOG)
    p.add_argument("--config", help="YAML experiment config")
    p.add_argument("--dataset", help="e.g. cora, chameleon, csbm")
    p.add_argument("--method", help="e.g. gcn, centered, centered-spectral")
    p.add_argument("--layers", type=int, help="message-passing layers, "
                   "2-128")
    p.add_argument("--seed", type=int)
    p.add_argument("--hidden", type=int, help="hidden channels")
    p.add_argument("--dropout", type=float)
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--epochs", type=int, help="maximum epochs")
    p.add_argument("--patience", type=int, help="early-stopping patience")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--root", help="dataset root (default: $GNN_CENTER_DATA "
                   "or the user cache)")
    p.add_argument("--out", help="append the run's record to this JSON-lines "
                   "file")
    p.add_argument("--no-metrics", action="store_true",
                   help="skip the per-layer oversmoothing measures")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)


def _add_subset_arguments(p) -> None:
    p.add_argument("--datasets", nargs="+", metavar="NAME",
                   help="only these of the config's datasets (a staged run; "
                   "results and studies are shared with the whole config)")
    p.add_argument("--methods", nargs="+", metavar="NAME",
                   help="only these of the config's methods or variants")


def _add_wait_argument(p) -> None:
    p.add_argument("--wait-for-lock", action="store_true",
                   help="if another sweep or tune is writing the output "
                   "folder, wait for it to end instead of stopping (then "
                   "skip the runs it finished)")


def _add_sweep_parser(sub) -> None:
    p = sub.add_parser("sweep", help="run a resumable depth sweep",
                       description="Run every (dataset, method, depth, seed) "
                       "cell of CONFIG, appending each result to "
                       "<output_dir>/results.jsonl as it finishes. Re-running "
                       "skips finished cells. Writes the report at the end.",
                       epilog=EPILOG)
    p.add_argument("config", help="YAML experiment config")
    p.add_argument("--jobs", type=int, default=1,
                   help="parallel processes (default 1)")
    p.add_argument("--output-dir", help="override the config's output_dir")
    p.add_argument("--root", help="override the dataset root")
    _add_subset_arguments(p)
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="run the cells as processes on this machine "
                   "(default) or as Ray tasks (needs the ray extra)")
    p.add_argument("--address", help="with --backend ray: 'auto' or "
                   "HOST:PORT joins a Ray cluster (default: start Ray on "
                   "this machine)")
    p.add_argument("--gpus-per-run", type=float, default=1.0,
                   help="with --backend ray: share of a GPU each run on "
                   "CUDA reserves, in (0, 1] (default 1)")
    p.add_argument("--no-report", action="store_true",
                   help="do not write the table and plots at the end")
    _add_wait_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_sweep)


def _add_tune_parser(sub) -> None:
    p = sub.add_parser(
        "tune", help="tune every method with Optuna, then run the best",
        description="One Optuna study per (dataset, method, depth) of "
        "CONFIG, searching its tune: section's space with a seeded TPE "
        "sampler and pruning on the per-epoch validation accuracy; "
        "selection uses validation accuracy only, and every method gets "
        "the same trial count and epoch budget. Trials are saved in the "
        "storage as they end, so rerunning continues every study to its "
        "trial count; a trial that Ctrl-C or SIGTERM stopped runs again "
        "with its own settings, from the checkpoints its training left in "
        "<output_dir>/checkpoints/. Then writes "
        "<output_dir>/tuned/<dataset>-L<depth>.yaml "
        "(the selected settings as sweep variants) and runs them over the "
        "final seeds into <output_dir>/results.jsonl, as `sweep` would "
        "(finished runs are skipped); <output_dir>/tune.md lists the "
        "studies.", epilog=EPILOG)
    p.add_argument("config", help="YAML experiment config with a tune: "
                   "section")
    p.add_argument("--storage", help="Optuna storage: an RDB URL "
                   "(sqlite:///..., postgresql://...) or a journal file "
                   "path; several processes or machines may share it "
                   "(default: sqlite:///<output_dir>/optuna.db)")
    p.add_argument("--jobs", type=int, default=1,
                   help="worker processes (one thread each) against the "
                   "storage (default 1)")
    _add_subset_arguments(p)
    p.add_argument("--output-dir", help="override the config's output_dir")
    p.add_argument("--root", help="override the dataset root")
    p.add_argument("--quiet", action="store_true",
                   help="no per-trial lines or progress bars")
    _add_wait_argument(p)
    p.set_defaults(func=_tune)


def _add_report_parser(sub) -> None:
    p = sub.add_parser("report", help="tables and plots from results",
                       description="Write results.md, results.csv and PNG "
                       "plots from one or more results.jsonl files.")
    p.add_argument("results", nargs="+", help="results.jsonl file(s)")
    p.add_argument("--out", help="output folder (default: that of the first "
                   "results file)")
    p.add_argument("--energy-depth", type=int, default=64,
                   help="depth whose per-layer energy and effective rank "
                   "are plotted (the deepest run up to it; default 64)")
    p.set_defaults(func=_report)


def _add_datasets_parser(sub) -> None:
    p = sub.add_parser("datasets", help="list datasets and local availability",
                       description="List the known dataset names and whether "
                       "each can be loaded without a download.",
                       epilog=EPILOG)
    p.add_argument("--root", help="dataset root to check")
    p.add_argument("--json", action="store_true", help="also print JSON")
    p.set_defaults(func=_datasets)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gnn-center",
        description="Deep GNNs with centered message passing: train, sweep "
        "depths, report.", epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True,
                                metavar="COMMAND")
    _add_train_parser(sub)
    _add_sweep_parser(sub)
    _add_tune_parser(sub)
    _add_report_parser(sub)
    _add_datasets_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # `kill <pid>` or a scheduler's time limit keeps finished work as
        # Ctrl-C does; a second signal cannot cut the clean-up short.
        with interrupt_once():
            code = args.func(args)
        sys.stdout.flush()  # here, so that a closed pipe is caught below
        return code
    except (ConfigError, UsageError, ValueError, FileNotFoundError) as err:
        print(f"gnn-center {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a command without its own clean-up
        print(f"gnn-center {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`gnn-center datasets | head`): stop quietly,
        # and keep Python from complaining again when it flushes stdout.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())

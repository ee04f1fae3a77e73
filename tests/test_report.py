import json
import subprocess
import sys

import pytest

from gnn_center.records import BadRecord
from gnn_center.report import (markdown_tables, summarize, unique_runs,
                               write_report)


def record(method, depth, seed, acc, status="ok", key=None):
    return dict(dataset="cora", method=method, num_layers=depth, seed=seed,
                test_acc=acc, status=status,
                key=key or f"{method}-{depth}-{seed}")


def test_mean_std_and_best_marking():
    rows = summarize(unique_runs([
        record("gcn", 2, 0, 0.80), record("gcn", 2, 1, 0.82),
        record("centered", 2, 0, 0.70), record("centered", 2, 1, 0.74),
    ]))
    by = {(r.method, r.num_layers): r for r in rows}
    assert by["gcn", 2].runs == 2
    assert abs(by["gcn", 2].mean - 81.0) < 1e-9
    assert abs(by["gcn", 2].std - 1.4142135) < 1e-6  # sample std
    text = markdown_tables(rows)
    assert "| gcn | **81.0 ± 1.4** |" in text
    assert "| centered | 72.0 ± 2.8 |" in text


def test_partial_sweep_marks_cells_with_fewer_seeds():
    text = markdown_tables(summarize(unique_runs([
        record("gcn", 2, 0, 0.80), record("gcn", 2, 1, 0.82),
        record("gcn", 8, 0, 0.30),
    ])))
    assert "over 2 seed(s); (n): a cell with only n seeds so far" in text
    # One run shows no spread and says how many seeds it rests on.
    assert "| gcn | **81.0 ± 1.4** | **30.0** (1) |" in text


def test_built_in_methods_keep_their_order_whatever_finished_first():
    rows = summarize(unique_runs([
        record("my-variant", 2, 0, 0.5), record("gcnii", 2, 0, 0.8),
        record("other", 2, 0, 0.6), record("centered", 2, 0, 0.7),
        record("gcn", 2, 0, 0.75),
    ]))
    assert [r.method for r in rows] == [
        "gcn", "centered", "gcnii", "my-variant", "other"]


def test_duplicates_errors_and_foreign_keys_are_left_out():
    records = [
        record("gcn", 2, 0, 0.50, key="a"),
        record("gcn", 2, 0, 0.80, key="a"),  # the same run again: last wins
        record("gcn", 2, 1, 0.90, key="old"),  # earlier settings
        record("gcn", 2, 2, None, status="error", key="b"),
    ]
    runs = unique_runs(records, keys={"a", "b"})
    rows = summarize(runs)
    assert len(rows) == 1 and rows[0].runs == 1
    assert abs(rows[0].mean - 80.0) < 1e-9


def test_diverged_runs_are_marked_and_counted():
    rows = summarize(unique_runs([
        record("residual", 128, 0, 0.30, status="diverged"),
        record("residual", 128, 1, None, status="diverged"),
        record("residual", 64, 0, None, status="diverged"),
    ]))
    by = {r.num_layers: r for r in rows}
    assert by[128].runs == 1 and by[128].diverged == 2
    text = markdown_tables(rows)
    assert "**30.0** †2" in text
    assert "| – †1 |" in text


def test_layer_plots_share_the_accuracy_plot_order_and_colours(
        tmp_path, monkeypatch):
    import json

    from pathlib import Path

    import matplotlib
    from matplotlib.figure import Figure

    from gnn_center import report

    def with_layers(method, seed, energy, rank):
        r = record(method, 4, seed, 0.5)
        r["layer_metrics"] = dict(relative_energy=energy,
                                  effective_rank=rank)
        return r

    # centered finishes first, but gcn comes first in the table.
    runs = [with_layers("centered", 0, [0.2, 0.4], [3.0, 5.0]),
            with_layers("gcn", 0, [0.1, 0.2], [2.0, 1.0]),
            with_layers("gcn", 1, [0.3, 0.4], [4.0, 3.0])]
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in runs))
    drawn = {}
    save = Figure.savefig

    def grab(fig, fname, *args, **kwargs):
        handles, labels = fig.axes[0].get_legend_handles_labels()
        # An errorbar's legend handle is a container; its line comes first.
        lines = [h if hasattr(h, "get_ydata") else h[0] for h in handles]
        drawn[Path(fname).name] = [
            (label, list(line.get_ydata()), line.get_color())
            for label, line in zip(labels, lines)]
        return save(fig, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", grab)
    report.write_report([path])
    colour = [matplotlib.colors.to_hex(matplotlib.colormaps["tab20"](i))
              for i in range(2)]
    assert [(label, matplotlib.colors.to_hex(c))
            for label, _, c in drawn["energy_cora_L4.png"]] == [
        ("gcn", colour[0]), ("centered", colour[1])]
    accuracy = {label: matplotlib.colors.to_hex(c)
                for label, _, c in drawn["accuracy_cora.png"]}
    assert accuracy == {"gcn": colour[0], "centered": colour[1]}
    # Curves are the mean over seeds, per layer.
    assert drawn["energy_cora_L4.png"][0][1] == [0.2, 0.30000000000000004]
    assert drawn["rank_cora_L4.png"][0][1] == [3.0, 2.0]
    assert drawn["rank_cora_L4.png"][1][1] == [3.0, 5.0]


def test_report_imports_no_torch():
    # Reading records is the ground floor: the report sits beside the
    # runner, not on top of it.
    code = ("import sys, gnn_center.report; "
            "print(sorted(m for m in ('torch', 'gnn_center.sweep', "
            "'gnn_center.train') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_record_without_a_dataset_names_the_file_and_line(tmp_path):
    path = tmp_path / "results.jsonl"
    good = record("gcn", 2, 0, 0.8)
    bad = {k: v for k, v in record("gcn", 2, 1, 0.7).items()
           if k != "dataset"}
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(BadRecord, match=f"{path}, line 2: the record has no "
                       f"'dataset' field"):
        write_report([path])

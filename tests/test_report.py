from gnn_center.report import markdown_tables, summarize, unique_runs


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

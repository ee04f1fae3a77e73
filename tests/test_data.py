import dataclasses
import functools
import gzip
import http.server
import os
import pickle
import shutil
import socket
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch_geometric.utils import (
    coalesce,
    contains_self_loops,
    homophily,
    is_undirected,
)

import gnn_center.data.files as data_files
import gnn_center.data.ogb as data_ogb
import gnn_center.data.sizes as data_sizes
from conftest import in_ci
from gnn_center.data import (
    DATASETS,
    DatasetNotFoundError,
    NodeTask,
    cache_dir,
    dataset_status,
    load_dataset,
    resolve_root,
)

# name: (nodes, features, classes, undirected edges without self-loops) from
# /work/shared/datasets/README.md; the edge counts of the directed datasets
# are those after symmetrisation (e.g. chameleon 31371 * 2, actor 26659 * 2).
SHARED = {
    "cora": (2708, 1433, 7, 10556),
    "citeseer": (3327, 3703, 6, 9104),
    "cornell": (183, 1703, 5, 554),
    "texas": (183, 1703, 5, 558),
    "wisconsin": (251, 1703, 5, 900),
    "chameleon": (2277, 2325, 5, 62742),
    "squirrel": (5201, 2089, 5, 396706),
    "actor": (7600, 932, 5, 53318),
    "photo": (7650, 745, 8, 238162),
    "computers": (13752, 767, 10, 491722),
    "cs": (18333, 6805, 15, 163788),
    "physics": (34493, 8415, 5, 495924),
}
PLANETOID_PUBLIC = {"cora": (140, 500, 1000), "citeseer": (120, 500, 1000)}
# name: the geom-gcn split files, relative to the shared root.
GEOM_GCN = {
    "cornell": "WebKB/cornell/raw/cornell_split_0.6_0.2_{}.npz",
    "texas": "WebKB/texas/raw/texas_split_0.6_0.2_{}.npz",
    "wisconsin": "WebKB/wisconsin/raw/wisconsin_split_0.6_0.2_{}.npz",
    "chameleon": "WikipediaNetwork/chameleon/geom_gcn/raw/"
    "chameleon_split_0.6_0.2_{}.npz",
    "squirrel": "WikipediaNetwork/squirrel/geom_gcn/raw/"
    "squirrel_split_0.6_0.2_{}.npz",
    "actor": "Actor/raw/film_split_0.6_0.2_{}.npz",
}


def listing(folder: Path) -> dict:
    """Every entry below `folder` with its size and modification time."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for entry in dirnames + filenames:
            path = Path(dirpath) / entry
            stat = path.lstat()
            out[str(path.relative_to(folder))] = (stat.st_size,
                                                  stat.st_mtime_ns)
    return out


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """One fresh cache for the whole module, so nothing lands in ~/.cache."""
    path = tmp_path_factory.mktemp("gnn-center-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GNN_CENTER_CACHE", str(path))
        yield path
    shutil.rmtree(path)  # About 2 GB of processed datasets.


@pytest.fixture(scope="module")
def shared_root():
    """The shared dataset copy, reached only through GNN_CENTER_DATA. Its
    listing must be the same after all tests."""
    value = os.environ.get("GNN_CENTER_DATA")
    if not value or not Path(value).is_dir():
        message = (f"GNN_CENTER_DATA={value!r} is not a dataset folder; "
                   f"point it at the shared copy (e.g. /work/shared/datasets)")
        if in_ci():
            pytest.fail(f"CI must run the dataset tests: {message}")
        pytest.skip(message)
    root = Path(value)
    before = listing(root)
    yield root
    assert listing(root) == before, "something was written into the root"


def check_graph(task: NodeTask):
    data = task.data
    n = data.num_nodes
    assert data.x.dtype == torch.float32
    assert data.x.shape == (n, task.num_features)
    assert data.y.dtype == torch.long and data.y.shape == (n, )
    assert 0 <= int(data.y.min()) and int(data.y.max()) < task.num_classes
    for key in ("train_mask", "val_mask", "test_mask"):
        assert data[key].dtype == torch.bool and data[key].shape == (n, )
        assert data[key].any()
    assert not (data.train_mask & data.val_mask).any()
    assert not (data.train_mask & data.test_mask).any()
    assert not (data.val_mask & data.test_mask).any()
    assert is_undirected(data.edge_index, num_nodes=n)
    assert not contains_self_loops(data.edge_index)
    assert torch.equal(coalesce(data.edge_index, num_nodes=n),
                       data.edge_index)
    assert task.metric == "accuracy"


# Datasets of the shared copy ################################################


@pytest.mark.parametrize("name", list(SHARED))
def test_shared_dataset(shared_root, name):
    task = load_dataset(name.upper())  # Root from GNN_CENTER_DATA.
    nodes, features, classes, edges = SHARED[name]
    data = task.data
    assert task.name == name
    assert (data.num_nodes, task.num_features, task.num_classes,
            data.num_edges) == (nodes, features, classes, edges)
    check_graph(task)

    # Row-normalised 0/1 features: each row sums to 1 (or is all zero).
    row_sum = data.x.sum(dim=1)
    assert torch.allclose(row_sum[row_sum > 0], torch.ones(1), atol=1e-4)

    sizes = tuple(int(data[k].sum())
                  for k in ("train_mask", "val_mask", "test_mask"))
    if name in PLANETOID_PUBLIC:
        assert task.split == "public"
        assert sizes == PLANETOID_PUBLIC[name]
    elif name in GEOM_GCN:
        assert task.split == "geom-gcn:0"
        other = load_dataset(name, split_index=7)
        assert other.split == "geom-gcn:7"
        for index, t in ((0, task), (7, other)):
            file = np.load(shared_root / GEOM_GCN[name].format(index))
            for key in ("train_mask", "val_mask", "test_mask"):
                assert torch.equal(t.data[key],
                                   torch.from_numpy(file[key]).bool())
        assert not torch.equal(task.data.train_mask, other.data.train_mask)
        assert torch.equal(task.data.edge_index, other.data.edge_index)
    else:
        assert task.split == "random(20/30 per class, seed=0)"
        assert sizes == (20 * classes, 30 * classes, nodes - 50 * classes)
        for c in range(classes):
            in_class = data.y == c
            assert int((data.train_mask & in_class).sum()) == 20
            assert int((data.val_mask & in_class).sum()) == 30


def test_geom_gcn_split_index_range(shared_root):
    for bad in (-1, 10, 2.5):
        with pytest.raises(ValueError, match=r"split_index.*0-9"):
            load_dataset("texas", split_index=bad)


def test_planetoid_splits(shared_root):
    raw = load_dataset("cora", normalize_features=False)
    assert set(raw.data.x.unique().tolist()) == {0.0, 1.0}

    full = load_dataset("cora", split="full")
    assert full.split == "full"
    assert int(full.data.train_mask.sum()) == 2708 - 1500
    check_graph(full)

    state = torch.get_rng_state()
    a = load_dataset("cora", split="random", seed=3)
    b = load_dataset("cora", split="random", seed=3)
    c = load_dataset("cora", split="random", seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert a.split == "random(20 per class/500/1000, seed=3)"
    check_graph(a)
    assert [int(a.data[k].sum()) for k in ("train_mask", "val_mask",
                                           "test_mask")] == [140, 500, 1000]
    assert torch.bincount(a.data.y[a.data.train_mask]).tolist() == [20] * 7
    assert torch.equal(a.data.train_mask, b.data.train_mask)
    assert torch.equal(a.data.test_mask, b.data.test_mask)
    assert not torch.equal(a.data.train_mask, c.data.train_mask)


def test_random_split_depends_on_seed_only(shared_root):
    state = torch.get_rng_state()
    a = load_dataset("photo", seed=1)
    b = load_dataset("photo", seed=1)
    c = load_dataset("photo", seed=2)
    assert torch.equal(torch.get_rng_state(), state)
    assert a.split == "random(20/30 per class, seed=1)"
    assert torch.equal(a.data.train_mask, b.data.train_mask)
    assert torch.equal(a.data.val_mask, b.data.val_mask)
    assert not torch.equal(a.data.train_mask, c.data.train_mask)


def test_dataset_status_of_shared_copy(shared_root):
    status = {name: (ok, where) for name, ok, where in dataset_status()}
    assert list(status) == list(DATASETS)
    for name in SHARED:
        assert status[name][0], status[name]
        # The status names the resolved root (a symlinked copy resolves).
        assert status[name][1].startswith(str(shared_root.resolve()))
    assert not status["pubmed"][0]
    assert "ind.pubmed.x" in status["pubmed"][1]
    assert not status["ogbn-arxiv"][0]
    assert status["csbm"][0]


# csbm #######################################################################


def test_csbm_defaults():
    task = load_dataset("csbm")
    data = task.data
    assert task.name == "csbm"
    assert (data.num_nodes, task.num_features, task.num_classes) == (1000,
                                                                     32, 2)
    check_graph(task)
    assert torch.bincount(data.y).tolist() == [500, 500]
    assert task.split == "random(20/30 per class, seed=0)"
    for c in range(2):
        assert int((data.train_mask & (data.y == c)).sum()) == 20
        assert int((data.val_mask & (data.y == c)).sum()) == 30
    # Defaults: expected degree 10, edge homophily 0.8.
    assert abs(data.num_edges / data.num_nodes - 10) < 0.6
    assert abs(homophily(data.edge_index, data.y) - 0.8) < 0.03


def test_csbm_statistics():
    n, num_classes, p_in, p_out = 1200, 3, 0.03, 0.002
    task = load_dataset("csbm", seed=5, num_nodes=n, num_classes=num_classes,
                        p_intra=p_in, p_inter=p_out, feature_dim=16)
    data = task.data
    check_graph(task)
    sizes = torch.bincount(data.y)
    assert sizes.tolist() == [400, 400, 400]
    # Expected edges within and across blocks over all unordered pairs.
    intra = p_in * sum(s * (s - 1) / 2 for s in sizes.tolist())
    inter = p_out * (n * n - sum(s * s for s in sizes.tolist())) / 2
    expected = intra / (intra + inter)
    assert abs(homophily(data.edge_index, data.y) - expected) < 0.02
    assert abs(data.num_edges / 2 - (intra + inter)) < 4 * (intra +
                                                            inter)**0.5


@pytest.mark.parametrize("snr", [0.0, 1.0, 3.0])
def test_csbm_feature_means_follow_snr(snr):
    task = load_dataset("csbm", snr=snr, seed=1, num_nodes=2000,
                        feature_dim=8)
    data = task.data
    means = torch.stack([data.x[data.y == c].mean(dim=0) for c in range(2)])
    # Each empirical class mean is snr * (unit vector) + noise of variance
    # 1 / 1000 per coordinate.
    assert torch.allclose(means.norm(dim=1), torch.full((2, ), snr),
                          atol=0.15)
    # The noise around the class mean is N(0, I).
    noise = data.x - means[data.y]
    assert abs(float(noise.var()) - 1.0) < 0.05


def test_csbm_is_deterministic_per_seed():
    state = torch.get_rng_state()
    a = load_dataset("csbm", seed=7)
    b = load_dataset("csbm", seed=7)
    c = load_dataset("csbm", seed=8)
    assert torch.equal(torch.get_rng_state(), state)
    for key in ("x", "edge_index", "y", "train_mask", "val_mask",
                "test_mask"):
        assert torch.equal(a.data[key], b.data[key])
    assert not torch.equal(a.data.x, c.data.x)
    assert not torch.equal(a.data.train_mask, c.data.train_mask)
    assert (a.data.edge_index.shape != c.data.edge_index.shape
            or not torch.equal(a.data.edge_index, c.data.edge_index))


def test_csbm_bad_options():
    with pytest.raises(TypeError, match="num_nodez"):
        load_dataset("csbm", num_nodez=10)
    with pytest.raises(ValueError, match="num_nodes"):
        load_dataset("csbm", num_nodes=50)
    with pytest.raises(ValueError, match="p_intra"):
        load_dataset("csbm", p_intra=1.5)
    with pytest.raises(ValueError, match="Unknown split"):
        load_dataset("csbm", split="public")
    with pytest.raises(ValueError, match="only apply to dataset 'csbm'"):
        load_dataset("cora", num_nodes=10)


def test_evaluate():
    task = load_dataset("csbm")
    y, mask = task.data.y, task.data.test_mask
    logits = torch.nn.functional.one_hot(y, 2).float()
    assert task.evaluate(logits, mask) == 1.0
    zeros = torch.zeros_like(y)
    expected = float((y[mask] == 0).float().mean())
    assert task.evaluate(zeros, mask) == pytest.approx(expected)
    with pytest.raises(ValueError, match="integer"):
        task.evaluate(zeros.float(), mask)
    with pytest.raises(ValueError, match="all 1000 nodes"):
        task.evaluate(zeros[:10], mask)
    with pytest.raises(ValueError, match="no nodes"):
        task.evaluate(zeros, torch.zeros_like(mask))
    with pytest.raises(ValueError, match="boolean mask"):
        task.evaluate(zeros, mask.long())


def test_evaluate_ogb_matches_plain_accuracy():
    # An ogbn-* task scores through OGB's Evaluator (built once per name);
    # on the same predictions it must agree with the plain count.
    task = load_dataset("csbm")
    ogb_task = dataclasses.replace(task, ogb_name="ogbn-arxiv")
    y, mask = task.data.y, task.data.test_mask
    pred = torch.where(torch.arange(y.numel()) % 3 == 0, 1 - y, y)
    expected = float((pred[mask] == y[mask]).float().mean())
    assert 0.5 < expected < 0.8
    assert ogb_task.evaluate(pred, mask) == pytest.approx(expected)
    assert ogb_task.evaluate(pred, mask) == pytest.approx(expected)
    assert data_ogb.evaluator.cache_info().hits >= 1


# Names, splits, roots, offline errors #######################################


def test_dataset_names():
    assert all(name == name.lower() for name in DATASETS)
    assert set(SHARED) | {"pubmed", "ogbn-arxiv", "csbm"} <= set(DATASETS)
    with pytest.raises(ValueError) as info:
        load_dataset("coraa")
    for name in ("coraa", "cora", "ogbn-arxiv", "texas", "physics", "csbm"):
        assert name in str(info.value)
    with pytest.raises(ValueError, match="Unknown dataset 'ogbn-foo'"):
        load_dataset("ogbn-foo")
    with pytest.raises(ValueError, match="heterogeneous"):
        load_dataset("ogbn-mag")
    with pytest.raises(ValueError, match="rocauc"):
        load_dataset("ogbn-proteins")


@pytest.fixture
def without_ogb(monkeypatch):
    # As in an environment where `ogb` was never installed.
    import importlib.util
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "ogb"
                        else find_spec(name, *args))
    for module in ("ogb", "ogb.nodeproppred"):
        monkeypatch.setitem(sys.modules, module, None)  # -> ImportError
    data_ogb.evaluator.cache_clear()
    yield
    data_ogb.evaluator.cache_clear()


def test_ogbn_names_without_ogb_say_what_to_install(without_ogb, tmp_path,
                                                      capsys):
    # Not "Unknown dataset 'ogbn-arxiv'", which the list of valid names
    # beside it would contradict.
    with pytest.raises(ModuleNotFoundError,
                       match=r"need the `ogb` package.*pip install") as info:
        load_dataset("ogbn-arxiv", tmp_path, download=False)
    assert info.value.name == "ogb"
    with pytest.raises(ModuleNotFoundError, match="pip install"):
        data_ogb.evaluator("ogbn-arxiv")
    # The listing still covers every name, ogbn-* as not loadable.
    status = {name: (ok, where) for name, ok, where in dataset_status(
        tmp_path)}
    assert list(status) == list(DATASETS)
    assert not status["ogbn-arxiv"][0]
    assert "pip install" in status["ogbn-arxiv"][1]
    assert status["csbm"][0]
    from gnn_center.cli import main
    assert main(["train", "--dataset", "ogbn-arxiv", "--method", "gcn",
                 "--layers", "2", "--root", str(tmp_path), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "need the `ogb` package" in captured.out + captured.err


@pytest.mark.parametrize("name,split,choices", [
    ("cora", "geom-gcn", "public, full, random"),
    ("texas", "public", "geom-gcn"),
    ("photo", "public", "random"),
    ("ogbn-arxiv", "random", "official"),
])
def test_bad_split_names(name, split, choices):
    with pytest.raises(ValueError, match=f"Unknown split.*{choices}"):
        load_dataset(name, split=split)


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("GNN_CENTER_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "a"
    monkeypatch.delenv("GNN_CENTER_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "gnn-center"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == tmp_path / "home" / ".cache" / "gnn-center"


def test_root_precedence(monkeypatch, tmp_path, tiny_files):
    monkeypatch.setenv("GNN_CENTER_DATA", str(tmp_path / "env"))
    assert resolve_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_root(str(tmp_path / "arg")) == tmp_path / "arg"
    assert resolve_root() == tmp_path / "env"
    monkeypatch.delenv("GNN_CENTER_DATA")
    assert resolve_root() == cache_dir()

    # The same, through load_dataset: two roots with different graphs.
    write_tiny_pubmed(tmp_path / "env", num_allx=600)
    write_tiny_pubmed(tmp_path / "arg", num_allx=650)
    monkeypatch.setenv("GNN_CENTER_DATA", str(tmp_path / "env"))
    assert load_dataset("pubmed").data.num_nodes == 700
    assert load_dataset("pubmed", tmp_path / "arg").data.num_nodes == 750


def test_offline_error_without_download(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("PubMed", tmp_path, download=False)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "'pubmed'" in message
    assert str(tmp_path / "Planetoid" / "PubMed") in message
    for suffix in ("x", "tx", "allx", "y", "ty", "ally", "graph",
                   "test.index"):
        assert f"Planetoid/PubMed/raw/ind.pubmed.{suffix}" in message
    assert "GNN_CENTER_DATA" in message and "download=False" in message
    # How to point at the files, from the command line and from Python,
    # with an absolute example path and what it must contain.
    assert "--root /" in message and "root='/" in message
    assert "GNN_CENTER_DATA=/" in message
    assert "<root>/Planetoid/PubMed/raw/ind.pubmed.x" in message
    assert "/Planetoid/PubMed/raw/ind.pubmed.x exists" in message
    assert "root=..." not in message
    assert listing(tmp_path) == {}

    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("ogbn-arxiv", tmp_path, download=False)
    for file in ("ogbn_arxiv/raw/edge.csv.gz", "ogbn_arxiv/raw/node_year",
                 "ogbn_arxiv/split/time/train.csv.gz"):
        assert file in str(info.value)


@pytest.fixture
def silent_server():
    """An HTTP address that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(32)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


@pytest.mark.parametrize("name,cls,folder", [
    ("pubmed", "Planetoid", "Planetoid/PubMed/raw"),
    ("texas", "WebKB", "WebKB/texas/raw"),
])
@pytest.mark.parametrize("use_root", [True, False])
def test_offline_error_when_download_hangs(monkeypatch, tmp_path,
                                           silent_server, name, cls, folder,
                                           use_root):
    import torch_geometric.datasets as datasets
    monkeypatch.setattr(getattr(datasets, cls), "url", silent_server)
    monkeypatch.setattr(data_files, "DOWNLOAD_TIMEOUT", 0.5)
    monkeypatch.setenv("GNN_CENTER_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("GNN_CENTER_DATA", raising=False)
    root = tmp_path / "root" if use_root else None
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(name, root)
    # It gave up because the socket timed out (not by luck of a refused
    # connection): the cause chain holds the timeout.
    causes, err = [], info.value
    while err is not None:
        causes.append(err)
        err = err.__cause__ or err.__context__
    assert any(isinstance(e, (TimeoutError, socket.timeout))
               or "timed out" in str(e) for e in causes), causes
    message = str(info.value)
    assert f"'{name}'" in message and "downloading them failed" in message
    assert str(resolve_root(root) / Path(folder).parent) in message
    # No partial download may pass for a complete file next time.
    for path in (tmp_path / "cache").rglob("*"):
        assert not path.is_file() or path.name.startswith(".gnn_center")
    assert not (tmp_path / "root").exists()


# Formats that the shared copy lacks, written by the tests ###################


@pytest.fixture
def tiny_files(monkeypatch):
    """The generated PubMed and ogbn-arxiv files are far smaller than the
    real ones: drop those two from the table of known sizes."""
    for name in ("pubmed", "ogbn-arxiv"):
        monkeypatch.delitem(data_sizes.EXPECTED_SIZES, name)


def write_tiny_pubmed(root: Path, num_allx=600, num_test=100, num_train=60,
                      num_features=20, num_classes=3, seed=0):
    """Planetoid's raw format: x/y the training nodes, allx/ally all nodes
    outside the test set (training nodes first), tx/ty the test nodes in the
    order of test.index, graph an adjacency dict. Returns features, labels,
    test index and the set of undirected edges."""
    rng = np.random.default_rng(seed)
    n = num_allx + num_test
    feats = rng.random((n, num_features)) * (rng.random(
        (n, num_features)) < 0.3)
    feats[:, 0] += 0.1  # No all-zero rows.
    labels = rng.integers(0, num_classes, n)
    onehot = np.eye(num_classes, dtype=np.int64)[labels]
    test_index = rng.permutation(np.arange(num_allx, n))
    graph = {i: [] for i in range(n)}
    for i, j in rng.integers(0, n, (3 * n, 2)).tolist():
        graph[i].append(j)
        graph[j].append(i)
    graph[5] += [5, 6, 6]  # A self-loop and duplicates.
    graph[6] += [5, 5]
    items = {
        "x": sp.csr_matrix(feats[:num_train]),
        "y": onehot[:num_train],
        "allx": sp.csr_matrix(feats[:num_allx]),
        "ally": onehot[:num_allx],
        "tx": sp.csr_matrix(feats[test_index]),
        "ty": onehot[test_index],
        "graph": graph,
    }
    raw = root / "Planetoid" / "PubMed" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for key, value in items.items():
        with open(raw / f"ind.pubmed.{key}", "wb") as f:
            pickle.dump(value, f, protocol=2)
    (raw / "ind.pubmed.test.index").write_text(
        "\n".join(str(i) for i in test_index) + "\n")
    edges = {(min(i, j), max(i, j))
             for i, adj in graph.items() for j in adj if i != j}
    return feats, labels, test_index, edges


def test_pubmed_from_generated_files(tmp_path, tiny_files):
    root = tmp_path / "root"
    feats, labels, test_index, edges = write_tiny_pubmed(root)
    before = listing(root)
    task = load_dataset("pubmed", root, normalize_features=False)
    data = task.data
    check_graph(task)
    assert task.name == "pubmed" and task.split == "public"
    assert (data.num_nodes, task.num_features, task.num_classes) == (700, 20,
                                                                     3)
    assert torch.allclose(data.x, torch.from_numpy(feats).float())
    assert torch.equal(data.y, torch.from_numpy(labels))
    assert torch.equal(data.train_mask.nonzero().view(-1), torch.arange(60))
    assert torch.equal(data.val_mask.nonzero().view(-1),
                       torch.arange(60, 560))
    assert torch.equal(data.test_mask.nonzero().view(-1),
                       torch.from_numpy(np.sort(test_index)))
    got = {(i, j) for i, j in data.edge_index.t().tolist() if i < j}
    assert got == edges and data.num_edges == 2 * len(edges)

    # PyG's NormalizeFeatures: x_i / max(1, sum_j x_ij) for x >= 0.
    normalized = load_dataset("pubmed", root).data.x
    x = torch.from_numpy(feats).float()
    expected = x / x.sum(dim=1, keepdim=True).clamp(min=1)
    assert torch.allclose(normalized, expected)
    assert not torch.allclose(normalized, x)
    assert listing(root) == before

    # New raw files in the root are processed anew, not served stale.
    write_tiny_pubmed(root, num_allx=640, seed=1)
    assert load_dataset("pubmed", root).data.num_nodes == 740


def write_tiny_arxiv(root: Path, num_nodes=60, num_edges=150, seed=0):
    """OGB's raw CSV layout of ogbn-arxiv (see ogb's master.csv and
    read_csv_graph_raw): gzipped headerless CSV files."""
    rng = np.random.default_rng(seed)
    folder = root / "ogbn_arxiv"
    edge = rng.integers(0, num_nodes, (num_edges, 2))
    edge[0] = [3, 3]  # A self-loop,
    edge[2] = edge[1]  # a duplicate and
    edge[4] = edge[3][::-1]  # a reciprocal edge.
    feat = rng.normal(size=(num_nodes, 8)).round(4)
    label = rng.integers(0, 40, (num_nodes, 1))
    perm = rng.permutation(num_nodes)
    files = {
        "raw/edge.csv.gz": edge,
        "raw/node-feat.csv.gz": feat,
        "raw/node-label.csv.gz": label,
        "raw/node_year.csv.gz": rng.integers(2000, 2020, (num_nodes, 1)),
        "raw/num-node-list.csv.gz": np.array([[num_nodes]]),
        "raw/num-edge-list.csv.gz": np.array([[num_edges]]),
        "split/time/train.csv.gz": perm[:30, None],
        "split/time/valid.csv.gz": perm[30:42, None],
        "split/time/test.csv.gz": perm[42:, None],
    }
    for name, array in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        fmt = "%.4f" if array.dtype.kind == "f" else "%d"
        with gzip.open(folder / name, "wt") as f:
            np.savetxt(f, array, fmt=fmt, delimiter=",")
    edges = {(min(i, j), max(i, j)) for i, j in edge.tolist() if i != j}
    split = {"train": perm[:30], "valid": perm[30:42], "test": perm[42:]}
    return feat, label[:, 0], split, edges


def test_ogbn_arxiv_from_generated_files(monkeypatch, tmp_path, tiny_files):
    def no_prompt(*args):
        raise AssertionError("OGB asked for input()")

    monkeypatch.setattr("builtins.input", no_prompt)
    root = tmp_path / "root"
    feat, label, split, edges = write_tiny_arxiv(root)
    before = listing(root)
    for _ in range(2):  # Processing, then loading the processed file.
        task = load_dataset("OGBN-ARXIV", root)
        data = task.data
        check_graph(task)
        assert task.name == "ogbn-arxiv" and task.split == "official:time"
        assert (data.num_nodes, task.num_features, task.num_classes) == (60,
                                                                         8,
                                                                         40)
        # Features as given (OGB's are not row-normalised), labels 1-D.
        assert torch.allclose(data.x, torch.from_numpy(feat).float())
        assert torch.equal(data.y, torch.from_numpy(label))
        got = {(i, j) for i, j in data.edge_index.t().tolist() if i < j}
        assert got == edges and data.num_edges == 2 * len(edges)
        for key, part in (("train_mask", "train"), ("val_mask", "valid"),
                          ("test_mask", "test")):
            assert torch.equal(data[key].nonzero().view(-1),
                               torch.from_numpy(np.sort(split[part])))
    assert listing(root) == before

    logits = torch.randn(60, 40, generator=torch.Generator().manual_seed(0))
    logits[data.test_mask.nonzero()[:5, 0], data.y[data.test_mask][:5]] = 9
    for mask, part in ((data.test_mask, "test"), (data.val_mask, "valid")):
        nodes = split[part]
        pred = logits.argmax(dim=1).numpy()
        expected = float((pred[nodes] == label[nodes]).mean())
        assert task.evaluate(logits, mask) == pytest.approx(expected)
        assert task.evaluate(logits.argmax(dim=1), mask) == pytest.approx(
            expected)
    assert task.evaluate(logits, data.test_mask) >= 5 / 18


@pytest.fixture
def file_server():
    """Serves a folder over HTTP on localhost: `file_server(folder)` gives
    its URL."""
    servers = []

    def serve(folder: Path) -> str:
        handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                    directory=str(folder))
        handler.log_message = lambda *args: None
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def test_download_into_cache(monkeypatch, tmp_path, file_server, tiny_files):
    # Without a root the cache is the root, and missing files are downloaded
    # into it: Planetoid's files one by one, OGB's as one zip archive.
    from torch_geometric.datasets import Planetoid

    monkeypatch.delenv("GNN_CENTER_DATA", raising=False)
    monkeypatch.setenv("GNN_CENTER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("builtins.input", None)  # OGB must not prompt.

    write_tiny_pubmed(tmp_path / "site")
    url = file_server(tmp_path / "site" / "Planetoid" / "PubMed" / "raw")
    monkeypatch.setattr(Planetoid, "url", url)
    assert not dict(
        (name, ok) for name, ok, _ in dataset_status())["pubmed"]
    assert load_dataset("pubmed").data.num_nodes == 700
    assert (tmp_path / "cache" / "Planetoid" / "PubMed" / "raw" /
            "ind.pubmed.graph").is_file()
    assert dict((name, ok) for name, ok, _ in dataset_status())["pubmed"]

    # OGB's archive unpacks to arxiv/ and is moved to ogbn_arxiv/.
    write_tiny_arxiv(tmp_path / "ogb")
    with zipfile.ZipFile(tmp_path / "site" / "arxiv.zip", "w") as archive:
        for path in sorted((tmp_path / "ogb" / "ogbn_arxiv").rglob("*")):
            name = path.relative_to(tmp_path / "ogb" / "ogbn_arxiv")
            archive.write(path, f"arxiv/{name}")
    url = file_server(tmp_path / "site") + "/arxiv.zip"
    master = data_ogb.master

    def patched_master():
        out = master()
        out["ogbn-arxiv"] = dict(out["ogbn-arxiv"], url=url)
        return out

    monkeypatch.setattr(data_ogb, "master", patched_master)
    task = load_dataset("ogbn-arxiv")
    assert task.data.num_nodes == 60 and int(task.data.test_mask.sum()) == 18
    folder = tmp_path / "cache" / "ogbn_arxiv"
    assert (folder / "raw" / "edge.csv.gz").is_file()
    assert (folder / "split" / "time" / "test.csv.gz").is_file()
    assert not list((tmp_path / "cache").glob("*download*"))


def test_ogb_import_starts_no_version_check():
    # In a fresh interpreter, where `import ogb` alone starts a thread that
    # asks PyPI for ogb's latest version (see ogb/version.py).
    code = """if True:
        import sys, threading
        import gnn_center.data.ogb as d
        started = []
        start = threading.Thread.start
        threading.Thread.start = lambda t: (started.append(t), start(t))[1]
        d.import_ogb()
        print(len(started), "ogb" in sys.modules, "outdated" in sys.modules)
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "True", "False"]


def test_parallel_loads_of_a_fresh_dataset(shared_root, tmp_path,
                                           monkeypatch):
    # Two processes process the same dataset into an empty cache at once;
    # both must get the whole graph (the loader serialises them).
    import subprocess
    import sys
    monkeypatch.setenv("GNN_CENTER_CACHE", str(tmp_path))
    code = ("from gnn_center.data import load_dataset; "
            "t = load_dataset('citeseer'); print(t.data.num_nodes)")
    procs = [subprocess.Popen([sys.executable, "-c", code],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [o[0].split()[-1] for o in outs] == ["3327", "3327"]


# Corrupt raw files ##########################################################


def copy_of_cora(shared_root: Path, tmp_path: Path) -> Path:
    """A writable root holding a copy of the shared Cora raw files; returns
    its raw folder."""
    raw = tmp_path / "root" / "Planetoid" / "Cora" / "raw"
    shutil.copytree(shared_root / "Planetoid" / "Cora" / "raw", raw)
    return raw


def test_truncated_raw_file_is_named(shared_root, tmp_path):
    raw = copy_of_cora(shared_root, tmp_path)
    x = raw / "ind.cora.x"
    x.write_bytes(x.read_bytes()[:x.stat().st_size // 2])
    with pytest.raises(ValueError) as info:
        load_dataset("cora", tmp_path / "root")
    message = str(info.value)
    assert type(info.value).__name__ == "DatasetFileError"
    assert "Dataset 'cora'" in message
    assert str(raw.parent) in message and "raw/ind.cora.x" in message
    # The original error stays attached and is quoted.
    assert info.value.__cause__ is not None
    assert type(info.value.__cause__).__name__ in message


def test_halved_test_index_fails_even_after_processing(shared_root,
                                                       tmp_path):
    raw = copy_of_cora(shared_root, tmp_path)
    root = tmp_path / "root"
    good = raw / "ind.cora.test.index"
    full = good.read_text()
    # Processed once while the files were right ...
    assert int(load_dataset("cora", root).data.test_mask.sum()) == 1000
    # ... then the test index loses half its lines.
    good.write_text("\n".join(full.split()[:500]) + "\n")
    for split in ("public", "full"):
        with pytest.raises(ValueError,
                           match=r"500 test nodes \(expected 1000\)") as info:
            load_dataset("cora", root, split=split)
        message = str(info.value)
        assert "Dataset 'cora'" in message
        assert "raw/ind.cora.test.index" in message
        assert "ind.cora.graph" not in message  # Only the files to blame.
    # A random split draws its own 1000 test nodes: still the node count
    # checks out, and it loads.
    assert load_dataset("cora", root, split="random").data.num_nodes == 2708
    good.write_text(full)  # Repaired: processed again, loads.
    assert int(load_dataset("cora", root).data.test_mask.sum()) == 1000


def test_known_sizes_checked_on_generated_pubmed(tmp_path, monkeypatch):
    # The check at work without the shared copy: generated PubMed files,
    # with the table set to their sizes, then one edge fewer in the table.
    root = tmp_path / "root"
    _, _, _, edges = write_tiny_pubmed(root)
    sizes = data_sizes.Sizes(700, 2 * len(edges), 20, 3, (60, 500, 100))
    monkeypatch.setitem(data_sizes.EXPECTED_SIZES, "pubmed", sizes)
    assert load_dataset("pubmed", root).data.num_nodes == 700
    monkeypatch.setitem(data_sizes.EXPECTED_SIZES, "pubmed",
                        dataclasses.replace(sizes, edges=sizes.edges - 2))
    with pytest.raises(ValueError, match=rf"{2 * len(edges)} edges \("
                       rf"expected {2 * len(edges) - 2}\)") as info:
        load_dataset("pubmed", root)
    assert "raw/ind.pubmed.graph" in str(info.value)
    assert "ind.pubmed.x\n" not in str(info.value)


# Options ####################################################################


def test_load_dataset_checks_options_before_any_file(tmp_path):
    # DataOptions' checks, through load_dataset, for every dataset: nothing
    # is read or written first.
    for kwargs, match in ((dict(split_index=12), "split_index=12"),
                          (dict(normalize_features="no"), "true or false"),
                          (dict(download=1), "true or false"),
                          (dict(split=3), "split name")):
        for name in ("cora", "texas", "csbm"):
            with pytest.raises(ValueError, match=match):
                load_dataset(name, tmp_path, **kwargs)
    assert listing(tmp_path) == {}


def test_data_options_for_a_dataset():
    from gnn_center.data import DataOptions
    options = DataOptions(num_nodes=200, snr=2.0)
    assert options.csbm_options() == {"num_nodes": 200, "snr": 2.0}
    options.check_for("CSBM")
    with pytest.raises(ValueError, match="only apply to dataset 'csbm'"):
        options.check_for("cora")
    assert DataOptions().split_for("Cora") == "public"
    assert DataOptions().split_for("texas") == "geom-gcn"
    assert DataOptions(split="full").split_for("cora") == "full"
    with pytest.raises(ValueError, match="Unknown split 'full'.*geom-gcn"):
        DataOptions(split="full").check_for("texas")
    with pytest.raises(ValueError, match="Unknown dataset 'coraa'"):
        DataOptions().check_for("coraa")


def test_load_dataset_takes_data_options_whole():
    from gnn_center.data import DataOptions
    a = load_dataset("csbm", seed=3, num_nodes=400, snr=2.0)
    b = load_dataset("csbm", seed=3,
                     options=DataOptions(num_nodes=400, snr=2.0))
    assert a.data.num_nodes == b.data.num_nodes == 400
    for key in ("x", "edge_index", "train_mask"):
        assert torch.equal(a.data[key], b.data[key])
    with pytest.raises(TypeError, match="either options= or"):
        load_dataset("csbm", options=DataOptions(), num_nodes=400)
    with pytest.raises(TypeError, match="either options= or"):
        load_dataset("cora", options=DataOptions(), split="full")
    with pytest.raises(TypeError, match="must be a DataOptions"):
        load_dataset("cora", options={"split": "full"})
    with pytest.raises(ValueError, match="Unknown split"):
        load_dataset("csbm", options=DataOptions(split="public"))

import math
from dataclasses import FrozenInstanceError, asdict

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.nn import GCNConv
from torch_geometric.utils import to_edge_index

from conftest import random_graph
from gnn_center.nn import (
    METHODS,
    CenteredGCN2Conv,
    CenteredGCNConv,
    DeepGNN,
    ModelOptions,
    build_model,
)

N, F_IN, C = 30, 8, 3


@pytest.fixture(scope="module")
def data():
    torch.manual_seed(0)
    edge_index, _ = random_graph(N, 40, seed=11)
    x = torch.randn(N, F_IN)
    y = torch.randint(0, C, (N, ))
    return x, edge_index, y


def model_for(method, num_layers, **options):
    torch.manual_seed(0)
    options.setdefault("hidden_channels", 16)
    return build_model(method, F_IN, C, num_layers, **options)


@pytest.mark.parametrize("num_layers", [2, 128])
@pytest.mark.parametrize("method", list(METHODS))
def test_forward_backward_reaches_first_layer(data, method, num_layers,
                                              capsys):
    # float64: at depth 128 some methods shrink (centering removes the
    # dominant component, GCN's other eigenvalues are < 1) or grow
    # (plain residual sums) geometrically past float32's range; this test
    # checks that a gradient path exists and reports its size.
    x, edge_index, y = data
    model = model_for(method, num_layers).double()
    model.train()
    out = model(x.double(), edge_index)
    assert out.shape == (N, C)
    F.cross_entropy(out, y).backward()
    # The first message-passing layer itself, not lin_in (which residual
    # methods reach through their skip connections).
    grads = [p.grad for p in model.convs[0].parameters()]
    assert all(g is not None for g in grads)
    norm = torch.stack([g.norm() for g in grads]).norm()
    with capsys.disabled():
        print(f"\n  {method:>18} L={num_layers:<3} |grad first layer| = "
              f"{norm.item():.3e}", end="")
    assert torch.isfinite(norm)
    assert norm > 0


def test_gcn_model_equals_a_stack_of_pyg_gcnconv(data):
    # The model normalises the graph once for all layers; check it against
    # GCNConv layers that normalise for themselves.
    x, edge_index, _ = data
    model = model_for("gcn", 4).eval()
    convs = []
    for conv in model.convs:
        ref = GCNConv(16, 16)
        ref.load_state_dict(conv.state_dict())
        convs.append(ref)
    h = torch.relu(model.lin_in(x))
    for ref in convs:
        h = torch.relu(ref(h, edge_index))
    torch.testing.assert_close(model(x, edge_index), model.lin_out(h))


@pytest.mark.parametrize("mode", ["mean", "uniform", "spectral"])
def test_centered_model_equals_self_normalising_layers(data, mode):
    x, edge_index, _ = data
    method = "centered" if mode == "mean" else f"centered-{mode}"
    model = model_for(method, 3, rescale=False).eval()
    h = torch.relu(model.lin_in(x))
    for conv in model.convs:
        ref = CenteredGCNConv(16, 16, center=mode)
        ref.load_state_dict(conv.state_dict())
        h = torch.relu(ref(h, edge_index))
    torch.testing.assert_close(model(x, edge_index), model.lin_out(h))


def test_parameter_counts():
    def count(model):
        return sum(p.numel() for p in model.parameters())

    for mode in ("centered", "centered-uniform", "centered-spectral"):
        assert count(model_for(mode, 8)) == count(model_for("gcn", 8))
        assert count(model_for(mode, 8, learn_beta=True)) == \
            count(model_for("gcn", 8)) + 8


def test_dropedge_changes_edges_only_in_training(data):
    x, edge_index, _ = data
    def edges(model):  # the normalised graph the layers get, with loops
        return to_edge_index(model.prepare_graph(N, edge_index)[0])[0]

    model = model_for("dropedge", 2, dropedge=0.5)
    model.train()
    first, second = edges(model), edges(model)
    full = edges(model_for("gcn", 2))
    assert first.size(1) < full.size(1)
    assert not torch.equal(first, second)
    # The kept graph stays undirected.
    pairs = set(map(tuple, first.t().tolist()))
    assert all((j, i) in pairs for i, j in pairs)
    model.eval()
    torch.testing.assert_close(edges(model), full)
    torch.testing.assert_close(model(x, edge_index), model(x, edge_index))


@pytest.mark.parametrize("method", ["gcn", "centered-spectral", "gcnii",
                                    "centered-gcnii", "pairnorm",
                                    "centered-gat", "dropedge"])
def test_checkpoint_gives_same_loss_and_gradients(data, method):
    x, edge_index, y = data
    results = []
    for use_checkpoint in (False, True):
        model = model_for(method, 6, checkpoint=use_checkpoint).train()
        torch.manual_seed(1)  # same dropout and DropEdge draws
        loss = F.cross_entropy(model(x, edge_index), y)
        loss.backward()
        results.append((loss.detach(),
                        [p.grad.clone() for p in model.parameters()]))
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_a, loss_b)
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(ga, gb)


def test_hidden_states_come_from_the_same_forward_pass(data):
    x, edge_index, _ = data
    model = model_for("centered", 5).eval()
    calls = []
    for conv in model.convs:
        conv.register_forward_hook(lambda *args: calls.append(1))
    out, hidden = model(x, edge_index, return_hidden=True)
    assert len(calls) == 5
    assert len(hidden) == 6
    assert all(h.shape == (N, 16) for h in hidden)
    torch.testing.assert_close(out, model.lin_out(hidden[-1]))


@pytest.mark.parametrize("jk", ["last", "cat", "max"])
def test_jumping_knowledge(data, jk):
    x, edge_index, _ = data
    model = model_for("centered", 4, jk=jk)
    assert model(x, edge_index).shape == (N, C)
    if jk == "cat":
        assert model.lin_out.in_features == 16 * 4


def test_options_combine(data):
    x, edge_index, _ = data
    model = model_for("centered-spectral", 4, residual="initial",
                      rescale=True, dropout_placement="io")
    assert model.options.residual == "initial" and model.options.rescale
    assert model(x, edge_index).shape == (N, C)


def test_per_graph_batch_reaches_the_centering(data):
    x, edge_index, _ = data
    keep = (edge_index < 15).all(0) | (edge_index >= 15).all(0)
    edge_index = edge_index[:, keep]  # two separate graphs
    batch = (torch.arange(N) >= 15).long()
    model = model_for("centered", 2).eval()
    _, hidden = model(x, edge_index, batch=batch, return_hidden=True)
    alone, hidden_a = model(x[:15], edge_index[:, (edge_index < 15).all(0)],
                            return_hidden=True)
    torch.testing.assert_close(hidden[-1][:15], hidden_a[-1])


def test_unknown_method_lists_choices():
    with pytest.raises(ValueError, match="Unknown method 'gin'.*gcn.*gcnii"):
        build_model("gin", 4, 2, 4)


@pytest.mark.parametrize("num_layers", [1, 129, 2.5])
def test_depth_out_of_range(num_layers):
    with pytest.raises(ValueError, match="num_layers=.* from 2 to 128"):
        build_model("gcn", 4, 2, num_layers)


@pytest.mark.parametrize("options,match", [
    ({"norm": "layernorm"}, "Unknown norm='layernorm'.*'pairnorm'"),
    ({"residual": "dense"}, "Unknown residual='dense'.*'initial'"),
    ({"jk": "lstm"}, "Unknown jk='lstm'.*'cat'"),
    ({"dropout": 1.0}, r"dropout=1.0 is outside \[0, 1\)"),
    ({"pairnorm_mode": "PN-SCS"}, "Unknown pairnorm_mode='PN-SCS'"),
    ({"colour": "red"}, "Unknown model option.*colour.*valid options"),
    ({"activation": "nope"}, "nope"),
])
def test_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        build_model("gcn", 4, 2, 4, **options)


def test_center_mode_errors():
    with pytest.raises(ValueError, match="center='spectral'.*'uniform'"):
        build_model("centered-gat", 4, 2, 4, center="spectral")
    with pytest.raises(ValueError, match="only applies to the centered"):
        build_model("gcn", 4, 2, 4, center="mean")
    with pytest.raises(ValueError, match="multiple of heads"):
        build_model("gat", 4, 2, 4, hidden_channels=10, heads=4)


def test_defaults_live_in_model_options():
    model = DeepGNN(4, 2, 3, method="pairnorm")
    assert model.options.hidden_channels == ModelOptions.hidden_channels
    assert model.options.norm == "pairnorm"
    assert model.options.residual == "none"


def test_sparse_features_give_the_dense_result(data):
    x, edge_index, y = data
    x = x * (torch.rand_like(x) < 0.2)  # mostly zero, like bag-of-words
    model = model_for("centered", 3, dropout=0.0).train()
    dense = model(x, edge_index)
    F.cross_entropy(dense, y).backward()
    dense_grad = model.lin_in.weight.grad.clone()
    model.zero_grad()
    sparse = model(x.to_sparse_csr(), edge_index)
    F.cross_entropy(sparse, y).backward()
    torch.testing.assert_close(sparse, dense)
    torch.testing.assert_close(model.lin_in.weight.grad, dense_grad)
    # With dropout, only stored values are dropped: zeros stay zero and the
    # expected embedding is unchanged (dropout rescales the kept values).
    model = model_for("gcn", 2, dropout=0.5).train()
    torch.manual_seed(3)
    emb = torch.stack([model._embed(x.to_sparse_csr()) for _ in range(400)])
    expected = model.lin_in(x)
    assert (emb.mean(0) - expected).abs().mean() < 0.05 * expected.abs().mean()


def test_center_components_equals_explicit_component_batch(data):
    x, edge_index, _ = data
    keep = (edge_index < 15).all(0) | (edge_index >= 15).all(0)
    edge_index = edge_index[:, keep]  # two components, no batch given
    # Without rescaling, which would work over the batch's graphs instead.
    model = model_for("centered-spectral", 3, center_components=True,
                      rescale=False).eval()
    explicit = model_for("centered-spectral", 3, rescale=False).eval()
    batch = (torch.arange(N) >= 15).long()
    torch.testing.assert_close(model(x, edge_index),
                               explicit(x, edge_index, batch=batch))
    labels, count = model.component_labels(N, edge_index)
    assert count == 2 and torch.equal(labels, batch)
    with pytest.raises(ValueError, match="center_components only applies"):
        model_for("gcn", 2, center_components=True)


@pytest.mark.parametrize("method", ["centered", "gcnii", "centered-gcnii",
                                    "gat"])
def test_init_options(method):
    eye = torch.eye(16)
    model = model_for(method, 3, init="orthogonal")
    for conv in model.convs:
        w = model._hidden_weight(conv)
        torch.testing.assert_close(w @ w.t(), eye, atol=1e-5, rtol=0)
    model = model_for(method, 3, init="identity")
    for conv in model.convs:
        w = model._hidden_weight(conv)
        assert (w - eye).abs().max() < 0.2
        assert not torch.equal(w, eye)
    with pytest.raises(ValueError, match="Unknown init='zeros'"):
        model_for(method, 3, init="zeros")


def test_checkpoint_with_batchnorm_is_rejected():
    with pytest.raises(ValueError, match="checkpoint=True cannot be combined"):
        model_for("batchnorm", 4, checkpoint=True)


def test_component_labels_follow_the_graph(data):
    x, edge_index, _ = data
    model = model_for("centered", 2, center_components=True)
    labels, count = model.component_labels(N, edge_index)
    assert count == 1
    split = edge_index.clone()
    keep = (split < 15).all(0) | (split >= 15).all(0)
    split = split[:, keep]
    assert model.component_labels(N, split)[1] == 2
    # Edited in place: the cached labels must not be reused.
    edge_index = edge_index.clone()
    assert model.component_labels(N, edge_index)[1] == 1
    edge_index[:, ~((edge_index < 15).all(0) | (edge_index >= 15).all(0))] = 0
    assert model.component_labels(N, edge_index)[1] > 1


def test_dropedge_keeps_edge_weights_with_their_edges(data):
    _, edge_index, _ = data
    lo = torch.minimum(edge_index[0], edge_index[1])
    hi = torch.maximum(edge_index[0], edge_index[1])
    weight = (lo * 100 + hi).float()  # symmetric, unique per pair
    loop = torch.tensor([[3], [3]])
    model = model_for("dropedge", 2, dropedge=0.5)
    torch.manual_seed(0)
    kept, kept_weight = model.drop_edges(
        torch.cat([edge_index, loop], 1), torch.cat([weight, weight[:1]]))
    assert 0 < kept.size(1) < edge_index.size(1)
    assert not (kept[0] == kept[1]).any()  # the self-loop is not doubled
    expected = (torch.minimum(kept[0], kept[1]) * 100 +
                torch.maximum(kept[0], kept[1])).float()
    torch.testing.assert_close(kept_weight, expected)


def test_centered_methods_rescale_and_drop_out_at_the_ends_by_default(data):
    x, edge_index, _ = data
    for method in ("centered", "centered-uniform", "centered-spectral"):
        options = model_for(method, 2).options
        assert options.rescale and options.dropout_placement == "io"
    bare = model_for("centered", 2, rescale=False, dropout_placement="every")
    assert not bare.options.rescale
    assert bare.options.dropout_placement == "every"
    assert model_for("gcn", 2).options.dropout_placement == "every"
    # Rescaled: every hidden state has unit mean squared row norm before
    # the ReLU, so the scale no longer decays with depth.
    model = model_for("centered-spectral", 64).eval()
    _, hidden = model(x, edge_index, return_hidden=True)
    assert hidden[-1].pow(2).sum(-1).mean() > 0.1


@pytest.mark.parametrize("mode", ["mean", "uniform", "spectral"])
def test_centered_gcnii_model_equals_self_normalising_layers(data, mode):
    # The model normalises the graph once and passes u for spectral; the
    # reference layers normalise for themselves.
    x, edge_index, _ = data
    model = model_for("centered-gcnii", 3, center=mode).eval()
    h0 = h = torch.relu(model.lin_in(x))
    for layer, conv in enumerate(model.convs, start=1):
        ref = CenteredGCN2Conv(16, 0.1, 0.5, layer, center=mode)
        ref.load_state_dict(conv.state_dict())
        h = torch.relu(ref(h, h0, edge_index))
    torch.testing.assert_close(model(x, edge_index), model.lin_out(h))


def test_centered_gcnii_at_beta_zero_is_gcnii(data):
    x, edge_index, _ = data
    plain = model_for("gcnii", 4).eval()
    centered = model_for("centered-gcnii", 4, beta=0.0).eval()
    centered.load_state_dict(plain.state_dict())
    torch.testing.assert_close(centered(x, edge_index), plain(x, edge_index))
    full = model_for("centered-gcnii", 4).eval()
    full.load_state_dict(plain.state_dict())
    assert not torch.allclose(full(x, edge_index), plain(x, edge_index))


def test_centered_gcnii_options():
    model = model_for("centered-gcnii", 3)
    assert model.options.center == "mean"
    assert not model.options.rescale
    assert model.options.dropout_placement == "every"  # GCNII's skeleton
    learned = model_for("centered-gcnii", 3, learn_beta=True)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(learned) == count(model_for("gcnii", 3)) + 3
    with pytest.raises(ValueError, match="centered-gcnii has its own"):
        model_for("centered-gcnii", 3, residual="residual")
    with pytest.raises(ValueError, match="Unknown center='median'"):
        model_for("centered-gcnii", 3, center="median")


@pytest.mark.parametrize("options,match", [
    ({"dropout": 1.0}, r"dropout=1.0 is outside \[0, 1\)"),
    ({"dropedge": -0.1}, r"dropedge=-0.1 is outside \[0, 1\)"),
    ({"alpha": 2.0}, r"alpha=2.0 is outside \[0, 1\]"),
    ({"beta": 1.5}, r"beta=1.5 is outside \[0, 1\]"),
    ({"norm": "layernorm"}, "Unknown norm='layernorm'"),
    ({"center": "median"}, "Unknown center='median'"),
    ({"hidden_channels": 0}, "hidden_channels=0 must be positive"),
    ({"heads": 0}, "heads=0 must be positive"),
    ({"init": "zeros"}, "Unknown init='zeros'"),
    ({"activation": "nope"}, "nope"),
    ({"checkpoint": True, "norm": "batchnorm"}, "cannot be combined"),
])
def test_model_options_are_checked_on_construction(options, match):
    with pytest.raises(ValueError, match=match):
        ModelOptions(**options)


def test_model_options_are_frozen():
    options = ModelOptions()
    with pytest.raises(FrozenInstanceError):
        options.dropout = 2.0


@pytest.mark.parametrize("method", list(METHODS))
def test_resolved_options_leave_nothing_unset(method):
    options = model_for(method, 2).options
    unset = [k for k, v in asdict(options).items() if v is None]
    # center=None is a value, no centering, as in the layers.
    assert unset == ([] if options.center is not None else ["center"])
    assert (options.center is None) == (METHODS[method].get("center")
                                        is None)
    # Resolving the resolved options again changes nothing, so the options
    # a record stores rebuild the same model.
    assert model_for(method, 2, **asdict(options)).options == options


def test_config_style_option_values_keep_their_meaning():
    # The strings a config writes are values, None (or absence) is unset.
    pairnorm_off = model_for("pairnorm", 2, norm="none")
    assert pairnorm_off.options.norm == "none"
    assert all(isinstance(n, torch.nn.Identity) for n in pairnorm_off.norms)
    assert model_for("pairnorm", 2, norm=None).options.norm == "pairnorm"
    assert model_for("residual", 2, residual="none").options.residual == \
        "none"
    assert model_for("gcn", 2, residual="residual").options.residual == \
        "residual"
    assert model_for("gcn", 2, dropout=0.6).options.dropout == 0.6


@pytest.mark.parametrize("method", ["centered-gcnii", "gat"])
def test_model_pickles(data, method):
    # torch.save(model) and process pools pickle the whole module.
    import pickle
    x, edge_index, _ = data
    model = model_for(method, 2).eval()
    copy = pickle.loads(pickle.dumps(model))
    torch.testing.assert_close(copy(x, edge_index), model(x, edge_index))


@pytest.mark.parametrize("mode", ["mean", "spectral"])
def test_center_after_activation_equals_layers_then_centering(data, mode):
    x, edge_index, _ = data
    method = "centered" if mode == "mean" else "centered-spectral"
    model = model_for(method, 3, rescale=False,
                      center_after_activation=True, beta=0.8).eval()
    degree = torch.zeros(N).index_add_(0, edge_index[1],
                                       torch.ones(edge_index.size(1))) + 1
    u = degree.sqrt()  # the dominant eigenvector of the GCN operator
    h = torch.relu(model.lin_in(x))
    for conv in model.convs:
        ref = CenteredGCNConv(16, 16, center=mode, beta=0.8)
        ref.load_state_dict(conv.state_dict())
        h = torch.relu(ref(h, edge_index))
        if mode == "mean":
            h = h - 0.8 * h.mean(0)
        else:
            h = h - 0.8 * torch.outer(u, u @ h) / (u @ u)
    torch.testing.assert_close(model(x, edge_index), model.lin_out(h))


def test_center_after_activation_per_graph_and_only_when_centered(data):
    x, edge_index, _ = data
    keep = (edge_index < 15).all(0) | (edge_index >= 15).all(0)
    batch = (torch.arange(N) >= 15).long()
    model = model_for("centered-gcnii", 3, center_after_activation=True)
    _, hidden = model.eval()(x, edge_index[:, keep], batch=batch,
                             return_hidden=True)
    for graph in (0, 1):  # GCNII adds no residual after the layer
        torch.testing.assert_close(hidden[-1][batch == graph].mean(0),
                                   torch.zeros(16), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="center_after_activation only"):
        model_for("gcn", 2, center_after_activation=True)


def test_learn_alpha_gives_each_centered_gcnii_layer_its_own_alpha(data):
    x, edge_index, _ = data
    model = model_for("centered-gcnii", 3, learn_alpha=True, alpha=0.2)
    logits = [conv.alpha_logit for conv in model.convs]
    assert len({id(p) for p in logits}) == 3
    for conv in model.convs:
        assert conv.effective_alpha().item() == pytest.approx(0.2)
    model(x, edge_index).pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs() > 0 for p in logits)
    with pytest.raises(ValueError, match="learn_alpha only applies"):
        model_for("gcnii", 2, learn_alpha=True)
    with pytest.raises(ValueError, match="learn_alpha=True needs alpha"):
        model_for("centered-gcnii", 2, learn_alpha=True, alpha=0.0)


def test_centered_gcnii_adaptive_preset_learns_its_strengths(data):
    x, edge_index, _ = data
    model = model_for("centered-gcnii-adaptive", 4)
    opts = model.options
    assert (opts.center, opts.beta, opts.theta) == ("mean", 0.5, 1.5)
    assert opts.learn_beta and opts.learn_alpha and opts.rescale
    assert opts.dropout_placement == "every"  # GCNII's skeleton
    for layer, conv in enumerate(model.convs, start=1):
        assert isinstance(conv, CenteredGCN2Conv)
        assert conv.effective_alpha().item() == pytest.approx(0.1)
        assert conv.effective_beta().item() == pytest.approx(0.5)
        assert conv.identity_beta == pytest.approx(math.log(1.5 / layer + 1))
    # Two learned scalars per layer on top of centered-gcnii.
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(model) == count(model_for("centered-gcnii", 4)) + 8
    assert torch.isfinite(model(x, edge_index)).all()
    # The user's values still win over the preset's.
    fixed = model_for("centered-gcnii-adaptive", 2, learn_alpha=False,
                      theta=0.5, beta=1.0)
    assert not fixed.options.learn_alpha
    assert (fixed.options.theta, fixed.options.beta) == (0.5, 1.0)

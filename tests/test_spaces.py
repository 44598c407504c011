import itertools

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from optuna_kshot import build_subnet, count_flops, count_macs, count_params, layerwise_space, macro_space, nb201_space
from optuna_kshot.spaces import NB201_EDGES, NB201_OPS, space_from_config
from optuna_kshot.tables import load_macro_table, load_nb201_table


@pytest.fixture(scope="module")
def macro_table():
    return load_macro_table()  # the copy shipped in the package: never skipped


@pytest.fixture(scope="module")
def nb201_table():
    try:
        return load_nb201_table("cifar10")
    except FileNotFoundError as e:
        pytest.skip(str(e))


def tiny_spaces():
    return [
        layerwise_space(width_mult=0.25, resolution=16, in_channels=1),
        layerwise_space(width_mult=0.25, widths=(0.5, 0.75, 1.0), resolution=12, in_channels=3, num_classes=5),
        macro_space(width_mult=0.125, resolution=16),
        nb201_space(channels=4, cells_per_stage=2, resolution=16, num_classes=7),
    ]


@pytest.mark.parametrize("space", tiny_spaces(), ids=lambda s: s.kind)
def test_analytic_counts_equal_measured(space):
    rng = np.random.default_rng(0)
    for _ in range(6):
        arch = space.sample(rng)
        net = build_subnet(space, arch).eval()
        x = torch.randn(1, space.in_channels, space.resolution, space.resolution)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            net(x)
        assert counter.get_total_flops() == count_flops(space, arch) == 2 * count_macs(space, arch)
        assert sum(p.numel() for p in net.parameters()) == count_params(space, arch)


@pytest.mark.parametrize("space", tiny_spaces(), ids=lambda s: s.kind)
def test_config_roundtrip(space):
    rebuilt = space_from_config(space.to_config())
    assert rebuilt == space and type(rebuilt) is type(space)
    arch = space.sample(1)
    assert rebuilt.count_macs(arch) == space.count_macs(arch)


def test_layerwise_space_shape():
    space = layerwise_space(widths=(0.5, 1.0))
    first_of_stage = [0, 2, 5]
    for i in range(8):
        assert ("skip" in space[f"layer{i}"].options) == (i not in first_of_stage)
        assert space[f"width{i}"].options == (0.5, 1.0)
    assert set(space["layer0"].options) == {f"k{k}e{e}" for k in (3, 5, 7) for e in (3, 6)}
    with pytest.raises(ValueError, match="width_mult"):
        layerwise_space(width_mult=0)
    with pytest.raises(ValueError, match="widths"):
        layerwise_space(widths=(0.5, 1.5))


def test_macro_keys_roundtrip_every_key(macro_table):
    space = macro_space()
    assert space.size == 6561
    for key in macro_table:
        assert space.key(space.from_key(key)) == key
    assert {space.key(a) for a in space.enumerate()} == set(macro_table)
    with pytest.raises(ValueError, match="8 digits"):
        space.from_key("2221222")
    with pytest.raises(ValueError, match="8 digits"):
        space.from_key("22212223")


def test_macro_analytic_counts_equal_table_on_every_key(macro_table):
    """The table's `params` are our parameter counts and its `flops` are our MACs, on all 6,561 keys."""
    space = macro_space()
    for key, record in macro_table.items():
        arch = space.from_key(key)
        assert count_params(space, arch) == record["params"], key
        assert count_macs(space, arch) == record["flops"], key


def test_macro_built_subnets_have_table_params(macro_table):
    space = macro_space()
    keys = sorted(macro_table)[::41]  # 161 keys spread over the whole table
    for key in keys:
        net = build_subnet(space, space.from_key(key))
        assert sum(p.numel() for p in net.parameters()) == macro_table[key]["params"], key


def test_nb201_keys_and_params_against_table(nb201_table):
    """Every key round-trips, and every seed the loader keeps has our analytic parameter count as its
    `model_size` (M params, 6 decimals): that pins which digits are 1x1 and 3x3 convs, not where edges are."""
    space = nb201_space()
    assert space.size == len(nb201_table) == 15625
    for key, record in nb201_table.items():
        arch = space.from_key(key)
        assert space.key(arch) == key
        assert {round(size * 1e6) for size in record["model_size"]} == {count_params(space, arch)}, key
    net = build_subnet(space, space.from_key("334131"))
    assert sum(p.numel() for p in net.parameters()) == round(nb201_table["334131"]["model_size"][0] * 1e6)


# ------------------------------------------------------------------ NB201 edge and op order against the table
CHANCE_CEILING = 15.0  # percent: a cell that passes nothing from input to output scores chance level (~10%)


def _mean_acc(table):
    return {key: sum(r["val_acc"]) / len(r["val_acc"]) for key, r in table.items()}


def _arch(ops):
    """A full arch (choices named ``edge_j_i``) from ``{(j, i): op}``; unnamed edges are ``none``."""
    return {f"edge_{j}_{i}": ops.get((j, i), "none") for j, i in NB201_EDGES}


def _key(ops, order=NB201_EDGES, op_order=NB201_OPS):
    """The key a (possibly wrong) edge order and op order would give ``{(j, i): op}``."""
    return "".join(str(op_order.index(ops.get(edge, "none"))) for edge in order)


def _decode(key, order):
    """The edge ops a (possibly wrong) edge order would read from ``key``."""
    return {edge: NB201_OPS[int(digit)] for edge, digit in zip(order, key)}


def _connectivity_fits(space, table_connected, order):
    """Whether reading keys with ``order`` gives every none-pattern the table's connectivity."""
    return all(
        space.is_connected(_arch(_decode(pattern, order))) == connected
        for pattern, connected in table_connected.items()
    )


def test_nb201_edge_order_gives_disconnected_cells_chance_accuracy(nb201_table):
    """A cell is disconnected (its output carries nothing of its input) exactly when its mean validation accuracy is
    chance level, on all 15,625 keys. Of all 720 orders of the six edges only ours and its mirror image (the DAG
    reversed: edge j<-i read as (3-i)<-(3-j), which keeps connectivity) fit the table; the mirror is ruled out by
    `test_nb201_edge_order_direction_of_data_flow`."""
    space = nb201_space(channels=4, cells_per_stage=1)
    acc = _mean_acc(nb201_table)
    disconnected = {key for key in acc if not space.is_connected(space.from_key(key))}
    assert 0 < len(disconnected) < len(acc) / 10
    for key, value in acc.items():
        assert (value > CHANCE_CEILING) == (key not in disconnected), (key, value)
        if key in disconnected:
            assert value == pytest.approx(10.0, abs=0.5), key
    # Connectivity depends only on which edges are `none`: one pattern per set of non-`none` edges (digit 1).
    table_connected = {}
    for key, value in acc.items():
        pattern = "".join("0" if digit == "0" else "1" for digit in key)
        assert table_connected.setdefault(pattern, value > CHANCE_CEILING) == (value > CHANCE_CEILING), key
    assert len(table_connected) == 64
    fitting = [order for order in itertools.permutations(NB201_EDGES)
               if _connectivity_fits(space, table_connected, order)]
    mirror = tuple((3 - i, 3 - j) for j, i in NB201_EDGES)
    assert fitting == [NB201_EDGES, mirror]
    # e.g. a source-major order (1<-0, 2<-0, 3<-0, 2<-1, 3<-1, 3<-2) would look a lone 3<-0 conv up under the
    # key of a lone 2<-1 conv, a disconnected cell
    source_major = ((1, 0), (2, 0), (3, 0), (2, 1), (3, 1), (3, 2))
    assert not _connectivity_fits(space, table_connected, source_major)
    direct = {(3, 0): "nor_conv_3x3"}
    assert space.is_connected(_arch(direct)) and acc[space.key(_arch(direct))] > 80
    assert acc[_key(direct, source_major)] < CHANCE_CEILING


def test_nb201_edge_order_direction_of_data_flow(nb201_table):
    """What tells our edge order from its mirror (the DAG reversed, which keeps connectivity and parameter counts):
    the direction of data flow. A two-edge chain "conv, then 3x3 average pooling" beats "pooling, then conv" by
    several points (4-6 measured) through node 1 and through node 2, for both convs; the mirror reads each as the
    other."""
    space = nb201_space()
    acc = _mean_acc(nb201_table)
    mirror = tuple((3 - i, 3 - j) for j, i in NB201_EDGES)
    for conv in ("nor_conv_1x1", "nor_conv_3x3"):
        for first, second in (((1, 0), (3, 1)), ((2, 0), (3, 2))):
            conv_first = {first: conv, second: "avg_pool_3x3"}
            pool_first = {first: "avg_pool_3x3", second: conv}
            ours = acc[space.key(_arch(conv_first))] - acc[space.key(_arch(pool_first))]
            assert ours > 2.0, (conv, first, second, ours)
            mirrored = acc[_key(conv_first, mirror)] - acc[_key(pool_first, mirror)]
            assert mirrored < -2.0, (conv, first, second, mirrored)


def test_nb201_op_order_skip_chains_are_the_identity(nb201_table):
    """Every single-path cell made only of skip_connects is the identity, whatever its length (1, 2 or 3 edges), so
    all score alike; made of 3x3 average poolings they blur more with every edge. This tells skip_connect from
    avg_pool_3x3, which connectivity and parameter counts cannot."""
    space = nb201_space()
    acc = _mean_acc(nb201_table)
    paths = [((3, 0),), ((1, 0), (3, 1)), ((2, 0), (3, 2)), ((1, 0), (2, 1), (3, 2))]

    def spread(op, key):
        values = [acc[key(dict.fromkeys(path, op))] for path in paths]
        return max(values) - min(values)

    def ours(ops):
        return space.key(_arch(ops))

    assert spread("skip_connect", ours) < 1.0
    assert spread("avg_pool_3x3", ours) > 5.0
    # with skip_connect and avg_pool_3x3 swapped in the op order, the skip chains would read as pooling chains
    swapped = tuple({"skip_connect": "avg_pool_3x3", "avg_pool_3x3": "skip_connect"}.get(op, op) for op in NB201_OPS)
    assert spread("skip_connect", lambda ops: _key(ops, op_order=swapped)) > 5.0


def test_nb201_connectivity():
    space = nb201_space(channels=4, cells_per_stage=1)
    assert not space.is_connected(space.from_key("000000"))
    assert space.is_connected(space.from_key("000100"))  # 3<-0 conv
    assert space.is_connected(space.from_key("300040"))  # 0 -conv-> 1 -pool-> 3
    assert not space.is_connected(space.from_key("333000"))  # nothing enters node 3
    assert NB201_OPS[0] == "none"


def _activation_types(net):
    return {type(m) for m in net.modules() if isinstance(m, (torch.nn.ReLU, torch.nn.ReLU6))}


def test_macro_networks_use_relu_as_the_benchmark_and_layerwise_relu6():
    """NAS-Bench-Macro's own networks use plain ReLU in the stem, the MBConvs and the head: ours must too to be exact;
    the layer-wise (MobileNetV2) space keeps ReLU6. Checked on a built subnet and on the supernet."""
    from optuna_kshot.nn import build_model

    macro = macro_space(width_mult=0.125, resolution=16)
    arch = macro.from_key("12121212")
    for net in (build_subnet(macro, arch), build_model(macro)):
        assert _activation_types(net) == {torch.nn.ReLU}
        assert isinstance(net.stem[2], torch.nn.ReLU) and isinstance(net.head[2], torch.nn.ReLU)
    sub = build_subnet(macro, arch)
    mb = sub.layers[0]
    assert isinstance(mb.expand[2], torch.nn.ReLU) and isinstance(mb.depthwise[2], torch.nn.ReLU)
    assert len(mb.project) == 2  # linear bottleneck: conv + BN, no activation
    layerwise = layerwise_space(width_mult=0.25, resolution=16, in_channels=1)
    assert _activation_types(build_subnet(layerwise, layerwise.sample(0))) == {torch.nn.ReLU6}
    # negative inputs: ReLU and ReLU6 differ above 6 only, so check the clamp is absent in the macro MBConv
    x = torch.full((1, mb.hidden, 4, 4), 10.0)
    assert torch.equal(mb.expand[2](x), x)

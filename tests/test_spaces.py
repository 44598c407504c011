import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from optuna_kshot import build_subnet, count_flops, count_macs, count_params, layerwise_space, macro_space, nb201_space
from optuna_kshot.spaces import NB201_OPS, space_from_config
from optuna_kshot.tables import load_macro_table, load_nb201_table


@pytest.fixture(scope="module")
def macro_table():
    try:
        return load_macro_table()
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


def test_nb201_keys_and_params_against_table():
    try:
        table = load_nb201_table("cifar10")
    except FileNotFoundError as e:
        pytest.skip(str(e))
    space = nb201_space()
    assert space.size == len(table) == 15625
    exact = 0
    for key, record in table.items():
        arch = space.from_key(key)
        assert space.key(arch) == key
        exact += round(record["model_size"][0] * 1e6) == count_params(space, arch)
    # The table shares one record among cells it treats as the same network, so 150 keys carry another
    # cell's size; every other key matches our count exactly.
    assert exact == 15625 - 150
    net = build_subnet(space, space.from_key("334131"))
    assert sum(p.numel() for p in net.parameters()) == round(table["334131"]["model_size"][0] * 1e6)


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
    from optuna_kshot.nn import build_supernet

    macro = macro_space(width_mult=0.125, resolution=16)
    arch = macro.from_key("12121212")
    for net in (build_subnet(macro, arch), build_supernet(macro)):
        assert _activation_types(net) == {torch.nn.ReLU}
        assert isinstance(net.stem[2], torch.nn.ReLU) and isinstance(net.head[2], torch.nn.ReLU)
    sub = build_subnet(macro, arch)
    mb = sub.layers[0]["k3e3"]
    assert isinstance(mb.expand[2], torch.nn.ReLU) and isinstance(mb.depthwise[2], torch.nn.ReLU)
    assert len(mb.project) == 2  # linear bottleneck: conv + BN, no activation
    layerwise = layerwise_space(width_mult=0.25, resolution=16, in_channels=1)
    assert _activation_types(build_subnet(layerwise, layerwise.sample(0))) == {torch.nn.ReLU6}
    # negative inputs: ReLU and ReLU6 differ above 6 only, so check the clamp is absent in the macro MBConv
    x = torch.full((1, mb.hidden, 4, 4), 10.0)
    assert torch.equal(mb.expand[2](x), x)

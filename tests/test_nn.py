import numpy as np
import pytest
import torch

from optuna_kshot import OpChoice, ValueChoice, build_subnet, layerwise_space, macro_space, make_supernet
from optuna_kshot.choices import use_arch
from optuna_kshot.nn.ops import MBConv

from .helpers import tiny_spaces


def spaces():
    return tiny_spaces(widths=(0.5, 0.75, 1.0))


@pytest.mark.parametrize("space", spaces(), ids=lambda s: s.kind)
@pytest.mark.parametrize("train_mode", [False, True])
def test_export_equals_supernet_path(space, train_mode):
    supernet = make_supernet(space, seed=0)
    supernet.train(train_mode)
    x = torch.randn(4, space.in_channels, 16, 16)
    rng = np.random.default_rng(0)
    for _ in range(5):
        arch = space.sample(rng)
        subnet = supernet.export(arch).train(train_mode)
        with torch.no_grad():
            torch.testing.assert_close(subnet(x), supernet(x, arch), rtol=0, atol=1e-5)
        # The exported subnet is the stand-alone network of that arch with the supernet's weights.
        fresh = build_subnet(space, arch)
        assert fresh.state_dict().keys() == subnet.state_dict().keys()
        fresh.load_state_dict(subnet.state_dict())


@pytest.mark.parametrize("space", spaces(), ids=lambda s: s.kind)
def test_supernet_refuses_bad_arch_and_missing_arch(space):
    supernet = make_supernet(space)
    x = torch.randn(1, space.in_channels, 16, 16)
    with pytest.raises(TypeError, match="arch"):
        supernet(x)
    with pytest.raises(RuntimeError, match="supernet\\(x, arch\\)"):
        supernet.model(x)  # the model's choices need an arch in context
    arch = {**space.sample(0), space.names[0]: "conv9x9"}
    with pytest.raises(ValueError, match="not one of its options"):
        supernet(x, arch)


def test_seeded_build_is_deterministic_and_leaves_global_rng_alone():
    space = macro_space(width_mult=0.125, resolution=16)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = make_supernet(space, seed=5)
    after = torch.rand(1)
    b = make_supernet(space, seed=5)
    assert torch.equal(before, after)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def _mbconv_with_width():
    return MBConv(8, 8, 5, 24, 1, expansion=3, width=ValueChoice("width0", (0.25, 0.5, 1.0)))


def test_mbconv_channel_slicing_matches_export():
    op = _mbconv_with_width().train()
    x = torch.randn(3, 8, 10, 10)
    for width, hidden in ((0.25, 6), (0.5, 12), (1.0, 24)):
        static = op.to_static({"width0": width})
        assert static.hidden == hidden and static.expand[0].out_channels == hidden
        with torch.no_grad(), use_arch({"width0": width}):
            torch.testing.assert_close(static(x), op(x), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="cannot use 30"):
        op._sliced(x, 30)


def test_sliced_bn_running_stats_update_only_their_slice():
    op = _mbconv_with_width().train()
    before = op.expand[1].running_mean.clone()
    with use_arch({"width0": 0.5}):
        op(torch.randn(8, 8, 6, 6))
    after = op.expand[1].running_mean
    assert not torch.equal(before[:12], after[:12])
    assert torch.equal(before[12:], after[12:])


def test_built_in_supernet_models_are_plain_modules_with_choices():
    space = layerwise_space(width_mult=0.25, widths=(0.5, 1.0), resolution=16, in_channels=1)
    model = make_supernet(space).model
    assert [m.choice_name for m in model.modules() if isinstance(m, OpChoice)] == [f"layer{i}" for i in range(8)]
    assert {m.choice_name for m in model.modules() if isinstance(m, ValueChoice)} == {f"width{i}" for i in range(8)}
    assert make_supernet(space).space is space

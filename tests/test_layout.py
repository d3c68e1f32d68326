"""The default model has exactly the official checkpoint layout; every checkpoint form loads."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from conftest import SPEC, need, tiny_state_dict
from lalic_cli.layers import OmniShift
from lalic_cli.models import LALIC, get_config
from lalic_cli.zoo.checkpoint import CheckpointError, build_model, detect_config, fingerprint, unwrap


def test_full_state_dict_matches_official_layout():
    spec = json.loads(need(SPEC / "official-lalic-state-dict.json").read_text())
    model = LALIC(**get_config("full").kwargs())
    ours = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()]
    theirs = [tuple(row) for row in spec["keys"]]
    assert sorted(map(tuple, ours)) == sorted(theirs)
    assert len(ours) == len(theirs) == 1623
    assert sum(p.numel() for p in model.parameters()) == spec["num_parameters"] == 66_133_045

def _forms(sd):
    old_eb = {}
    for k, v in sd.items():
        for new, old in (("matrices.", "_matrix"), ("biases.", "_bias"), ("factors.", "_factor")):
            if f"entropy_bottleneck.{new}" in k:
                k = k.replace(f"entropy_bottleneck.{new}", f"entropy_bottleneck.{old}")
        old_eb[k] = v
    return {
        "bare": sd,
        "state_dict": {"state_dict": sd, "epoch": 3},
        "model_state_dict": {"model_state_dict": sd, "optimizer": {}},
        "module_prefix": {f"module.{k}": v for k, v in sd.items()},
        "old_entropy_bottleneck_names": old_eb,
    }


@pytest.mark.parametrize("form", list(_forms({}).keys()))
def test_every_checkpoint_form_loads_to_same_model(form):
    sd = tiny_state_dict(seed=5)
    ref = build_model(sd)
    loaded = build_model(unwrap(_forms(sd)[form]))
    assert fingerprint(loaded.state_dict()) == fingerprint(ref.state_dict())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)["x_hat"], ref(x)["x_hat"], rtol=0, atol=0)


def test_filled_coder_tables_are_accepted():
    sd = tiny_state_dict(seed=6)
    model = build_model(sd)
    model.float_tables()
    filled = model.state_dict()
    assert filled["latent_codec.hyper.entropy_bottleneck._quantized_cdf"].numel() > 0
    assert fingerprint(build_model(filled).state_dict()) == fingerprint(build_model(sd).state_dict())


def test_stale_folded_omnishift_is_recomputed():
    sd = tiny_state_dict(seed=7)
    stale = dict(sd)
    for k in stale:
        if k.endswith("conv5x5_reparam.weight"):
            stale[k] = torch.randn_like(stale[k])
    a, b = build_model(sd), build_model(stale)
    for m in a.modules():
        if isinstance(m, OmniShift):
            torch.testing.assert_close(m.conv5x5_reparam.weight, m.folded_weight())
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(a(x)["x_hat"], b(x)["x_hat"])


def test_folded_omnishift_equals_branches():
    m = OmniShift(6)
    x = torch.randn(2, 6, 9, 11)
    train_out = m(x)
    m.eval()
    torch.testing.assert_close(m(x), train_out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ndim", [1, 2])
def test_training_omnishift_has_the_branch_sum_and_its_gradients(ndim):
    """Training convolves once with the kernel folded in autograd; value and every
    gradient must equal the four branches written out (the paper's form)."""
    torch.manual_seed(3)
    m = OmniShift(5, ndim=ndim).train()
    conv = F.conv1d if ndim == 1 else F.conv2d
    x = torch.randn((2, 5, 13) if ndim == 1 else (2, 5, 9, 11), requires_grad=True)
    g = torch.randn_like(x)

    def by_hand(x):
        a = m.alpha
        return (a[0] * x + a[1] * conv(x, m.conv1x1.weight, groups=5)
                + a[2] * conv(x, m.conv3x3.weight, padding=1, groups=5)
                + a[3] * conv(x, m.conv5x5.weight, padding=2, groups=5))

    params = [x, m.alpha, m.conv1x1.weight, m.conv3x3.weight, m.conv5x5.weight]
    want = torch.autograd.grad(by_hand(x), params, g)
    out = m(x)
    torch.testing.assert_close(out, by_hand(x), rtol=1e-5, atol=1e-5)
    got = torch.autograd.grad(out, params, g)
    for w, o in zip(want, got):
        torch.testing.assert_close(o, w, rtol=1e-4, atol=1e-4)
    assert m.conv5x5_reparam.weight.grad is None


def test_omnishift_gradients_have_the_parameters_layout():
    """From a channels-last input the kernel's gradient comes with other strides on the
    size-1 dim; DDP's gradient buckets expect the parameters' own (and warn otherwise)."""
    m = OmniShift(6).train()
    x = torch.randn(2, 6, 9, 9).contiguous(memory_format=torch.channels_last)
    m(x).square().sum().backward()
    for conv in (m.conv1x1, m.conv3x3, m.conv5x5):
        assert conv.weight.grad.stride() == conv.weight.stride()


def test_wrong_layout_is_refused_with_reason():
    sd = tiny_state_dict()
    sd.pop("g_a.0.bias")
    with pytest.raises(CheckpointError, match="missing keys"):
        detect_config(sd)
    with pytest.raises(CheckpointError):
        unwrap({"epoch": 1})


def test_a_missing_parameter_is_an_error_not_a_random_weight():
    sd = tiny_state_dict()
    del sd["g_a.1.att.key.weight"]
    with pytest.raises(CheckpointError, match="lacks 1 parameters of config tiny .*g_a.1.att.key.weight"):
        build_model(sd, "tiny")


def test_loaded_model_equals_its_checkpoint():
    """Layers are built without random initialisation: every parameter must be the file's."""
    sd = tiny_state_dict(seed=3)
    model = build_model(sd)
    params = dict(model.named_parameters())
    checked = [k for k in params if "conv5x5_reparam" not in k]
    assert len(checked) > 100
    for k in checked:
        assert torch.equal(params[k].detach(), sd[k].to(params[k].dtype)), k

"""Growing trained weights into a deeper config: the grown model codes exactly what the
trained one did before its first step, and training from it can start at once."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from PIL import Image

from conftest import tiny_state_dict
from lalic_cli.models import CONFIGS, get_config
from lalic_cli.models.grow import can_grow, grow_state_dict
from lalic_cli.zoo.checkpoint import build_model, canonical, detect_config


def _code(img: Image.Image, weights: dict, stem) -> tuple[int, bytes]:
    """Size of ``img``'s file at q3 with these weights, and the pixels it decodes to."""
    from lalic_cli import decode_file, encode_image
    from lalic_cli.zoo.registry import save_weights

    path = stem.with_suffix(".safetensors")
    save_weights(weights, path, {"config": detect_config(weights), "family": "lalic", "quality": "3"})
    data = encode_image(img, 3, weights=str(path))
    stem.with_suffix(".lal").write_bytes(data)
    return len(data), decode_file(stem.with_suffix(".lal"), weights=str(path)).tobytes()


@pytest.fixture
def tiny_d2(monkeypatch) -> str:
    config = dataclasses.replace(get_config("tiny"), depths=(2, 1, 3, 2), description="test")
    monkeypatch.setitem(CONFIGS, "tiny-grown", config)
    return "tiny-grown"


def test_grown_model_gives_the_same_output_and_likelihoods(tiny_d2):
    sd = canonical(tiny_state_dict(seed=4))
    grown = grow_state_dict(sd, get_config("tiny"), get_config(tiny_d2), seed=1)
    assert detect_config(grown) == tiny_d2
    small, big = build_model(sd, "tiny"), build_model(grown)
    assert sum(p.numel() for p in big.parameters()) > sum(p.numel() for p in small.parameters())
    x = torch.rand(1, 3, 64, 128)
    with torch.no_grad():
        a, b = small(x), big(x)
    assert torch.equal(a["x_hat"], b["x_hat"])
    for k in a["likelihoods"]:
        assert torch.equal(a["likelihoods"][k], b["likelihoods"][k])
    new_block = big.g_a[2]  # tiny's g_a: conv, block, conv ...; grown: conv, block, NEW, conv
    assert torch.count_nonzero(new_block.gamma1) == 0 and torch.count_nonzero(new_block.att.key.weight) > 0


def test_grown_weights_code_the_same_file(tiny_d2, tmp_path):
    sd = canonical(tiny_state_dict(seed=2))
    grown = canonical(grow_state_dict(sd, get_config("tiny"), get_config(tiny_d2)))
    img = Image.effect_noise((80, 48), 60).convert("RGB")
    assert _code(img, sd, tmp_path / "small") == _code(img, grown, tmp_path / "grown")


def test_only_deeper_configs_with_the_same_widths_grow(tiny_d2):
    tiny = get_config("tiny")
    assert can_grow(tiny, get_config(tiny_d2))
    assert not can_grow(get_config(tiny_d2), tiny) and not can_grow(tiny, tiny)
    assert not can_grow(get_config("small"), get_config("lite"))
    with pytest.raises(ValueError, match="cannot grow"):
        grow_state_dict({}, tiny, get_config("small"))


def test_training_inits_a_deeper_config_from_trained_weights(tiny_d2, photo_folder, tmp_path):
    """--init with weights of a shallower config grows them; the first forward matches."""
    from lalic_cli.training import TrainConfig, Trainer
    from lalic_cli.zoo.registry import save_weights

    sd = canonical(tiny_state_dict(seed=6))
    path = tmp_path / "tiny.safetensors"
    save_weights(sd, path, {"config": "tiny", "family": "lalic", "quality": "", "steps": "10"})
    cfg = TrainConfig(data=str(photo_folder), out=str(tmp_path / "run"), config=tiny_d2, lmbda=0.0067, steps=2,
                      batch=2, patch=64, init=str(path))
    t = Trainer(cfg)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(t.model.eval()(x)["x_hat"], build_model(sd, "tiny")(x)["x_hat"])
    t.model.train()
    t.run()
    assert t.step == 2 and t.steps_before == 10


@pytest.fixture
def tiny_wide(monkeypatch) -> str:
    config = dataclasses.replace(get_config("tiny"), M=64, groups=(8, 8, 16, 16, 16), description="test")
    monkeypatch.setitem(CONFIGS, "tiny-wide", config)
    return "tiny-wide"


def test_a_wider_latent_decodes_the_same_pixels(tiny_wide, tmp_path):
    """An appended channel group is zero, costs a few bytes and changes no pixel; the
    old groups' symbols are those of the trained model."""
    sd = canonical(tiny_state_dict(seed=3))
    grown = canonical(grow_state_dict(sd, get_config("tiny"), get_config(tiny_wide), seed=5))
    assert detect_config(grown) == tiny_wide
    assert torch.count_nonzero(grown["g_s.0.weight"][48:]) > 0 and torch.count_nonzero(grown["g_a.6.weight"][48:]) == 0
    img = Image.effect_noise((96, 64), 60).convert("RGB")
    outs = [_code(img, sd, tmp_path / "small"), _code(img, grown, tmp_path / "wide")]
    assert outs[0][1] == outs[1][1]
    assert 0 < outs[1][0] - outs[0][0] <= 24
    x = torch.rand(1, 3, 64, 64)
    small, wide = build_model(sd, "tiny").eval(), build_model(grown).eval()
    with torch.no_grad():
        ys, yw = small.latent_codec(small.analysis(x)), wide.latent_codec(wide.analysis(x))
    assert torch.equal(ys["y_hat"], yw["y_hat"][:, :48]) and torch.count_nonzero(yw["y_hat"][:, 48:]) == 0


def test_a_wider_latent_trains_its_new_channels(tiny_wide, tmp_path):
    """The distortion's gradient reaches g_a's new rows at the first step (no zero saddle)."""
    sd = canonical(tiny_state_dict(seed=3))
    model = build_model(canonical(grow_state_dict(sd, get_config("tiny"), get_config(tiny_wide))))
    x = torch.rand(2, 3, 64, 64)
    out = model.train()(x)
    ((out["x_hat"] - x) ** 2).mean().backward()
    assert torch.count_nonzero(model.g_a[6].weight.grad[48:]) > 0


def test_variable_rate_gains_of_new_channels_sit_inside_the_trained_ladder():
    from lalic_cli.models.grow import grow_state_dict as grow

    tiny = get_config("tiny")
    wide = dataclasses.replace(tiny, M=64, groups=(8, 8, 16, 16, 16))
    sd = canonical(tiny_state_dict(seed=3))
    sd["gain"] = torch.rand(4, 48) + 0.5
    sd["inv_gain"] = 1 / sd["gain"]
    grown = grow(sd, tiny, wide, num_rates=4)
    assert torch.equal(grown["gain"][:, :48], sd["gain"])
    new = grown["gain"][:, 48:]
    assert (new == new[:, :1]).all() and (new[:, 0] >= sd["gain"].min(1).values).all()
    assert (new[:, 0] <= sd["gain"].max(1).values).all()

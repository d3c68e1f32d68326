"""MRT's two-stage training: the VQ tokenizer, stage 1 (alignment), stage 2 from it, and
the LPIPS-style perceptual term from a user's VGG16 weights."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from conftest import blocky_image as _image
from lalic_cli.cli import main
from lalic_cli.errors import InputError
from lalic_cli.layers.vq import VectorQuantizer
from lalic_cli.models import MRT, VQTokenizer, get_config
from lalic_cli.training import Trainer, TrainConfig, align_loss
from lalic_cli.training.mrt_align import MrtAligner
from lalic_cli.training.perceptual import Perceptual, load_perceptual, vgg16_features
from lalic_cli.zoo.checkpoint import canonical


def _tokenizer(name: str = "vq-tiny", seed: int = 0) -> VQTokenizer:
    torch.manual_seed(seed)
    return VQTokenizer(**get_config(name).kwargs())


def _mrt(name: str = "mrt-tiny", seed: int = 0) -> MRT:
    torch.manual_seed(seed)
    return MRT(**get_config(name).kwargs())


def _cfg(folder, out, **kw) -> TrainConfig:
    base = dict(data=str(folder), out=str(out), config="mrt-tiny", codec="mrt", steps=3, batch=2, patch=256,
                lr=1e-3, checkpoint_every=100, seed=1)
    return TrainConfig(**(base | kw))


def _tokenizer_cfg(folder, out, **kw) -> TrainConfig:
    return _cfg(folder, out, **({"config": "vq-tiny", "stage": "tokenizer", "patch": 64} | kw))


@pytest.fixture
def tokenizer_weights(photo_folder, tmp_path):
    t = Trainer(_tokenizer_cfg(photo_folder, tmp_path / "tok", steps=2))
    t.run()
    return t.export_weights("tok")


def _same(a: dict, b: dict) -> bool:
    a, b = canonical(a), canonical(b)
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- tokenizer -------------------------------------------------------------------------

def test_tokenizer_codes_a_16x_grid_and_trains_every_part():
    tok = _tokenizer().train()
    x = torch.rand(2, 3, 64, 96)
    out = tok(x)
    assert out["x_hat"].shape == x.shape
    assert out["indices"].shape == (2, 4, 6) and out["indices"].dtype == torch.int64
    assert 0 <= int(out["indices"].min()) and int(out["indices"].max()) < get_config("vq-tiny").codes
    ((out["x_hat"] - x).square().mean() + out["vq_loss"]).backward()
    for name in ("encoder.0.weight", "quant.codebook", "post_quant.weight", "decoder.layers.0.weight"):
        grad = dict(tok.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    tok.eval()
    assert torch.equal(tok.encode(x), tok(x)["indices"])
    # each index stands for one decoder input
    features = tok.code_features()[tok.encode(x)].permute(0, 3, 1, 2)
    torch.testing.assert_close(tok.decoder(features), tok(x)["x_hat"], atol=1e-5, rtol=1e-5)


def test_unused_codes_restart_at_batch_inputs_in_training_only():
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 4)
    z = torch.randn(32, 4)
    z[:, 0] = 5.0
    with torch.no_grad():  # codes 0..2 point away from every input, unused for long
        vq.codebook[:3] = torch.tensor([-1.0, 0, 0, 0])
        vq.usage[:3] = 0.0
    vq.eval()(z)
    assert torch.all(vq.usage[:3] == 0)
    before = vq.codebook.detach().clone()
    out = vq.train()(z.requires_grad_())
    out["loss"].backward()  # the restart happened before the codebook entered the graph
    assert vq.codebook.grad is not None
    inputs = torch.nn.functional.normalize(z, dim=1)
    for i in range(3):
        assert any(torch.allclose(vq.codebook[i], row) for row in inputs), i
    assert torch.allclose(vq.usage[:3], torch.full((3,), 1 / 8))
    assert torch.equal(vq.codebook[3:], before[3:])


def test_tokenizer_decoder_loads_into_the_mrt_generator():
    for vq, mrt in (("vq-small", "mrt-small"), ("vq-tiny", "mrt-tiny")):
        assert get_config(vq).gen_dims == get_config(mrt).gen_dims
        dec, gen = _tokenizer(vq).decoder.state_dict(), _mrt(mrt).generator.state_dict()
        assert {k: v.shape for k, v in dec.items()} == {k: v.shape for k, v in gen.items()}
    tok, model = _tokenizer(), _mrt()
    aligner = MrtAligner(model, tok)
    assert _same(aligner.mrt.generator.state_dict(), tok.decoder.state_dict())
    assert not any(p.requires_grad for p in aligner.tokenizer.parameters())
    with pytest.raises(ValueError, match="gen_dims"):
        MrtAligner(_mrt("mrt-small"), _tokenizer())


# -- stage 1 ---------------------------------------------------------------------------

def test_stage1_cross_entropy_falls_and_leaves_the_generator_alone():
    aligner = MrtAligner(_mrt(), _tokenizer()).train()
    generator = {k: v.clone() for k, v in aligner.mrt.generator.state_dict().items()}
    torch.manual_seed(1)
    x = torch.rand(2, 3, 256, 256)
    opt = torch.optim.Adam([p for p in aligner.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        m = align_loss(aligner(x, torch.tensor([2, 2])), x)
        m["loss"].backward()
        opt.step()
        losses.append(float(m["ce"].detach()))
    assert losses[-1] < 0.7 * losses[0], losses
    assert _same(aligner.mrt.generator.state_dict(), generator)
    out = aligner.eval()(x, 2.0)
    assert out["logits"].shape == (2, get_config("vq-tiny").codes, 16, 16) and out["x_hat"].shape == x.shape


def test_each_stage_resumes_exactly(photo_folder, tmp_path, tokenizer_weights):
    for name, make in (("tok", _tokenizer_cfg), ("align", lambda *a, **k: _cfg(*a, stage="1", tokenizer=str(
            tokenizer_weights), **k))):
        whole = Trainer(make(photo_folder, tmp_path / f"{name}-a"))
        whole.run()
        Trainer(make(photo_folder, tmp_path / f"{name}-b", steps=2)).run()
        second = Trainer(make(photo_folder, tmp_path / f"{name}-b"),
                         resume=str(tmp_path / f"{name}-b" / "checkpoint.pt"))
        second.run()
        assert second.step == 3 and _same(whole.model.state_dict(), second.model.state_dict()), name


def test_stage1_exports_plain_mrt_weights_that_stage2_starts_from(photo_folder, tmp_path, tokenizer_weights):
    from lalic_cli.codec import decode, encode_image

    t = Trainer(_cfg(photo_folder, tmp_path / "s1", stage="1", tokenizer=str(tokenizer_weights), steps=1))
    t.run()
    path = t.export_weights("s1")
    from safetensors.torch import load_file

    sd = load_file(str(path))
    assert set(sd) == set(canonical(_mrt().state_dict()))  # no head, no tokenizer
    assert _same({k[len("generator."):]: v for k, v in sd.items() if k.startswith("generator.")},
                 t.model.tokenizer.decoder.state_dict())
    data = encode_image(_image(100, 140), 2, weights=str(path), codec="mrt")
    assert decode(data, weights=str(path)).image.size == (140, 100)
    s2 = Trainer(_cfg(photo_folder, tmp_path / "s2", init=str(path)))  # parameters only, as for any --init
    assert _same(dict(s2.model.named_parameters()), dict(t.model.mrt.named_parameters()))


def test_cli_runs_all_stages(photo_folder, tmp_path):
    def train(*args):
        r = CliRunner().invoke(main, ["train", "--codec", "mrt", "--data", str(photo_folder), "--steps", "2",
                                      "--batch", "1", *args], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return r

    train("--stage", "tokenizer", "--config", "vq-tiny", "--patch", "64", "--out", str(tmp_path / "tok"),
          "--export", "tok")
    r = train("--stage", "1", "--config", "mrt-tiny", "--tokenizer", str(tmp_path / "tok" / "tok.safetensors"),
              "--out", str(tmp_path / "s1"), "--export", "s1")
    assert "weights:" in r.output
    train("--stage", "2", "--config", "mrt-tiny", "--init", str(tmp_path / "s1" / "s1.safetensors"),
          "--out", str(tmp_path / "s2"))
    state = torch.load(tmp_path / "s2" / "checkpoint.pt", weights_only=False)
    assert state["step"] == 2 and state["config"]["stage"] == "2"
    assert set(state["model"]) == set(_mrt().state_dict())


@pytest.mark.parametrize("args, message", [
    (["--stage", "1", "--config", "mrt-tiny"], "needs --tokenizer"),
    (["--stage", "1", "--config", "mrt-tiny", "--tokenizer", "missing.safetensors"], "no such file"),
    (["--stage", "tokenizer", "--config", "mrt-tiny"], "is a mrt config, not vq"),
    (["--stage", "2", "--config", "mrt-tiny", "--tokenizer", "x.safetensors"], "does not apply"),
    (["--codec", "lalic", "--stage", "1", "--variable-rate"], "lalic has no stage '1'"),
    (["--stage", "2", "--config", "mrt-tiny", "--perceptual-weights", "missing.pth"], "no such file"),
    (["--stage", "1", "--config", "mrt-tiny", "--tokenizer", "x", "--perceptual-weights", "x"], "does not apply"),
])
def test_bad_stage_arguments_exit_2(photo_folder, tmp_path, args, message):
    r = CliRunner().invoke(main, ["train", "--codec", "mrt", "--data", str(photo_folder), "--out",
                                  str(tmp_path / "out"), *args])
    assert r.exit_code == 2 and message in r.output, r.output
    assert "Traceback" not in r.output


def test_stage1_refuses_other_weights_as_tokenizer(photo_folder, tmp_path):
    from lalic_cli.zoo.registry import save_weights

    path = tmp_path / "mrt.safetensors"
    save_weights(_mrt().state_dict(), path, {"config": "mrt-tiny", "family": "mrt"})
    with pytest.raises(InputError, match="not tokenizer weights"):
        Trainer(_cfg(photo_folder, tmp_path / "x", stage="1", tokenizer=str(path)))
    small = tmp_path / "vq-small.safetensors"
    save_weights(_tokenizer("vq-small").state_dict(), small, {"config": "vq-small", "family": "vq"})
    with pytest.raises(InputError, match="does not fit mrt-tiny"):
        Trainer(_cfg(photo_folder, tmp_path / "x", stage="1", tokenizer=str(small)))


# -- perceptual term -------------------------------------------------------------------

@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """A randomly initialised VGG16 in torchvision's layout, classifier key included."""
    torch.manual_seed(0)
    sd = {f"features.{k}": v for k, v in vgg16_features().state_dict().items()}
    sd["classifier.0.weight"] = torch.zeros(4, 4)
    path = tmp_path_factory.mktemp("vgg") / "vgg16.pth"
    torch.save(sd, path)
    return path


def test_perceptual_matches_torchvision_vgg16_features(vgg_file):
    torchvision = pytest.importorskip("torchvision")
    reference = torchvision.models.vgg16(weights=None).features
    sd = torch.load(vgg_file, weights_only=True)
    reference.load_state_dict({k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")})
    ours = load_perceptual(vgg_file).stages
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(torch.nn.Sequential(*ours)(x), reference[:30](x))


def test_perceptual_distance_is_lpips_with_uniform_weights(vgg_file):
    d = load_perceptual(vgg_file)
    x = torch.rand(2, 3, 32, 32)
    x_hat = (x + 0.1 * torch.randn_like(x)).requires_grad_()
    dist = d(x_hat, x)
    assert dist.shape == (2,) and torch.all(dist > 0)
    assert torch.allclose(d(x, x), torch.zeros(2))
    # by hand: unit-normalised features of the five stages, squared differences summed
    # over channels, averaged over positions and then over the stages
    h, want = (torch.cat([x_hat, x]).detach() - d.mean) / d.std, 0.0
    for stage in d.stages:
        h = stage(h)
        f = h / h.norm(dim=1, keepdim=True).clamp_min(1e-10)
        want = want + (f[:2] - f[2:]).square().sum(1).mean((1, 2)) / 5
    torch.testing.assert_close(dist.detach(), want)
    dist.sum().backward()
    assert x_hat.grad.abs().sum() > 0 and not any(p.requires_grad for p in d.parameters())


def test_perceptual_weights_must_be_a_vgg16_state_dict(tmp_path, vgg_file):
    assert isinstance(load_perceptual(vgg_file), Perceptual)
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 5, 5)}, wrong)
    with pytest.raises(InputError, match="not a torchvision VGG16 state dict"):
        load_perceptual(wrong)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    r = CliRunner().invoke(main, ["train", "--codec", "mrt", "--config", "mrt-tiny", "--data", str(tmp_path),
                                  "--out", str(tmp_path / "o"), "--perceptual-weights", str(junk)])
    assert r.exit_code == 2 and "junk.pth" in r.output and "Traceback" not in r.output


def test_stage2_with_perceptual_term(photo_folder, tmp_path, vgg_file):
    t = Trainer(_cfg(photo_folder, tmp_path / "p", batch=1, perceptual_weights=str(vgg_file), perceptual_weight=2.0))
    m = t.train_step()
    assert m["lpips"] > 0
    plain = Trainer(_cfg(photo_folder, tmp_path / "q", batch=1))
    base = plain.train_step()
    assert m["loss"] == pytest.approx(base["loss"] + 2.0 * m["lpips"], rel=1e-5)
    assert all(not k.startswith(("features", "stages")) for k in t.model.state_dict())


def test_tokenizer_weights_are_not_codec_weights(tokenizer_weights):
    from lalic_cli.codec import encode_image
    from lalic_cli.zoo.registry import WeightsError

    for codec in ("lalic", "mrt"):
        with pytest.raises(WeightsError, match="tokenizer for training MRT's stage 1, not a codec"):
            encode_image(_image(64, 64), 1, weights=str(tokenizer_weights), codec=codec)

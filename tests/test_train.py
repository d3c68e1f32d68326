"""Training: the loss, exact resume, variable rate, and DDP under torchrun (gloo, 2 CPU ranks)."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from lalic_cli.models import LALIC, get_config
from lalic_cli.training import LAMBDAS, Trainer, TrainConfig, rd_loss
from lalic_cli.zoo.checkpoint import canonical


@pytest.fixture
def image_folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        base = rng.integers(0, 256, (3, 3, 3)).astype(np.float32)
        img = Image.fromarray(base.astype(np.uint8), "RGB").resize((80 + 8 * i, 72), Image.BILINEAR)
        img.save(d / f"im{i}.png")
    return d


def cfg(folder, out, **kw) -> TrainConfig:
    base = dict(data=str(folder), out=str(out), config="tiny", variable_rate=True, steps=4, batch=2,
                patch=64, lr=1e-3, checkpoint_every=100, seed=3)
    return TrainConfig(**(base | kw))


def test_rd_loss_matches_hand_computation():
    x = torch.rand(2, 3, 8, 8)
    x_hat = x + 0.01 * torch.randn_like(x)
    lik = {"y": torch.rand(2, 4, 2, 2).clamp_min(0.01), "z": torch.rand(2, 2, 1, 1).clamp_min(0.01)}
    lmbda = torch.tensor([0.0018, 0.0483])
    m = rd_loss({"x_hat": x_hat, "likelihoods": lik}, x, lmbda)
    expected = 0.0
    for i in range(2):
        bits = -(np.log2(lik["y"][i].numpy()).sum() + np.log2(lik["z"][i].numpy()).sum())
        mse = float(((x_hat[i] - x[i]) ** 2).mean())
        expected += (float(lmbda[i]) * 255**2 * mse + bits / 64) / 2
    assert math.isclose(float(m["loss"]), expected, rel_tol=1e-5)


def test_resume_is_exact(image_folder, tmp_path):
    whole = Trainer(cfg(image_folder, tmp_path / "a"))
    whole.run()
    first = Trainer(cfg(image_folder, tmp_path / "b", steps=2))
    first.run()
    second = Trainer(cfg(image_folder, tmp_path / "b"), resume=str(tmp_path / "b" / "checkpoint.pt"))
    assert second.step == 2
    second.run()
    # Folded OmniShift copies are derived (refolded on load), so compare the canonical weights.
    a, b = canonical(whole.model.state_dict()), canonical(second.model.state_dict())
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert whole.opt.state_dict()["state"][0]["step"] == second.opt.state_dict()["state"][0]["step"] == 4


def test_a_checkpoint_names_no_lalic_class(image_folder, tmp_path):
    """Checkpoints hold tensors, builtins and numpy's RNG state, never a class of lalic's:
    those written before the trainer moved (``lalic_cli.train`` -> ``lalic_cli.training``)
    unpickle, and resume, whatever module the trainer lives in."""
    import pickle
    import types

    Trainer(cfg(image_folder, tmp_path, steps=1)).run()
    modules = set()

    class Recording(pickle.Unpickler):
        def find_class(self, module, name):
            modules.add(module)
            return super().find_class(module, name)

    st = torch.load(tmp_path / "checkpoint.pt", weights_only=False,
                    pickle_module=types.SimpleNamespace(Unpickler=Recording, load=pickle.load, __name__="pickle"))
    assert modules and not any(m.split(".")[0] == "lalic_cli" for m in modules), modules
    assert type(st["config"]) is dict and st["config"]["config"] == "tiny"


def test_a_left_over_aux_gradient_does_not_enter_the_update(image_folder, tmp_path):
    """The aux step leaves a gradient on the quantiles; the next R-D step must neither
    clip by it nor apply it."""
    clean, dirty = (Trainer(cfg(image_folder, tmp_path / n, clip=1e-3)) for n in ("c", "d"))
    for p in dirty.aux_opt.param_groups[0]["params"]:
        p.grad = torch.full_like(p, 1e6)
    for t in (clean, dirty):
        torch.manual_seed(11)
        t.train_step()
    a, b = dict(clean.model.named_parameters()), dict(dirty.model.named_parameters())
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_given_model_trains_under_its_own_name(image_folder, tmp_path):
    """benchmarks/investigations/train_control.py trains CompressAI's mbt2018-mean with lalic's recipe: a
    model passed in needs no registered config."""
    from compressai.zoo import mbt2018_mean

    model = mbt2018_mean(quality=1, pretrained=False)
    t = Trainer(cfg(image_folder, tmp_path / "ctrl", config="mbt2018-mean", variable_rate=False, lmbda=0.0067,
                    steps=1), model=model)
    t.run()
    assert t.step == 1 and t.model is model and (tmp_path / "ctrl" / "checkpoint.pt").is_file()


def test_gains_interpolate_between_levels():
    m = LALIC(**get_config("tiny").kwargs(), num_rates=6)
    with torch.no_grad():
        m.gain.copy_(torch.arange(1, 7, dtype=torch.float32)[:, None].expand(6, m.M))
    g3, _ = m.gains(3.0)
    g35, _ = m.gains(3.5)
    g4, _ = m.gains(4.0)
    assert torch.allclose(g3, torch.full_like(g3, 3.0)) and torch.allclose(g4, torch.full_like(g4, 4.0))
    assert torch.allclose(g35, torch.full_like(g35, math.sqrt(12.0)))  # geometric mean
    gb, _ = m.gains(torch.tensor([1.0, 6.0]))
    assert gb.shape == (2, m.M, 1, 1) and gb[0].mean() == 1.0 and gb[1].mean() == 6.0


def test_exported_variable_rate_weights_encode_fractional_quality(image_folder, tmp_path, monkeypatch):
    t = Trainer(cfg(image_folder, tmp_path / "run", steps=1))
    t.run()
    path = t.export_weights("vr")
    from lalic_cli import decode_bytes, encode_image
    from lalic_cli.bitstream import unpack

    img = Image.open(next(image_folder.iterdir()))
    data = encode_image(img, 3.5, weights=str(path))
    assert unpack(data).header.quality == 3.5
    assert decode_bytes(data, weights=str(path)).size == img.size
    assert encode_image(img, 3.5, weights=str(path)) == data


def test_ddp_two_cpu_ranks(image_folder, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "lalic_cli.cli", "train", "--data", str(image_folder), "--out", str(out), "--config", "tiny",
           "--variable-rate", "--steps", "2", "--batch", "1", "--patch", "64"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["step"] == 2


def _torchrun_train(folder, out, cwd, port: int, *extra: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "lalic_cli.cli", "train", "--data", str(folder), "--out", str(out), "--config", "tiny",
           "--variable-rate", "--batch", "1", "--patch", "64", "--seed", "3", *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=cwd)
    assert p.returncode == 0, p.stderr[-2000:]


def test_ddp_resume_is_exact(image_folder, tmp_path):
    """Each rank's crop stream survives a checkpoint: 2 + 2 steps under torchrun give the
    weights of 4 uninterrupted ones (with rank 0's stream restored on every rank they differ)."""
    _torchrun_train(image_folder, tmp_path / "whole", tmp_path, 29541, "--steps", "4")
    _torchrun_train(image_folder, tmp_path / "parts", tmp_path, 29542, "--steps", "2")
    half = torch.load(tmp_path / "parts" / "checkpoint.pt", weights_only=False)
    assert len(half["ranks"]) == 2 and not torch.equal(half["ranks"][0]["gen"], half["ranks"][1]["gen"])
    _torchrun_train(image_folder, tmp_path / "parts", tmp_path, 29543, "--steps", "4",
                    "--resume", str(tmp_path / "parts" / "checkpoint.pt"))
    a, b = (canonical(torch.load(tmp_path / d / "checkpoint.pt", weights_only=False)["model"]) for d in ("whole", "parts"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_single_process_checkpoint_resumes_under_ddp_with_distinct_streams(image_folder, tmp_path):
    first = Trainer(cfg(image_folder, tmp_path / "run", steps=1, batch=1))
    first.run()
    _torchrun_train(image_folder, tmp_path / "run", tmp_path, 29544, "--steps", "2",
                    "--resume", str(tmp_path / "run" / "checkpoint.pt"))
    st = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert st["step"] == 2 and not torch.equal(st["ranks"][0]["gen"], st["ranks"][1]["gen"])


def test_init_from_fp16_export_keeps_the_likelihood_bound(image_folder, tmp_path):
    """An fp16 export keeps the 1e-9 likelihood bound (fp16 would store 0), and --init
    loads parameters only, so a file written before that fix cannot zero the bound either."""
    from safetensors.torch import load_file, save_file

    t = Trainer(cfg(image_folder, tmp_path / "a", steps=1))
    t.run()
    path = t.export_weights("w", dtype=torch.float16)
    sd = load_file(str(path))
    bounds = [k for k in sd if k.endswith("likelihood_lower_bound.bound")]
    assert bounds and all(float(sd[k]) == pytest.approx(1e-9) for k in bounds)
    assert sd["g_a.0.weight"].dtype == torch.float16
    # a file written the old way, bounds stored as 0
    save_file({k: (torch.zeros_like(v) if k in bounds else v) for k, v in sd.items()}, str(tmp_path / "old.safetensors"))
    t2 = Trainer(cfg(image_folder, tmp_path / "b", init=str(tmp_path / "old.safetensors")))
    own = t2.model.state_dict()
    assert all(float(own[k]) == pytest.approx(1e-9) for k in bounds)
    assert torch.equal(own["g_a.0.weight"], sd["g_a.0.weight"].float())


def test_init_loads_every_parameter_the_hyper_transforms_included(image_folder, tmp_path):
    """--init must give the exported model exactly: every parameter under every name it has
    (h_a and h_s are also latent_codec.hyper's), and the same rate and reconstruction as the
    model the codec loads from that file. Before the fix h_a and h_s kept their random init."""
    from lalic_cli.zoo.checkpoint import build_model, canonical, load_checkpoint_file

    a = Trainer(cfg(image_folder, tmp_path / "a", steps=2))
    a.run()
    path = a.export_weights("w")
    b = Trainer(cfg(image_folder, tmp_path / "b", seed=4, init=str(path)))
    ref = build_model(load_checkpoint_file(path)).eval()
    mine = canonical(dict(b.model.named_parameters(remove_duplicate=False)))  # folded copies are derived
    theirs = canonical(dict(ref.named_parameters(remove_duplicate=False)))
    assert any(k.startswith("latent_codec.hyper.h_a.") for k in mine)
    assert set(mine) == set(theirs)
    assert [k for k in mine if not torch.equal(mine[k], theirs[k])] == []
    b.model.eval()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        o1, o2 = b.model(x, 3.0), ref(x, 3.0)
    assert torch.allclose(o1["x_hat"], o2["x_hat"], atol=1e-6)
    for k in o2["likelihoods"]:
        assert torch.allclose(o1["likelihoods"][k], o2["likelihoods"][k], rtol=1e-5, atol=1e-9)


def test_fp16_export_flushes_negligible_weights_but_keeps_what_fp16_would_lose(tmp_path):
    """A conv weight of 1e-8 among weights of 0.1 underflows harmlessly: its tensor is
    still stored fp16. A lone 1e-9 bound, or a value beyond fp16's range, stays fp32."""
    from safetensors.torch import load_file

    from lalic_cli.zoo.registry import save_weights

    w = torch.full((8,), 0.1)
    w[3] = 1e-8
    small = torch.tensor([1e-9, 0.0])
    big = torch.tensor([7e4, 1.0])
    save_weights({"w.weight": w, "s.bound": small, "b.weight": big}, tmp_path / "x.safetensors", {},
                 dtype=torch.float16)
    sd = load_file(str(tmp_path / "x.safetensors"))
    assert sd["w.weight"].dtype == torch.float16 and float(sd["w.weight"][3]) == 0.0
    assert torch.allclose(sd["w.weight"].float(), w, atol=1e-4)
    assert sd["s.bound"].dtype == torch.float32 and torch.equal(sd["s.bound"], small)
    assert sd["b.weight"].dtype == torch.float32 and torch.equal(sd["b.weight"], big)


def test_exported_steps_count_the_init_weights_history(image_folder, tmp_path):
    """--init continues weights that already had steps: the export's ``steps`` is the sum,
    and a resumed run keeps counting from the same base."""
    from lalic_cli.zoo.registry import weights_metadata

    a = Trainer(cfg(image_folder, tmp_path / "a", steps=3))
    a.run()
    first = a.export_weights("w")
    assert weights_metadata(first)["steps"] == "3"
    b = Trainer(cfg(image_folder, tmp_path / "b", steps=2, init=str(first)))
    b.run()
    assert weights_metadata(b.export_weights("w"))["steps"] == "5"
    c = Trainer(cfg(image_folder, tmp_path / "b", steps=4), resume=str(tmp_path / "b" / "checkpoint.pt"))
    c.run()
    assert c.step == 4 and weights_metadata(c.export_weights("w"))["steps"] == "7"


def test_init_rejects_weights_of_another_config(image_folder, tmp_path):
    from lalic_cli.errors import InputError

    t = Trainer(cfg(image_folder, tmp_path / "a", steps=1))
    path = t.export_weights("w")
    with pytest.raises(InputError):
        Trainer(cfg(image_folder, tmp_path / "b", config="small", init=str(path)))


def test_non_finite_step_is_skipped(image_folder, tmp_path, monkeypatch):
    """A batch whose loss is inf leaves every parameter (the quantiles included) untouched."""
    t = Trainer(cfg(image_folder, tmp_path / "a"))
    with torch.no_grad():  # the checkerboard convs mask their own weights on the first forward
        t.model(torch.rand(1, 3, 64, 64), torch.tensor([2.0]))
    before = {k: v.clone() for k, v in t.model.named_parameters()}
    forward = t.model.forward

    def poisoned(*a, **k):
        out = forward(*a, **k)
        out["likelihoods"]["y"] = out["likelihoods"]["y"] * 0  # rate = inf
        return out

    monkeypatch.setattr(t.model, "forward", poisoned)
    m = t.train_step()
    assert m["skipped"] == 1 and math.isinf(m["loss"])
    for k, v in t.model.named_parameters():
        assert torch.isfinite(v).all(), k
        if not k.endswith(".quantiles"):  # the aux loss still trains the quantiles
            assert torch.equal(v, before[k]), k


def test_warmup_ramps_the_learning_rate_then_drops_it(image_folder, tmp_path):
    t = Trainer(cfg(image_folder, tmp_path / "w", steps=10, warmup=4, lr=2e-3))
    seen = []
    for _ in range(10):
        t.train_step()
        seen.append(t.opt.param_groups[0]["lr"])
    # steps 0..3 ramp to the full rate, 4..8 hold it, step 9 (>= 0.85 * 10) has it divided by 10
    assert seen == pytest.approx([5e-4, 1e-3, 1.5e-3, 2e-3, 2e-3, 2e-3, 2e-3, 2e-3, 2e-3, 2e-4])


def test_time_limit_stops_and_checkpoints(image_folder, tmp_path):
    t = Trainer(cfg(image_folder, tmp_path / "a", steps=10_000, time_limit=1.0))
    t.run()
    assert 0 < t.step < 10_000
    assert torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["step"] == t.step


def test_train_command_exports_fp16_weights(image_folder, tmp_path):
    from click.testing import CliRunner
    from safetensors import safe_open

    from lalic_cli.cli import main

    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["train", "--data", str(image_folder), "--out", str(out), "--config", "tiny",
                                  "--variable-rate", "--steps", "1", "--batch", "1", "--patch", "64",
                                  "--export", "w", "--export-dtype", "float16"])
    assert r.exit_code == 0, r.output
    with safe_open(str(out / "w.safetensors"), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert "F16" in dtypes


def test_rate_weights_set_how_often_each_quality_is_drawn(image_folder, tmp_path):
    from lalic_cli.training import LAMBDAS, LalicRecipe

    recipe = LalicRecipe(cfg(image_folder, tmp_path, rate_weights=(0, 0, 0, 0, 1, 3, 0, 0)))
    q, lmbda = recipe.sample(8000, torch.Generator().manual_seed(0))
    counts = torch.bincount(q.long(), minlength=9)
    assert counts[:5].sum() == 0 and counts[7:].sum() == 0  # only q5 and q6 weigh (and there is no q0)
    assert 0.73 < counts[6] / 8000 < 0.77  # 3 of 4; binomial sd 0.005
    assert torch.equal(lmbda, torch.tensor(LAMBDAS)[q.long() - 1])


def test_uniform_rates_draw_every_quality_alike(image_folder, tmp_path):
    from lalic_cli.training import LalicRecipe

    q, _ = LalicRecipe(cfg(image_folder, tmp_path)).sample(6000, torch.Generator().manual_seed(1))
    share = torch.bincount(q.long(), minlength=9)[1:] / 6000
    assert len(share) == 8 and torch.all((share > 0.105) & (share < 0.145)), share  # 1/8 each; sd 0.004


@pytest.mark.parametrize("args, message", [
    (["--variable-rate", "--rate-weights", "1,1,2"], "takes 8 weights"),
    (["--variable-rate", "--rate-weights", "1,1,1,1,1,1,1,-1"], "takes 8 weights"),
    (["--variable-rate", "--rate-weights", "0,0,0,0,0,0,0,0"], "takes 8 weights"),
    (["--variable-rate", "--rate-weights", "1,1,x,1,1,2"], "comma-separated numbers"),
    (["--lambda", "0.0067", "--rate-weights", "1,1,1,1,1,2"], "needs --variable-rate"),
    (["--codec", "mrt", "--config", "mrt-tiny", "--rate-weights", "1,1,1,1,1,2"], "does not apply"),
])
def test_bad_rate_weights_exit_2(image_folder, tmp_path, args, message):
    from click.testing import CliRunner

    from lalic_cli.cli import main

    r = CliRunner().invoke(main, ["train", "--data", str(image_folder), "--out", str(tmp_path / "o"),
                                  "--config", "tiny", "--steps", "1", *args])
    assert r.exit_code == 2 and message in r.output, r.output
    assert "Traceback" not in r.output


def test_bf16_precision_runs_the_transforms_in_bf16_while_training_only(image_folder, tmp_path):
    t = Trainer(cfg(image_folder, tmp_path / "b", precision="bf16"))
    ref = LALIC(**get_config("tiny").kwargs(), num_rates=len(LAMBDAS))
    seen = []
    layer = next(m for m in t.model.g_a.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    layer.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    metrics = t.train_step()
    assert math.isfinite(metrics["loss"]) and seen == [torch.bfloat16]
    x = torch.rand(1, 3, 64, 64)
    ref.load_state_dict(t.model.state_dict())
    y_train, y_ref = t.model.g_a(x).detach(), ref.g_a(x).detach()
    assert y_train.dtype == torch.float32 and seen[-1] == torch.bfloat16
    rel = float((y_train - y_ref).norm() / y_ref.norm())
    assert 0 < rel < 3e-2  # bf16's 8-bit mantissa: an error, and a small one
    t.model.eval()
    ref.eval()
    with torch.no_grad():
        assert torch.equal(t.model.g_a(x), ref.g_a(x))  # validation and export stay float32
    assert seen[-1] == torch.float32


def test_bf16_precision_is_refused_where_it_does_not_apply(image_folder, tmp_path):
    from click.testing import CliRunner

    from lalic_cli.cli import main

    r = CliRunner().invoke(main, ["train", "--data", str(image_folder), "--out", str(tmp_path / "m"),
                                  "--codec", "mrt", "--config", "mrt-tiny", "--steps", "1", "--precision", "bf16"])
    assert r.exit_code == 2 and "applies to LALIC only" in r.output, r.output


def test_extend_rates_keeps_trained_rows_and_continues_the_top_ratio():
    from lalic_cli.training import extend_rates

    table = torch.tensor([[1.0, 2.0], [2.0, 3.0], [4.0, 6.0]])
    out = extend_rates(table, 5)
    assert torch.equal(out[:3], table)
    assert torch.allclose(out[3:], torch.tensor([[8.0, 12.0], [16.0, 24.0]]))


def test_init_from_six_rate_weights_codes_q1_to_q6_unchanged(image_folder, tmp_path):
    """An 8-rate model started from 6-rate weights gives the 6-rate model's output at q1..q6."""
    from lalic_cli.models import LALIC, get_config
    from lalic_cli.training import LAMBDAS, Trainer
    from lalic_cli.zoo.registry import save_weights

    torch.manual_seed(3)
    six = LALIC(**get_config("tiny").kwargs(), num_rates=6).eval()
    save_weights(six.state_dict(), tmp_path / "six.safetensors", {"config": "tiny", "family": "lalic",
                                                                   "quality": "variable", "steps": "7"})
    t = Trainer(cfg(image_folder, tmp_path, init=str(tmp_path / "six.safetensors")))
    eight = t.model.eval()
    assert eight.num_rates == len(LAMBDAS) == 8
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for q in (1.0, 3.5, 6.0):
            assert torch.allclose(eight(x, q)["x_hat"], six(x, q)["x_hat"], atol=1e-5)
        g6, g7, g8 = (eight.gains(q)[0].flatten() for q in (6.0, 7.0, 8.0))
    assert torch.allclose(g7 / g6, g8 / g7)  # q7 and q8 continue the top ratio


def test_ema_is_the_moving_average_of_the_updates_and_resumes_exactly(image_folder, tmp_path):
    """Recomputed by hand from the weights after each step; a resumed run has the same average."""
    t = Trainer(cfg(image_folder, tmp_path / "a", ema=0.9, steps=3))
    names = [n for n, _ in t.model.named_parameters()]
    expected = None
    for _ in range(3):
        t.train_step()
        now = {n: p.detach().clone() for n, p in t.model.named_parameters()}
        expected = now if expected is None else {n: 0.9 * expected[n] + 0.1 * now[n] for n in names}
    averaged = dict(t.ema.module.named_parameters())
    assert all(torch.allclose(averaged[n], expected[n], atol=1e-6) for n in names)
    assert any(not torch.equal(averaged[n], dict(t.model.named_parameters())[n]) for n in names)
    whole = Trainer(cfg(image_folder, tmp_path / "b", ema=0.9))
    whole.run()
    Trainer(cfg(image_folder, tmp_path / "c", ema=0.9, steps=2)).run()
    second = Trainer(cfg(image_folder, tmp_path / "c", ema=0.9), resume=str(tmp_path / "c" / "checkpoint.pt"))
    second.run()
    a, b = (canonical(dict(t.ema.module.named_parameters())) for t in (whole, second))  # folded copies: derived
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ema_export_writes_the_average_and_validation_reports_both(image_folder, tmp_path):
    from lalic_cli.zoo.checkpoint import load_checkpoint_file

    t = Trainer(cfg(image_folder, tmp_path / "a", ema=0.5, steps=2, val_data=str(image_folder), val_every=2))
    seen = {}
    t.run(lambda step, m: seen.update(m))
    assert {"val_loss", "val_loss_ema", "val_psnr_ema"} <= seen.keys() and seen["val_loss"] != seen["val_loss_ema"]
    avg = canonical(load_checkpoint_file(t.export_weights("w")))
    raw = canonical(load_checkpoint_file(t.export_weights("w-raw", averaged=False)))
    key = "g_a.0.weight"
    assert torch.equal(avg[key], t.ema.module.g_a[0].weight) and torch.equal(raw[key], t.model.g_a[0].weight)
    assert not torch.equal(avg[key], raw[key])

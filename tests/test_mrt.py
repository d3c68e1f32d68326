"""MRT: the 1-D operators it adds, portable bit coding, the model, the codec, CLI and training."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import blocky_image as _image
from lalic_cli.latent_codecs import BitContextCodec
from lalic_cli.layers.omnishift import OmniShift
from lalic_cli.layers.rwkv import RwkvBlock
from lalic_cli.models import MRT, get_config
from lalic_cli.models.mrt import from_windows, to_windows
from lalic_cli.ops.biwkv import biwkv_reference
from lalic_cli.portable.bernoulli import LEVELS, BernoulliCoder
from lalic_cli.portable.layers import to_portable

ROOT = Path(__file__).resolve().parents[1]


def _tiny_mrt(seed: int = 0) -> MRT:
    torch.manual_seed(seed)
    model = MRT(**get_config("mrt-tiny").kwargs())
    with torch.no_grad():  # away from the zero init, so contexts matter
        for p in model.latent_codec.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="module")
def mrt_weights(tmp_path_factory) -> Path:
    from lalic_cli.zoo.registry import save_weights

    path = tmp_path_factory.mktemp("mrt") / "mrt-test.safetensors"
    save_weights(_tiny_mrt().state_dict(), path, {"config": "mrt-tiny", "family": "mrt"})
    return path


# -- 1-D operators ---------------------------------------------------------------------

def test_1d_omnishift_folds_to_the_sum_of_its_branches():
    torch.manual_seed(0)
    shift = OmniShift(6, ndim=1).train()
    x = torch.randn(2, 6, 19)
    branches = shift(x)
    by_hand = sum(
        a * F.conv1d(x, w, padding=w.shape[-1] // 2, groups=6)
        for a, w in zip(shift.alpha[1:], (shift.conv1x1.weight, shift.conv3x3.weight, shift.conv5x5.weight))
    ) + shift.alpha[0] * x
    torch.testing.assert_close(branches, by_hand)
    shift.eval()
    torch.testing.assert_close(shift(x), by_hand, atol=1e-5, rtol=1e-5)


def _naive_block_1d(block: RwkvBlock, x: torch.Tensor) -> torch.Tensor:
    """The Bi-RWKV block written out with the naive BiWKV formula and a plain conv1d shift."""
    def shift(s, t):
        w = s.folded_weight()
        return F.conv1d(t.transpose(1, 2), w, padding=2, groups=t.shape[-1]).transpose(1, 2)

    att, ffn = block.att, block.ffn
    t = x
    s = shift(att.omni_shift, block.ln1(t))
    n = t.shape[1]
    y = biwkv_reference(att.decay / n, att.boost / n, att.key(s), att.value(s)).to(x.dtype)
    t = t + block.gamma1 * att.output(torch.sigmoid(att.receptance(s)) * y)
    s = shift(ffn.omni_shift, block.ln2(t))
    kv = ffn.value(torch.relu(ffn.key(s)).square())
    return t + block.gamma2 * torch.sigmoid(ffn.receptance(s)) * kv


def test_1d_rwkv_block_matches_the_naive_formula_in_both_paths():
    torch.manual_seed(1)
    block = RwkvBlock(8, hidden_rate=2, ndim=1)
    with torch.no_grad():
        block.att.decay.uniform_(-3, 3)
    x = torch.randn(2, 23, 8)
    block.eval()
    with torch.no_grad():
        want = _naive_block_1d(block, x)
        fused = block(x)  # the inference path (fused residuals)
    with torch.enable_grad():
        trained = block(x)  # the training path
    torch.testing.assert_close(fused, want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(trained.detach(), want, atol=1e-4, rtol=1e-4)


def test_portable_1d_block_is_close_to_float_and_thread_independent():
    torch.manual_seed(2)
    block = RwkvBlock(8, hidden_rate=2, ndim=1).eval()
    x = torch.randn(1, 40, 8)
    portable_block = to_portable(block)
    with torch.no_grad():
        want = block(x).double()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = portable_block(x)
        torch.set_num_threads(2)
        two = portable_block(x)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
    assert float((one - want).abs().max()) < 1e-3


# -- binary coding ---------------------------------------------------------------------

def test_bernoulli_table_is_integer_and_codes_close_to_the_ideal_length():
    coder = BernoulliCoder()
    for k, cdf in enumerate(coder.cdfs):
        assert cdf[0] == 0 and cdf[-1] == 1 << 16 and all(b > a for a, b in zip(cdf, cdf[1:]))
        assert (cdf[2] - cdf[1]) / 65536 == pytest.approx((k + 0.5) / LEVELS, abs=1e-9)
    gen = torch.Generator().manual_seed(0)
    p = torch.rand(20000, generator=gen, dtype=torch.float64)
    bits = (torch.rand(20000, generator=gen, dtype=torch.float64) < p).to(torch.uint8)
    levels = coder.levels(p)
    assert int(levels.min()) >= 0 and int(levels.max()) < LEVELS
    string = coder.encode(bits, levels)
    assert torch.equal(coder.decode(string, levels), bits)
    ideal = coder.bits_cost(bits, levels)
    assert ideal <= 8 * len(string) <= ideal * 1.02 + 64


def test_context_codec_round_trip_codes_only_the_asked_groups():
    torch.manual_seed(3)
    codec = BitContextCodec(bits=12, tokens=6, dim=16, group_bits=4).eval()
    bits = torch.randint(0, 2, (1, 18, 12), dtype=torch.uint8)
    strings = codec.compress(bits, groups=2)
    assert len(strings) == 4
    back = codec.decompress(strings, 18, groups=2)
    assert torch.equal(back[..., :8], bits[..., :8])
    assert int(back[..., 8:].abs().sum()) == 0


def test_context_codec_rate_matches_its_training_likelihoods():
    """The coded length is what the model's own probabilities promise: the training
    likelihoods' ideal length, up to the 256-level quantisation and the coder's flushes."""
    torch.manual_seed(4)
    codec = BitContextCodec(bits=8, tokens=8, dim=16, group_bits=4).eval()
    bits = torch.randint(0, 2, (1, 256, 8), dtype=torch.uint8)
    with torch.no_grad():
        lik = codec.likelihoods(bits.float() * 2 - 1, 2)
    ideal = float(-torch.log2(lik).sum())
    strings = codec.compress(bits, 2)
    coded = 8 * sum(len(s) for s in strings)
    flush = 40 * len(strings)  # rANS state flush and byte alignment, per string
    assert ideal * 0.97 - 16 < coded < ideal * 1.03 + flush


# -- the model -------------------------------------------------------------------------

def test_windows_are_raster_order_and_invert():
    grid = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).view(2, 3, 4, 6)
    tokens, shape = to_windows(grid, 2)
    assert shape == (2, 3) and tokens.shape == (2 * 6, 4, 3)
    # second window of the first image: rows 0-1, columns 2-3, channel 0
    assert tokens[1, :, 0].tolist() == [2.0, 3.0, 8.0, 9.0]
    assert torch.equal(from_windows(tokens, shape, 2), grid)


def test_quality_keeps_a_prefix_of_the_bits():
    model = _tiny_mrt()
    x = torch.rand(1, 3, 256, 512)
    bits = {q: model.compress(x, q)["bits"] for q in (1, 2)}
    assert bits[1].shape == (1, 2 * 16, 8)  # 2 windows x 16 tokens, 8 bits
    assert int(bits[1][..., 4:].sum()) == 0
    assert torch.equal(bits[1][..., :4], bits[2][..., :4])
    with pytest.raises(ValueError, match="qualities are 1..2"):
        model.bits_for(3)
    with pytest.raises(ValueError):
        model.bits_for(1.5)


def test_decompress_reproduces_the_encoders_bits_and_image():
    model = _tiny_mrt()
    x = torch.rand(1, 3, 512, 256)
    enc = model.compress(x, 2)
    dec = model.decompress(enc["strings"], enc["shape"], 2)
    assert torch.equal(dec["bits"], enc["bits"])
    with torch.no_grad():
        want = model.decode_latent(enc["bits"].float() * 2 - 1, enc["shape"]).clamp(0, 1)
    assert torch.equal(dec["x_hat"], want)


def test_training_forward_rate_counts_only_the_kept_bits():
    model = _tiny_mrt().train()
    x = torch.rand(2, 3, 256, 256)
    out = model(x, torch.tensor([1, 2]))
    lik = out["likelihoods"]
    assert torch.all(lik[0, :, 4:] == 1) and torch.all(lik[0, :, :4] < 1)
    assert torch.all(lik[1] < 1)
    assert out["x_hat"].shape == x.shape


# -- codec, container, CLI -------------------------------------------------------------

@pytest.mark.parametrize("size", [(1, 1), (300, 2000), (37, 300)])
def test_any_size_round_trips(mrt_weights, size):
    from lalic_cli.bitstream import read_header
    from lalic_cli.codec import decode, encode_image

    h, w = size
    data = encode_image(_image(h, w), 2, weights=str(mrt_weights), codec="mrt")
    header = read_header(data)
    assert header.family == "mrt" and header.entropy == "exact"
    assert (header.height, header.width) == (h, w)
    rows, cols = header.z_shape
    assert (rows, cols) == (math.ceil(h / 256), math.ceil(w / 256))
    assert header.num_groups == 2
    dec = decode(data, weights=str(mrt_weights))
    assert dec.image.size == (w, h) and dec.image.mode == "RGB"


def test_mrt_file_is_tiny(mrt_weights):
    from lalic_cli.codec import encode_image

    data = encode_image(_image(512, 768), 2, weights=str(mrt_weights), codec="mrt")
    # 6 windows x 16 tokens x 8 bits = 768 bits of payload at most (plus coder flushes, header)
    assert 8 * len(data) / (512 * 768) < 0.03


def test_float_entropy_and_wrong_quality_are_clear_errors(mrt_weights):
    from lalic_cli.codec import encode_image
    from lalic_cli.errors import InputError, QualityError

    with pytest.raises(InputError, match="exact"):
        encode_image(_image(64, 64), 1, weights=str(mrt_weights), codec="mrt", entropy="float")
    with pytest.raises(QualityError, match="outside 1 .. 2"):
        encode_image(_image(64, 64), 3, weights=str(mrt_weights), codec="mrt")


def test_lalic_weights_are_refused_for_mrt(tmp_path):
    from lalic_cli.codec import encode_image
    from lalic_cli.zoo.registry import WeightsError, save_weights
    from conftest import tiny_state_dict

    path = tmp_path / "tiny.safetensors"
    save_weights(tiny_state_dict(), path, {"config": "tiny"})
    with pytest.raises(WeightsError, match="--codec lalic"):
        encode_image(_image(64, 64), 1, weights=str(path), codec="mrt")


def _cli(*args, env_extra=None, cwd=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "lalic_cli.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd or ROOT)


def test_cli_round_trip_across_thread_counts_and_info(mrt_weights, tmp_path):
    src = tmp_path / "in.png"
    _image(300, 520, seed=5).save(src)
    lal = tmp_path / "in.lal"
    r = _cli("encode", str(src), "--codec", "mrt", "-q", "2", "--weights", str(mrt_weights), "-o", str(lal),
             env_extra={"OMP_NUM_THREADS": "2"})
    assert r.returncode == 0, r.stderr
    for threads, impl in (("1", "kernel"), ("1", "torch")):
        png = tmp_path / f"out-{impl}.png"
        r = _cli("decode", str(lal), "--weights", str(mrt_weights), "-o", str(png),
                 env_extra={"OMP_NUM_THREADS": threads, "LALIC_BIWKV": impl})
        assert r.returncode == 0, r.stderr
        assert Image.open(png).size == (520, 300)
    r = _cli("info", str(lal), "--json")
    fields = json.loads(r.stdout)
    assert fields["family"] == "mrt" and fields["windows"] == [2, 3] and fields["bit_groups"] == 2


def test_cli_bad_quality_exits_2_without_traceback(mrt_weights, tmp_path):
    src = tmp_path / "in.png"
    _image(64, 64).save(src)
    r = _cli("encode", str(src), "--codec", "mrt", "-q", "3", "--weights", str(mrt_weights), "-o",
             str(tmp_path / "x.lal"))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "quality 3 is outside 1 .. 2" in r.stderr
    assert not (tmp_path / "x.lal").exists()


def test_damaged_mrt_files_fail_cleanly(mrt_weights):
    from lalic_cli.codec import decode, encode_image
    from lalic_cli.errors import LalicError

    data = encode_image(_image(200, 300), 2, weights=str(mrt_weights), codec="mrt")
    rng = np.random.default_rng(0)
    cases = [data[:n] for n in (0, 5, len(data) // 2, len(data) - 1)]
    for _ in range(30):
        b = bytearray(data)
        i = int(rng.integers(len(b)))
        b[i] ^= 1 << int(rng.integers(8))
        cases.append(bytes(b))
    for bad in cases:
        with pytest.raises(LalicError):
            decode(bad, weights=str(mrt_weights))


# -- training --------------------------------------------------------------------------

def _train_cfg(folder, out, **kw):
    from lalic_cli.training import TrainConfig

    base = dict(data=str(folder), out=str(out), config="mrt-tiny", codec="mrt", steps=3, batch=2, patch=256,
                lr=1e-3, checkpoint_every=100, seed=1)
    return TrainConfig(**(base | kw))


def test_mrt_training_resumes_exactly_and_exports_codable_weights(photo_folder, tmp_path):
    from lalic_cli.codec import decode, encode_image
    from lalic_cli.training import Trainer
    from lalic_cli.zoo.checkpoint import canonical

    whole = Trainer(_train_cfg(photo_folder, tmp_path / "a"))
    whole.run()
    first = Trainer(_train_cfg(photo_folder, tmp_path / "b", steps=2))
    first.run()
    second = Trainer(_train_cfg(photo_folder, tmp_path / "b"), resume=str(tmp_path / "b" / "checkpoint.pt"))
    second.run()
    a, b = canonical(whole.model.state_dict()), canonical(second.model.state_dict())
    assert all(torch.equal(a[k], b[k]) for k in a)
    path = whole.export_weights("mrt-trained")
    data = encode_image(_image(100, 140), 1, weights=str(path), codec="mrt")
    assert decode(data, weights=str(path)).image.size == (140, 100)


def test_mrt_training_rejects_partial_windows(photo_folder, tmp_path):
    from lalic_cli.errors import InputError
    from lalic_cli.training import Trainer

    with pytest.raises(InputError, match="256"):
        Trainer(_train_cfg(photo_folder, tmp_path / "c", patch=128))


def test_mrt_ddp_two_cpu_ranks(photo_folder, tmp_path):
    """Under torchrun; a rank whose images all draw q1 leaves q2's context networks unused."""
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29541",
           "-m", "lalic_cli.cli", "train", "--codec", "mrt", "--config", "mrt-tiny", "--data", str(photo_folder),
           "--out", str(out), "--steps", "3", "--batch", "1"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 3

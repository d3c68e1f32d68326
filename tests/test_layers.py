"""The fused inference paths of the layers (Bi-RWKV block, entropy-parameter block)
against their plain formulations."""

from __future__ import annotations

import pytest
import torch

from lalic_cli.layers import rwkv
from lalic_cli.layers.rwkv import RwkvBlock


def _block(dim: int, hidden_rate: int = 4, seed: int = 0) -> RwkvBlock:
    torch.manual_seed(seed)
    block = RwkvBlock(dim, hidden_rate)
    with torch.no_grad():  # non-trivial scales, so folding them into the GEMMs is exercised
        block.gamma1.uniform_(0.5, 1.5)
        block.gamma2.uniform_(0.5, 1.5)
        block.ln1.weight.uniform_(0.5, 1.5)
        block.ln2.bias.uniform_(-0.2, 0.2)
    return block.eval()


def _plain(block: RwkvBlock, x: torch.Tensor) -> torch.Tensor:
    """The block's formula step by step in float64: an independent reference."""
    b, c, h, w = x.shape
    block = block.double()
    t = x.double().flatten(2).transpose(1, 2)

    def shift(shifter, tok):
        return shifter(tok.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)

    att, ffn = block.att, block.ffn
    a = shift(att.omni_shift, block.ln1(t))
    y = rwkv.biwkv(att.decay / (h * w), att.boost / (h * w), att.key(a), att.value(a))
    t = t + block.gamma1 * att.output(torch.sigmoid(att.receptance(a)) * y)
    f = shift(ffn.omni_shift, block.ln2(t))
    t = t + block.gamma2 * torch.sigmoid(ffn.receptance(f)) * ffn.value(torch.relu(ffn.key(f)) ** 2)
    block.float()
    return t.transpose(1, 2).reshape(b, c, h, w)


@pytest.mark.parametrize("shape", [(1, 16, 5, 7), (2, 24, 9, 4), (1, 8, 1, 1)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_inference_path_matches_the_formula(shape, channels_last):
    x = torch.randn(*shape)
    block = _block(shape[1])
    ref = _plain(block, x)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        out = block(x)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)


def test_inference_path_matches_the_training_path():
    x = torch.randn(2, 16, 6, 10)
    block = _block(16, hidden_rate=8)
    with torch.enable_grad():
        train = block(x)
    with torch.inference_mode():
        infer = block(x)
    torch.testing.assert_close(infer, train.detach(), rtol=1e-5, atol=1e-5)


def test_inference_leaves_the_input_alone():
    x = torch.randn(1, 16, 8, 8).contiguous(memory_format=torch.channels_last)
    before = x.clone()
    with torch.inference_mode():
        _block(16)(x)
    assert torch.equal(x, before)


@pytest.mark.parametrize("chunk", [1, 64, 100, 129])
def test_token_chunks_give_the_same_bits(monkeypatch, chunk):
    """Chunking bounds memory on large images; it must not change a single bit.
    (Chunks are rounded up to 64-row multiples; 2 x 130 tokens leaves uneven tails.)"""
    x = torch.randn(2, 32, 10, 13).contiguous(memory_format=torch.channels_last)
    block = _block(32)
    with torch.inference_mode():
        monkeypatch.setattr(rwkv, "TOKEN_CHUNK", 0)
        whole = block(x)
        monkeypatch.setattr(rwkv, "TOKEN_CHUNK", chunk)
        chunked = block(x)
    assert torch.equal(whole, chunked)


def test_model_chunked_and_unchunked_code_the_same(monkeypatch, tiny_model):
    x = torch.rand(1, 3, 128, 192)
    with torch.inference_mode():
        monkeypatch.setattr(rwkv, "TOKEN_CHUNK", 0)
        whole = tiny_model.compress(x)
        x_whole = tiny_model.decompress(whole["strings"], whole["shape"])["x_hat"]
        monkeypatch.setattr(rwkv, "TOKEN_CHUNK", 320)
        chunked = tiny_model.compress(x)
        x_chunked = tiny_model.decompress(chunked["strings"], chunked["shape"])["x_hat"]
    assert whole["strings"] == chunked["strings"]
    assert torch.equal(x_whole, x_chunked)


@pytest.fixture
def tiny_model():
    from lalic_cli.models import LALIC, get_config

    torch.manual_seed(0)
    model = LALIC(**get_config("tiny").kwargs()).eval()
    model.update(force=True)
    return model


def test_recomputed_shift_gives_the_same_bits(monkeypatch):
    """Large maps drop the shifted input during BiWKV and compute it again: same bits."""
    x = torch.randn(1, 32, 12, 16).contiguous(memory_format=torch.channels_last)
    block = _block(32)
    with torch.inference_mode():
        kept = block(x)
        monkeypatch.setattr(rwkv, "RECOMPUTE_ELEMENTS", 0)
        recomputed = block(x)
    assert torch.equal(kept, recomputed)


def _fresh_output(block: RwkvBlock, x: torch.Tensor, bf16: bool = False) -> torch.Tensor:
    """The block's output from a copy that has never run: nothing cached."""
    import copy

    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return copy.deepcopy(block)(x)


def _write_in_place(block: RwkvBlock) -> None:
    """What training does to the weights between validations: an optimizer step on the
    block, then an EMA-style in-place lerp towards another block (gamma included)."""
    block.train()
    loss = block(torch.randn(1, block.ln1.normalized_shape[0], 4, 4)).square().mean()
    loss.backward()
    torch.optim.SGD(block.parameters(), lr=0.5).step()
    block.eval()
    other = _block(block.ln1.normalized_shape[0], seed=7)
    with torch.no_grad():
        torch._foreach_lerp_([p.detach() for p in block.parameters()], list(other.parameters()), 0.3)


@pytest.mark.parametrize("bf16", [False, True])
def test_cached_gemm_weights_follow_every_weight_change(bf16):
    """The GEMM-ready weight copies are kept between calls; any change to the weights or
    to the scales folded into them (step, in-place update, load, new storage) must show."""
    if bf16:
        from lalic_cli.precision import native_bf16

        if not native_bf16():
            pytest.skip("bf16 products need native bf16 here")
    x = torch.randn(1, 16, 6, 5).contiguous(memory_format=torch.channels_last)
    block = _block(16)

    def run():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return block(x)

    first = run()
    assert torch.equal(run(), first)  # from the cache: the same bits
    _write_in_place(block)
    after_step = run()
    assert not torch.equal(after_step, first)
    assert torch.equal(after_step, _fresh_output(block, x, bf16))
    with torch.no_grad():
        block.gamma1.mul_(2)  # only the scale folded into the output weights
    assert torch.equal(run(), _fresh_output(block, x, bf16))
    block.load_state_dict(_block(16, seed=3).state_dict())
    assert torch.equal(run(), _fresh_output(_block(16, seed=3), x, bf16))
    block.att.key.weight = torch.nn.Parameter(torch.randn_like(block.att.key.weight))
    assert torch.equal(run(), _fresh_output(block, x, bf16))


def test_entropy_parameters_inference_path_matches_the_formula():
    """A stack as the entropy model builds it, against the block's formula in float64."""
    from compressai.layers import sequential_channel_ramp

    from lalic_cli.layers import EntropyParametersBlock

    torch.manual_seed(0)
    stack = sequential_channel_ramp(40, 12, min_ch=16, num_layers=3, make_layer=EntropyParametersBlock,
                                    make_act=torch.nn.Identity, kernel_size=1).eval()
    with torch.no_grad():
        for block in stack[::2]:
            block.norm.weight.uniform_(0.5, 1.5)
            block.norm.bias.uniform_(-0.2, 0.2)
    x = torch.randn(2, 40, 5, 7)

    def plain(block, x):
        y = torch.nn.functional.conv2d(x, block.mix.weight.double(), block.mix.bias.double())
        t = torch.nn.functional.layer_norm(y.permute(0, 2, 3, 1), block.norm.normalized_shape,
                                           block.norm.weight.double(), block.norm.bias.double())
        kv = (t @ block.key.weight.double().t()).clamp_min(0) ** 2 @ block.value.weight.double().t()
        return y + (torch.sigmoid(t @ block.receptance.weight.double().t()) * kv).permute(0, 3, 1, 2)

    ref = x.double()
    for block in stack[::2]:
        ref = plain(block, ref)
    with torch.inference_mode():
        out = stack(x)
    with torch.enable_grad():
        train = stack(x)
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out, train.detach(), rtol=1e-5, atol=1e-5)

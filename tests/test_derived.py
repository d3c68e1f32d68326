"""The caches of the portable path. On disk, the coder tables
(``lalic_cli.portable.table_cache``): a valid entry is used, a corrupted, truncated or
stale one is rebuilt, and the bitstreams stay bit-identical to those of tables built from
scratch. In memory, the portable copies (``lalic_cli.portable.copies``): new weights in
the same model object, loaded or trained, get a new copy."""

from __future__ import annotations

import weakref

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from conftest import ROOT
from lalic_cli.codec import encode_image
from lalic_cli.portable import copies, latent_codec
from lalic_cli.portable import table_cache as derived


def test_tables_live_in_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("LALIC_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert derived.tables_dir() == tmp_path / "lalic" / "tables"


@pytest.fixture
def tables(monkeypatch, tmp_path):
    """The tables cache in a temporary folder (the kernel cache stays where it is), and a
    count of table builds."""
    monkeypatch.setattr(derived, "tables_dir", lambda: tmp_path / "tables")
    builds = []
    real = latent_codec._coder_tables
    monkeypatch.setattr(latent_codec, "_coder_tables", lambda lc: builds.append(1) or real(lc))
    return tmp_path / "tables", builds


def _encode(monkeypatch) -> bytes:
    """Encode with a fresh portable codec (the per-process one forgotten)."""
    monkeypatch.setattr(copies, "_copies", weakref.WeakKeyDictionary())
    img = Image.open(ROOT / "assets" / "sample.png").convert("RGB").crop((40, 30, 136, 94))
    return encode_image(img, 3, device="cpu")


def test_a_valid_entry_is_used_and_a_bad_one_rebuilt(tables, monkeypatch):
    folder, builds = tables
    reference = _encode(monkeypatch)
    [entry] = folder.glob("*.safetensors")
    good = entry.read_bytes()
    assert builds == [1]

    assert _encode(monkeypatch) == reference
    assert builds == [1]  # read from the cache

    damaged = bytearray(good)
    damaged[-1] ^= 0x01  # one bit of a CDF table: the checksum no longer matches
    for bad in (bytes(damaged), good[: len(good) // 2], b"not a safetensors file"):
        entry.write_bytes(bad)
        assert _encode(monkeypatch) == reference
        assert derived._read(entry, entry.stem) is not None  # rewritten, valid
    assert builds == [1, 1, 1, 1]


def test_a_stale_entry_is_never_used(tables, monkeypatch):
    """An entry for other code (its key in the metadata differs), even with a valid
    checksum over tables that would code differently, is rebuilt."""
    folder, builds = tables
    reference = _encode(monkeypatch)
    [entry] = folder.glob("*.safetensors")
    key = entry.stem
    wrong = {name: torch.zeros_like(t) for name, t in load_file(str(entry)).items()}
    save_file(wrong, str(entry), metadata={"key": "0" * 32, "sha256": derived._checksum(wrong)})
    assert _encode(monkeypatch) == reference
    assert builds == [1, 1]
    with safe_open(str(entry), "pt") as f:
        assert f.metadata()["key"] == key


def test_new_weights_in_the_same_model_get_a_new_portable_codec(tables):
    """Load other weights into a model whose portable codec is built: the codec it then
    gets codes as a freshly built model of the new weights does, tables included (the
    loader's fingerprint no longer names the weights, so it is not used)."""
    from lalic_cli.image import prepare
    from lalic_cli.zoo.checkpoint import build_model, fingerprint, load_checkpoint_file
    from lalic_cli.zoo.registry import resolve

    sd = load_checkpoint_file(resolve(None, 3).path)
    model = build_model(sd)
    copies.note_fingerprint(model, fingerprint(model.state_dict()))
    img = Image.open(ROOT / "assets" / "sample.png").convert("RGB").crop((40, 30, 104, 94))
    x = prepare(img).rgb

    def strings(m, lc):
        with torch.inference_mode():
            return m.compress(x, 3, latent_codec=lc)["strings"]

    old_codec = latent_codec.portable_latent_codec(model)
    before = strings(model, old_codec)
    torch.manual_seed(0)
    other = {k: v + 0.05 * v.std() * torch.randn_like(v) if v.is_floating_point() and v.numel() > 1 else v
             for k, v in model.state_dict().items()}
    model.load_state_dict(other)
    assert copies.fingerprint_of(model) is None
    new_codec = latent_codec.portable_latent_codec(model)
    assert new_codec is not old_codec
    fresh = build_model(sd)
    fresh.load_state_dict(other)
    expected = strings(fresh, latent_codec.portable_latent_codec(fresh))
    assert strings(model, new_codec) == expected != before
    model.eval()  # refolds the OmniShift kernels: derived, so the weights are unchanged
    assert latent_codec.portable_latent_codec(model) is new_codec


def test_copies_follow_loads_and_optimizer_steps():
    """A kept copy is rebuilt after a load into the model or into a part of it, and after
    an optimizer step over its parameters; not after a step over other tensors (the
    refined latents of effort 8 and 9), nor after ``eval()``."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    copies.note_fingerprint(model, "f")

    def copy():
        return copies.cached_copy(model, "test", lambda: [p.detach().clone() for p in model.parameters()])

    def follows() -> bool:
        return all(torch.equal(a, b) for a, b in zip(copy(), model.parameters()))

    first = copy()
    assert copy() is first
    latent = torch.zeros(5, requires_grad=True)
    other = torch.optim.SGD([latent], lr=1.0)
    latent.sum().backward()
    other.step()
    model.eval()
    assert copy() is first and copies.fingerprint_of(model) == "f"

    model.load_state_dict({k: v + 1 for k, v in model.state_dict().items()})
    assert copy() is not first and follows() and copies.fingerprint_of(model) is None
    second = copy()
    model[2].load_state_dict({k: v + 1 for k, v in model[2].state_dict().items()})
    assert copy() is not second and follows()
    third = copy()
    opt = torch.optim.SGD(model[0].parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    assert copy() is not third and follows()

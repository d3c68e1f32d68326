"""The on-disk cache of the portable path's coder tables
(``lalic_cli.portable.table_cache``): a valid entry is used, a corrupted, truncated or
stale one is rebuilt, and the bitstreams stay bit-identical to those of tables built from
scratch."""

from __future__ import annotations

import weakref

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from conftest import ROOT
from lalic_cli.codec import encode_image
from lalic_cli.portable import latent_codec
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
    monkeypatch.setattr(latent_codec, "_cache", weakref.WeakKeyDictionary())
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

"""Shared fixtures: the spec folder beside the checkout, tiny official-layout weights, and
small generated photos for the training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SPEC = SHARED / "spec"
KODAK = SHARED / "data" / "kodak"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not available (the shared folder is not beside this checkout)")
    return path


@pytest.fixture(autouse=True, scope="session")
def _float32_transforms():
    """The suite checks the float32 transforms, the reference every CPU runs; bf16 (the
    default where the CPU has it) is checked against them in test_precision.py. Session
    scope: module-scoped fixtures that code images start after it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LALIC_PRECISION", "float32")
        yield


@pytest.fixture(scope="session")
def golden() -> dict:
    return torch.load(need(SPEC / "lalic-tiny-golden.pt"), weights_only=False)


def tiny_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights for the tiny config, in the full official layout (aliases, empty tables)."""
    from lalic_cli.models import LALIC, get_config

    torch.manual_seed(seed)
    model = LALIC(**get_config("tiny").kwargs())
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("decay", "boost")):
                p.uniform_(-3, 3)
            elif "entropy_bottleneck" not in name:
                p.add_(0.05 * torch.randn_like(p))
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture
def weights_dir(tmp_path, monkeypatch) -> Path:
    """An empty LALIC_WEIGHTS folder for this test."""
    d = tmp_path / "weights"
    d.mkdir()
    monkeypatch.setenv("LALIC_WEIGHTS", str(d))
    return d


@pytest.fixture(scope="session")
def _tiny_store(tmp_path_factory) -> tuple[Path, dict[int, Path]]:
    """Official-layout .pth files (tiny config) for qualities 1 and 3, imported once."""
    from lalic_cli.zoo.registry import import_checkpoint

    root = tmp_path_factory.mktemp("tiny")
    store = root / "weights"
    mp = pytest.MonkeyPatch()
    mp.setenv("LALIC_WEIGHTS", str(store))
    paths = {}
    for q in (1, 3):
        p = root / f"lalic-mse-q{q}.pth"
        torch.save(tiny_state_dict(seed=q), p)
        import_checkpoint(p, q)
        paths[q] = p
    mp.undo()
    return store, paths


@pytest.fixture
def tiny_checkpoints(_tiny_store, monkeypatch) -> dict[int, Path]:
    """LALIC_WEIGHTS points at imported tiny-config weights for q1 and q3."""
    store, paths = _tiny_store
    monkeypatch.setenv("LALIC_WEIGHTS", str(store))
    return paths


@pytest.fixture
def sample_png(tmp_path) -> Path:
    """A smooth 96x80 RGB image with some texture."""
    from PIL import Image

    y, x = torch.meshgrid(torch.linspace(0, 1, 80), torch.linspace(0, 1, 96), indexing="ij")
    rgb = torch.stack([x, y, 0.5 + 0.4 * torch.sin(12 * x * y)], -1)
    p = tmp_path / "sample.png"
    Image.fromarray((rgb * 255).round().byte().numpy(), "RGB").save(p)
    return p


def blocky_image(h: int, w: int, seed: int = 0) -> Image.Image:
    """Random colours on a 16-pixel grid, bilinearly smoothed: structure at MRT's patch size."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(1, h // 16), max(1, w // 16), 3)).astype(np.uint8)
    return Image.fromarray(small).resize((w, h), Image.BILINEAR)


@pytest.fixture
def photo_folder(tmp_path) -> Path:
    """Two images a little larger than one 256-pixel MRT window."""
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(2):
        blocky_image(260 + 8 * i, 300, seed=i).save(d / f"im{i}.png")
    return d

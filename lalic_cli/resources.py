"""Where the package's data files are: weights.toml, bundled weights, the sample image."""

from __future__ import annotations

from pathlib import Path


def data_dir() -> Path:
    """``lalic_cli/data`` in an installed wheel; the checkout root in an editable install."""
    installed = Path(__file__).with_name("data")
    if (installed / "weights.toml").is_file():
        return installed
    return Path(__file__).resolve().parents[1]

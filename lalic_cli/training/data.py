"""Training images: every image of a folder held in memory, random crops and flips."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..imagefiles import list_images


class CropDataset:
    """All training images held in memory as uint8; random crops and flips on demand."""

    def __init__(self, folder: str | Path, patch: int):
        self.patch = patch
        self.images = []
        for p in list_images(folder):
            img = Image.open(p).convert("RGB")
            if min(img.size) < patch:
                scale = patch / min(img.size)
                img = img.resize((math.ceil(img.width * scale), math.ceil(img.height * scale)), Image.BICUBIC)
            self.images.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1))

    def batch(self, n: int, gen: torch.Generator) -> torch.Tensor:
        out = []
        for _ in range(n):
            img = self.images[int(torch.randint(len(self.images), (1,), generator=gen))]
            h, w = img.shape[-2:]
            top = int(torch.randint(h - self.patch + 1, (1,), generator=gen))
            left = int(torch.randint(w - self.patch + 1, (1,), generator=gen))
            crop = img[:, top: top + self.patch, left: left + self.patch]
            if torch.rand((), generator=gen) < 0.5:
                crop = crop.flip(-1)
            if torch.rand((), generator=gen) < 0.5:
                crop = crop.flip(-2)
            out.append(crop)
        return torch.stack(out).float().div_(255.0)

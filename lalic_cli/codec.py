"""Image <-> ``.lal`` bytes: the library entry points behind ``lalic encode/decode``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from .errors import DecodeError, InputError, QualityError
from .bitstream import FORMAT_VERSION, WRITE_VERSIONS, Header, LalFile, arithmetic_of, pack, unpack
from .families import DEFAULT_FAMILY, get_family, refines, refining_labels
from .image import PreparedImage, open_image, prepare, restore
from .memory import check_fits
from .effort import DEFAULT_EFFORT, steps_for
from .refine import OnStep, check_refinement_fits, rd_lambda, refine
from .zoo.registry import WeightsError, WeightsEntry, find_for_decoding, load_model, resolve

DEFAULT_MAX_PIXELS = 40_000_000


def pick_device(device: str = "auto") -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA GPU is available")
    if device not in ("cpu", "cuda"):
        raise InputError(f"unknown device {device!r} (auto, cpu or cuda)")
    return device


def pad_to(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Pad symmetrically to a multiple (as the authors' evaluation does), edge-replicated.

    Replicated at every size: zero padding around a 1-pixel-thin image left the model
    almost nothing but black to code, and the decoded pixels came back tens of levels off."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if ph or pw:
        x = F.pad(x, pad, mode="replicate")
    return x, pad


@dataclass
class Encoded:
    data: bytes
    header: Header
    entry: WeightsEntry
    notes: tuple[str, ...] = ()

    @property
    def bpp(self) -> float:
        return 8 * len(self.data) / (self.header.height * self.header.width)


def _check_symbols(crc: int, h: Header, dev: str) -> None:
    if crc == h.symbols_crc:
        return
    if h.entropy == "exact":
        raise DecodeError("decoded latent does not match the encoder's (symbol CRC mismatch): the file is corrupted")
    raise DecodeError(
        f"decoded latent does not match the encoder's (symbol CRC mismatch): the file was encoded "
        f"on {h.device_class} with the float entropy path and this decoder ({dev}) computed different "
        f"entropy parameters"
    )


def encode_prepared(
    img: PreparedImage, quality: float, *, weights: str | None = None, device: str = "auto",
    max_pixels: int | None = DEFAULT_MAX_PIXELS, entropy: str = "exact", codec: str = DEFAULT_FAMILY,
    effort: int = DEFAULT_EFFORT, on_step: OnStep | None = None, version: int = FORMAT_VERSION,
) -> Encoded:
    """``on_step(step, steps)`` reports the refinement of efforts above the default;
    ``version`` is the ``.lal`` format version to write (see :func:`encode_image`)."""
    if version not in WRITE_VERSIONS:
        raise InputError(f"format version {version}: this lalic writes {', '.join(map(str, WRITE_VERSIONS))}")
    arithmetic = arithmetic_of(version)
    steps = steps_for(effort)
    if steps and not refines(codec):
        raise InputError(f"effort {effort} refines {refining_labels()} latents; the {codec} codec has efforts "
                         f"up to {DEFAULT_EFFORT}")
    if max_pixels is not None and img.height * img.width > max_pixels:
        raise InputError(
            f"image is {img.width}x{img.height} = {img.height * img.width} pixels, over the limit of "
            f"{max_pixels} (raise it with --max-pixels)"
        )
    family = get_family(codec)
    quality = family.parse_quality(quality)
    dev = pick_device(device)
    entry = resolve(weights, quality, codec)
    model, short_hash = load_model(entry, dev)
    if quality > model.max_quality:  # the model itself would clamp it and code another quality
        raise QualityError(f"quality {quality:g} is outside 1 .. {model.max_quality}, the qualities "
                           f"{entry.name} codes")
    check_fits(model, img.height, img.width, dev)
    x, pad = pad_to(img.rgb.to(dev), model.downsampling_factor)
    if steps:
        lmbda = rd_lambda(model, quality, entry.lmbda)
        check_refinement_fits(model, x.shape[-2] * x.shape[-1], x.device.type)
        coded = family.coder.compress_refined(model, entropy, arithmetic,
                                              lambda: refine(model, x, quality, lmbda, steps, pad, on_step))
    else:
        with torch.inference_mode():
            coded = family.coder.compress(model, x, quality, entropy, arithmetic)
    extras = {}
    if img.alpha is not None:
        extras["alpha"] = img.alpha
    if img.icc:
        extras["icc"] = img.icc
    header = Header(
        weights_name=entry.name,
        weights_hash=bytes.fromhex(short_hash),
        quality=float(quality),
        height=img.height,
        width=img.width,
        mode=img.mode,
        bit_depth=img.bit_depth,
        pad=pad,
        z_shape=coded.grid,
        num_groups=coded.num_groups,
        device_class=dev,
        symbols_crc=coded.symbols_crc,
        entropy=entropy,
        family=family.key,
        version=version,
    )
    data = pack(LalFile(header, coded.y_strings, coded.z_string, extras))
    return Encoded(data, header, entry, img.notes)


def encode_image(
    image: Image.Image | str | Path, quality: float, *, weights: str | None = None, device: str = "auto",
    max_pixels: int | None = DEFAULT_MAX_PIXELS, entropy: str = "exact", codec: str = DEFAULT_FAMILY,
    effort: int = DEFAULT_EFFORT, version: int = FORMAT_VERSION,
) -> bytes:
    """Encode an image (PIL image or path) to ``.lal`` bytes.

    ``entropy="exact"`` (the default, the portable path) writes a file that decodes on any machine;
    ``"float"`` uses the reference model's float entropy path, as the official
    bitstreams do, which decodes only on the encoder's device class.
    ``codec`` names the model family (``lalic_cli.families``): MRT codes extreme rates
    (qualities 1..3).
    ``effort`` 1 .. 9 (default 7, today's encoder): 8 and 9 refine the latents of the
    image first, slower and smaller; any decoder reads the result.
    ``version`` 4 (the default) or 3: the ``.lal`` format version, 3 for decoders from
    before version 4, whose exact entropy path computes in arithmetic 1 (twice as slow)."""
    img = image if isinstance(image, Image.Image) else open_image(image)
    return encode_prepared(prepare(img), quality, weights=weights, device=device, max_pixels=max_pixels,
                           entropy=entropy, codec=codec, effort=effort, version=version).data


@dataclass
class Decoded:
    image: Image.Image
    header: Header


def decode(
    data: bytes, *, weights: str | None = None, device: str = "auto", max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> Decoded:
    """Decode ``.lal`` bytes of any family (the header says which)."""
    lal = unpack(data, max_pixels=max_pixels)
    h = lal.header
    dev = pick_device(device)
    entry = find_for_decoding(h.weights_name, weights)
    model, short_hash = load_model(entry, dev)
    if bytes.fromhex(short_hash) != h.weights_hash:
        raise WeightsError(
            f"this file was encoded with weights {h.weights_name} [{h.weights_hash.hex()}], but the "
            f"weights found ({entry.path}) are [{short_hash}]: decoding would give garbage"
        )
    if entry.family != h.family:
        raise WeightsError(f"this is an {h.family} file and {entry.path} holds {entry.family} weights")
    check_fits(model, h.height, h.width, dev)
    with torch.inference_mode():
        x_hat, crc = get_family(h.family).coder.decompress(model, lal)
    _check_symbols(crc, h, dev)
    left, right, top, bottom = h.pad
    x_hat = x_hat[..., top: top + h.height, left: left + h.width]
    img = restore(x_hat, h.mode, lal.extras.get("alpha"))
    if "icc" in lal.extras:
        img.info["icc_profile"] = lal.extras["icc"]
    return Decoded(img, h)


def decode_bytes(data: bytes, **kwargs) -> Image.Image:
    """Decode ``.lal`` bytes to a PIL image in the original colour mode."""
    return decode(data, **kwargs).image


def decode_file(path: str | Path, **kwargs) -> Image.Image:
    """Decode a ``.lal`` file to a PIL image."""
    return decode_bytes(Path(path).read_bytes(), **kwargs)

"""Model families are plug-ins: a third family, registered here and nowhere else, is coded
by the codec, framed and checked by the container, shown by ``lalic info`` and has its
qualities parsed by the command lines; family names are written once, in each family's
module; and the registry sits below the codec, without torch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from lalic_cli import codec
from lalic_cli.bench.command import parse_qualities
from lalic_cli.bitstream import FAMILY_CODES, LATENT_STRIDES, Header, LalFile, pack, unpack
from lalic_cli.cli import main
from lalic_cli.errors import QualityError
from lalic_cli.families import FAMILIES, Coded, Container, Family, register_family, tensor_crc
from lalic_cli.zoo.registry import WeightsEntry

ROOT = Path(__file__).resolve().parents[1]
STRIDE = 8

DUMMY = Family(
    key="dummy", label="Dummy", qualities=(1.0, 2.0), whole_qualities=True, anchors=False,
    container=Container(code=9, stride=STRIDE, entropy="exact", z_string=False, fields=("cells", "planes")),
    coder_module="dummy_family_coder",
)


def _compress(model, x: torch.Tensor, quality: float, entropy: str, arithmetic: int) -> Coded:
    """8-bit pixels as the one group's first string, the quality as its second."""
    q = (x * 255).round().to(torch.uint8)
    h, w = x.shape[-2:]
    return Coded([q.numpy().tobytes(), bytes([int(quality)])], b"", (h // STRIDE, w // STRIDE), 1, tensor_crc(q))


def _decompress(model, lal: LalFile) -> tuple[torch.Tensor, int]:
    rows, cols = lal.header.z_shape
    q = torch.frombuffer(bytearray(lal.y_strings[0]), dtype=torch.uint8).reshape(1, 3, rows * STRIDE, cols * STRIDE)
    return q.float() / 255, tensor_crc(q)


class _Model(torch.nn.Module):
    downsampling_factor = STRIDE
    max_quality = 2
    peak_floats_per_pixel = 1.0


@pytest.fixture
def dummy(monkeypatch) -> Family:
    """The dummy family registered, its coder importable, and weights for it found."""
    monkeypatch.setitem(sys.modules, DUMMY.coder_module,
                        types.SimpleNamespace(compress=_compress, decompress=_decompress))
    monkeypatch.setitem(FAMILIES, DUMMY.key, DUMMY)  # the one registry every layer reads
    entry = WeightsEntry(name="dummy-weights", kind="file", config="?", family=DUMMY.key)
    monkeypatch.setattr(codec, "resolve", lambda weights, quality, family: entry)
    monkeypatch.setattr(codec, "find_for_decoding", lambda name, spec: entry)
    monkeypatch.setattr(codec, "load_model", lambda entry, device: (_Model(), "00" * 8))
    return DUMMY


@pytest.fixture
def image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (21, 30, 3), dtype=np.uint8), "RGB")


def test_the_codec_codes_a_registered_family(dummy, image):
    data = codec.encode_image(image, 2, codec=dummy.key, device="cpu")
    lal = unpack(data)
    assert lal.header.family == dummy.key and lal.header.z_shape == (3, 4) and lal.y_strings[1] == bytes([2])
    assert FAMILY_CODES[dummy.key] == 9 and LATENT_STRIDES[dummy.key] == STRIDE
    assert np.array_equal(np.asarray(codec.decode_bytes(data, device="cpu")), np.asarray(image))
    with pytest.raises(QualityError, match="Dummy qualities are whole numbers"):
        codec.encode_image(image, 1.5, codec=dummy.key)


def test_the_container_checks_a_family_by_its_rules(dummy):
    header = Header(weights_name="dummy-weights", weights_hash=bytes(8), quality=1.0, height=16, width=24,
                    mode="RGB", bit_depth=8, pad=(0, 0, 0, 0), z_shape=(2, 3), num_groups=1,
                    entropy="exact", family=dummy.key)
    data = pack(LalFile(header, [b"a", b"b"], b""))
    # the family byte: after the name, the hash, 3 one-byte varints (quality, height, width) and 4 codes
    assert data[data.index(b"dummy-weights") + len(b"dummy-weights") + 8 + 3 + 4] == 9
    assert unpack(data).header == header
    with pytest.raises(ValueError, match="^cannot write .lal header: Dummy files use the exact entropy path"):
        pack(LalFile(Header(**{**vars(header), "entropy": "float"}), [b"a", b"b"], b""))
    with pytest.raises(ValueError, match="^Dummy files carry no z string$"):
        pack(LalFile(header, [b"a", b"b"], b"z"))
    with pytest.raises(ValueError, match="padded size must be 8\\*z_shape for dummy"):
        pack(LalFile(Header(**{**vars(header), "z_shape": (1, 3)}), [b"a", b"b"], b""))


def test_the_command_lines_read_a_registered_family(dummy, image, tmp_path, monkeypatch):
    assert parse_qualities(("2,1",), dummy.key) == (1.0, 2.0)
    with pytest.raises(QualityError, match="outside 1 .. 2"):
        parse_qualities(("3",), dummy.key)
    # --codec lists the families registered when the command line was imported
    (codec_option,) = [p for p in main.commands["encode"].params if p.name == "codec"]
    monkeypatch.setattr(codec_option.type, "choices", tuple(FAMILIES))
    src, lal = tmp_path / "in.png", tmp_path / "in.lal"
    image.save(src)
    r = CliRunner().invoke(main, ["encode", str(src), "--codec", dummy.key, "-q", "1.5", "-o", str(lal)])
    assert r.exit_code == 2 and "Dummy qualities are whole numbers" in r.output
    r = CliRunner().invoke(main, ["encode", str(src), "--codec", dummy.key, "-q", "1", "-o", str(lal)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["info", str(lal), "--json"])
    fields = json.loads(r.output)
    assert fields["family"] == dummy.key and fields["cells"] == [3, 4] and fields["planes"] == 1


def test_registration_refuses_a_taken_key_or_code():
    with pytest.raises(ValueError, match="registered already"):
        register_family(FAMILIES[next(iter(FAMILIES))])
    with pytest.raises(ValueError, match="container code 0 is"):
        register_family(Family(**{**vars(DUMMY), "container": Container(code=0, stride=STRIDE)}))
    assert DUMMY.key not in FAMILIES


def test_family_names_are_written_in_their_own_modules_only():
    """The names appear as string literals in each family's module and in resources.py, where
    the distribution's name (its cache folder) happens to be LALIC's."""
    literal = re.compile(r"[\"'](lalic|mrt)[\"']")
    package = ROOT / "lalic_cli"
    found = {p.relative_to(package).as_posix() for p in package.rglob("*.py") if literal.search(p.read_text())}
    assert found == {"families/lalic.py", "families/mrt.py", "resources.py"}


def test_the_registry_and_the_container_import_nothing_above_them(tmp_path):
    code = ("import json, sys; import lalic_cli.bitstream, lalic_cli.families; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'PIL') "
            "or m.startswith(('lalic_cli.codec', 'lalic_cli.cli', 'lalic_cli.bench', 'lalic_cli.zoo', "
            "'lalic_cli.models', 'lalic_cli.training')))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert json.loads(proc.stdout) == []

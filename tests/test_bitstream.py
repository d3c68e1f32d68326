"""Tests for the .lal container (lalic_cli/bitstream.py, docs/bitstream.md).

Pure Python and fast: no torch, no model.  The hand-written builder below
follows docs/bitstream.md independently of the module, so the byte layout
cannot drift without a test failing.
"""

import dataclasses
import os
import random
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lalic_cli.bitstream import (
    FAMILY_CODES,
    FORMAT_VERSION,
    LATENT_STRIDE,
    LATENT_STRIDES,
    MAGIC,
    READ_VERSIONS,
    WRITE_VERSIONS,
    BitstreamError,
    Header,
    LalFile,
    pack,
    read_header,
    size_breakdown,
    unpack,
)


# --- an independent writer, straight from docs/bitstream.md ----------------

def leb128(n: int) -> bytes:
    out = []
    while True:
        out.append(n % 128)
        n //= 128
        if n == 0:
            break
    return bytes([b + 128 for b in out[:-1]] + [out[-1]])


def u32be(n: int) -> bytes:
    return struct.pack(">I", n)


def _f(v):
    """A field given as int is varint-encoded; bytes are used verbatim."""
    return v if isinstance(v, bytes) else leb128(v)


def build(*, magic=MAGIC, version=4, name=b"t", whash=bytes(range(8)),
          quality=250, height=60, width=100, mode=3, depth=8, device=0, entropy=0, family=0,
          pad=(10, 18, 1, 3), z=(1, 2), groups=1, sym=0xDEADBEEF,
          y=(b"ab", b"cde"), y_count=None, zs=b"Z",
          extras=((b"icc", b"\x01\x02"),), extras_count=None,
          body_length=None, tail=b""):
    body = _f(len(y) if y_count is None else y_count)
    for s in y:
        body += leb128(len(s)) + s
    body += leb128(len(zs)) + zs
    body += _f(len(extras) if extras_count is None else extras_count)
    for tag, data in extras:
        body += leb128(len(tag)) + tag + leb128(len(data)) + data
    head = magic + bytes([version]) + leb128(len(name)) + name + whash
    head += _f(quality) + _f(height) + _f(width) + bytes([mode, depth, device])
    head += bytes([entropy]) if version >= 2 else b""
    head += bytes([family]) if version >= 3 else b""
    head += b"".join(_f(p) for p in pad) + _f(z[0]) + _f(z[1]) + _f(groups)
    head += u32be(sym)
    head += _f(len(body) + 4 if body_length is None else body_length)
    head += u32be(zlib.crc32(head))
    out = head + body
    return out + u32be(zlib.crc32(out)) + tail


TINY = LalFile(
    Header(weights_name="t", weights_hash=bytes(range(8)), quality=2.5,
           height=60, width=100, mode="RGB", bit_depth=8, pad=(10, 18, 1, 3),
           z_shape=(1, 2), num_groups=1, device_class="cpu",
           symbols_crc=0xDEADBEEF),
    [b"ab", b"cde"], b"Z", {"icc": b"\x01\x02"})

# The same 100x60 image as an MRT file: one 256x256 window, 2 bit groups (4 y strings),
# exact entropy path, no z string.
MRT_BUILD = dict(entropy=1, family=1, pad=(0, 156, 0, 196), z=(1, 1), groups=2,
                 y=(b"ab", b"cde", b"f", b""), zs=b"")
TINY_MRT = LalFile(
    dataclasses.replace(TINY.header, pad=(0, 156, 0, 196), z_shape=(1, 1), num_groups=2,
                        entropy="exact", family="mrt"),
    [b"ab", b"cde", b"f", b""], b"", {"icc": b"\x01\x02"})


def kodak_file(seed=0, extras=None):
    """768x512 RGB, padded size already a multiple of 64 -> z 8x12, G=5."""
    rng = random.Random(seed)
    header = Header(
        weights_name="lalic-mse-q3", weights_hash=rng.randbytes(8), quality=3.0,
        height=512, width=768, mode="RGB", bit_depth=8, pad=(0, 0, 0, 0),
        z_shape=(8, 12), num_groups=5, device_class="cpu",
        symbols_crc=rng.getrandbits(32))
    # ~0.4 bpp: y strings shrink over the groups, z string ~200 bytes
    lens = [3200, 2400, 2100, 1500, 1300, 900, 800, 500, 400, 250]
    ys = [rng.randbytes(n) for n in lens]
    return LalFile(header, ys, rng.randbytes(190), dict(extras or {}))


def mrt_file(seed=0, extras=None):
    """The same 768x512 RGB image as an MRT file: 2x3 windows of 256, 3 bit groups."""
    rng = random.Random(seed)
    header = dataclasses.replace(
        kodak_file(seed).header, weights_name="mrt-small", quality=2.0, z_shape=(2, 3),
        num_groups=3, entropy="exact", family="mrt")
    ys = [rng.randbytes(n) for n in (70, 64, 60, 55, 40, 33)]    # <= 6 windows x 64 tokens x 8 bits
    return LalFile(header, ys, b"", dict(extras or {}))


KODAK = kodak_file()
KODAK_BYTES = pack(KODAK)
KODAK_HEADER_END = size_breakdown(KODAK)["header"]
MRT = mrt_file()
MRT_BYTES = pack(MRT)
MRT_HEADER_END = size_breakdown(MRT)["header"]
# the damage tests run on one container of each family
FAMILY_FILES = pytest.mark.parametrize("kind", ["lalic", "mrt"])
_FILE_MAKERS = {"lalic": kodak_file, "mrt": mrt_file}
_BYTES_AND_HEADER_END = {"lalic": (KODAK_BYTES, KODAK_HEADER_END),
                         "mrt": (MRT_BYTES, MRT_HEADER_END)}


def err(data, **kw) -> str:
    with pytest.raises(BitstreamError) as ei:
        unpack(data, **kw)
    msg = str(ei.value)
    assert "\n" not in msg and "internal parser error" not in msg, msg
    return msg


# --- round trips and sizes --------------------------------------------------

# the reference files of both families share the fields up to mode/bit_depth/device_class
_REF_START = (
    "4c414c89" "04"            # magic, version
    "0174"                     # weights_name "t"
    "0001020304050607"         # weights_hash
    "fa01"                     # quality 2.5 -> 250
    "3c" "64"                  # height 60, width 100
    "03" "08" "00")            # RGB, 8 bit, cpu


@pytest.mark.parametrize("f, build_kw, head_rest, body", [
    (TINY, {},
     "00" "00"                 # float entropy path, family lalic
     "0a120103"                # pad l=10 r=18 t=1 b=3
     "0102"                    # z 1x2
     "01"                      # num_groups
     "deadbeef"                # symbols_crc
     "16",                     # body_length = 22
     "02" "026162" "03636465"  # 2 y strings
     "015a"                    # z string
     "01" "03696363" "020102"),  # extras: icc
    (TINY_MRT, MRT_BUILD,
     "01" "01"                 # exact entropy path, family mrt
     "00" "9c01" "00" "c401"   # pad l=0 r=156 t=0 b=196: 100x60 -> 256x256
     "0101"                    # grid: 1x1 window of 256
     "02"                      # num_groups: 2 bit groups
     "deadbeef"                # symbols_crc
     "18",                     # body_length = 24
     "04" "026162" "03636465" "0166" "00"  # 4 y strings (2 passes x 2 groups)
     "00"                      # empty z string
     "01" "03696363" "020102"),  # extras: icc
], ids=["lalic", "mrt"])
def test_reference_bytes(f, build_kw, head_rest, body):
    expected = bytes.fromhex(_REF_START + head_rest)
    expected += u32be(zlib.crc32(expected))
    expected += bytes.fromhex(body)
    expected += u32be(zlib.crc32(expected))
    assert pack(f) == expected
    assert build(**build_kw) == expected
    assert unpack(expected) == f
    assert read_header(expected) == f.header
    assert read_header(expected, complete=False) == f.header


def test_default_family_is_lalic():
    assert TINY.header.family == "lalic" and TINY_MRT.header.family == "mrt"


def test_family_codes():
    assert FAMILY_CODES == {"lalic": 0, "mrt": 1}
    assert LATENT_STRIDES == {"lalic": 64, "mrt": 256} and LATENT_STRIDE == 64
    assert FORMAT_VERSION == 4 and READ_VERSIONS == (1, 2, 3, 4) and WRITE_VERSIONS == (3, 4)


def at(f: LalFile, version: int) -> LalFile:
    return dataclasses.replace(f, header=dataclasses.replace(f.header, version=version))


def test_version_1_files_still_read():
    """Version 1 had no entropy byte: such files decode with the float entropy path."""
    v1 = build(version=1)
    assert unpack(v1) == at(TINY, 1)
    assert read_header(v1).entropy == "float"
    assert read_header(v1).family == "lalic"


def test_version_2_files_still_read():
    """Version 2 had no family byte: such files are LALIC files."""
    v2 = build(version=2)
    assert len(v2) == len(build()) - 1
    assert v2[4] == 2 and v2[:4] == MAGIC
    assert unpack(v2) == at(TINY, 2)
    assert read_header(v2).family == "lalic"
    assert read_header(v2[:len(v2) - 22], complete=False) == at(TINY, 2).header   # header only
    v2_exact = build(version=2, entropy=1)
    assert unpack(v2_exact).header == dataclasses.replace(TINY.header, entropy="exact", version=2)
    # rewriting a version-2 file gives version 3 (what 2 means) with family byte 0
    assert pack(unpack(v2)) == build(version=3)


def test_versions_3_and_4_share_the_layout_and_differ_in_arithmetic():
    """Version 4 changed only how the exact entropy path computes (arithmetic 2 of
    docs/portable.md); version 3 files keep arithmetic 1, and pack writes either."""
    for f in (TINY, TINY_MRT):
        v3, v4 = pack(at(f, 3)), pack(f)
        assert v3[4] == 3 and v4[4] == 4 and len(v3) == len(v4)
        assert unpack(v3) == at(f, 3) and unpack(v4) == f
    assert pack(at(TINY, 3)) == build(version=3)
    assert [at(TINY, v).header.arithmetic for v in READ_VERSIONS] == [1, 1, 1, 2]
    for bad in (0, 5, True):
        with pytest.raises(ValueError, match="not a version this lalic knows") as ei:
            pack(at(TINY, bad))
        assert not isinstance(ei.value, BitstreamError)


def test_mrt_round_trips():
    for f in (TINY_MRT, MRT, mrt_file(9, extras={"alpha": b"\x00" * 40, "icc": b"p"})):
        data = pack(f)
        assert data[4] == 4
        g = unpack(data)
        assert g == f and g.header.family == "mrt" and g.z_string == b""
        assert read_header(data) == f.header


def test_unknown_family_code():
    for code in (2, 255):
        assert err(build(family=code)) == f"invalid .lal header: unknown model family code {code}"
    with pytest.raises(BitstreamError, match="^invalid .lal header: unknown model family code 2$"):
        read_header(build(family=2), complete=False)


def test_mrt_float_entropy_rejected():
    msg = err(build(**{**MRT_BUILD, "entropy": 0}))
    assert msg == "invalid .lal header: MRT files use the exact entropy path, not 'float'"
    with pytest.raises(ValueError, match="exact entropy path") as ei:
        pack(LalFile(dataclasses.replace(TINY_MRT.header, entropy="float"),
                     TINY_MRT.y_strings, b"", {}))
    assert not isinstance(ei.value, BitstreamError)


def test_mrt_z_string_rejected():
    assert err(build(**{**MRT_BUILD, "zs": b"Z"})) == "invalid .lal file: MRT files carry no z string"
    # the header alone does not show it: only the complete read looks at the body
    data = build(**{**MRT_BUILD, "zs": b"Z"})
    assert read_header(data, complete=False) == TINY_MRT.header
    with pytest.raises(ValueError, match="^MRT files carry no z string$") as ei:
        pack(dataclasses.replace(TINY_MRT, z_string=b"Z"))
    assert not isinstance(ei.value, BitstreamError)
    # a LALIC file may carry one, and an empty one
    assert unpack(build(zs=b"")).z_string == b""


def test_grid_stride_depends_on_family():
    # the LALIC geometry (100x60 padded to 128x64, grid 1x2) is not an MRT geometry
    msg = err(build(**{**MRT_BUILD, "pad": (10, 18, 1, 3), "z": (1, 2)}))
    assert msg.startswith("invalid .lal header: z_shape 1x2 inconsistent") and "256*z_shape for mrt" in msg
    # and the MRT geometry (padded to 256x256, grid 1x1) is not a LALIC one
    msg = err(build(pad=(0, 156, 0, 196), z=(1, 1)))
    assert msg.startswith("invalid .lal header: z_shape 1x1 inconsistent") and "64*z_shape for lalic" in msg
    # a 64-pixel grid step is not enough for MRT: 100x60 in a 1x2 grid of 256 needs 512 wide
    f = TINY_MRT.header
    assert unpack(build(**{**MRT_BUILD, "pad": (0, 412, 0, 196), "z": (1, 2)})).header == \
        dataclasses.replace(f, pad=(0, 412, 0, 196), z_shape=(1, 2))
    assert "inconsistent" in err(build(**{**MRT_BUILD, "pad": (0, 156 + 64, 0, 196), "z": (1, 2)}))
    # the grid limit is MAX_PADDED_DIM / stride: 8192 rows of 256 = 2**21 pixels
    tall = dict(MRT_BUILD, height=2**20, pad=(0, 156, 0, 2**20), z=(8192, 1))
    assert unpack(build(**tall)).header.z_shape == (8192, 1)
    assert err(build(**{**tall, "z": (8193, 1)})) == "invalid .lal header: z_shape 8193x1 out of range"
    # for LALIC 8193 rows (of 64) are within the limit: only the geometry is wrong
    assert "inconsistent" in err(build(height=2**20, z=(8193, 2)))
    # pack applies the same rules
    with pytest.raises(ValueError, match="256\\*z_shape for mrt"):
        pack(LalFile(dataclasses.replace(f, z_shape=(1, 2)), TINY_MRT.y_strings, b"", {}))


def test_entropy_path_round_trip_and_unknown_code():
    f = LalFile(dataclasses.replace(TINY.header, entropy="exact"), TINY.y_strings, TINY.z_string, TINY.extras)
    data = pack(f)
    assert data == build(entropy=1)
    assert unpack(data).header.entropy == "exact"
    assert err(build(entropy=7)) == "invalid .lal header: unknown entropy path code 7"


def test_kodak_round_trip_and_header_size():
    assert unpack(KODAK_BYTES) == KODAK
    assert read_header(KODAK_BYTES) == KODAK.header
    sizes = size_breakdown(KODAK)
    assert sizes["total"] == len(KODAK_BYTES)
    # the numbers docs/bitstream.md gives for a 768x512 Kodak image, G=5
    assert (sizes["header"], sizes["overhead"]) == (54, 82)


def test_round_trip_variants():
    for mode, depth, dev, q in [("L", 16, "cuda", 3.5), ("LA", 8, "cpu", 0.01),
                                ("RGBA", 16, "cpu", 100), ("RGB", 8, "cuda", 3.33)]:
        f = kodak_file(1, extras={"alpha": b"\x00" * 40, "icc": b"icc-profile",
                                  "x-future.tag_1": b""})
        f.header.mode, f.header.bit_depth = mode, depth
        f.header.device_class, f.header.quality = dev, q
        f.header.height, f.header.width = 500, 700          # padded to 512x768
        f.header.pad = (30, 38, 5, 7)
        f.header.weights_name = "lalic-lite-vr-ü"
        g = unpack(pack(f))
        assert g == f and g.header.quality == q


def test_unknown_extras_preserved_and_order_independent():
    a = kodak_file(2, extras={"zzz": b"1", "alpha": b"2", "new.thing": b"\xff"})
    b = kodak_file(2, extras={"new.thing": b"\xff", "alpha": b"2", "zzz": b"1"})
    assert pack(a) == pack(b)                     # tags are written sorted
    assert unpack(pack(a)).extras == a.extras


def test_accepts_bytearray_and_memoryview():
    assert unpack(bytearray(KODAK_BYTES)) == KODAK
    assert unpack(memoryview(KODAK_BYTES)) == KODAK


# --- damage -----------------------------------------------------------------

@FAMILY_FILES
def test_truncation_at_every_offset(kind):
    data = pack(_FILE_MAKERS[kind](3, extras={"alpha": b"a" * 100}))
    for k in range(len(data)):
        assert err(data[:k]).startswith("truncated .lal file"), k


@FAMILY_FILES
def test_header_byte_flips(kind):
    data, header_end = _BYTES_AND_HEADER_END[kind]
    for i in range(header_end):
        for mask in (0x01, 0x40, 0x80, 0xFF):
            b = bytearray(data)
            b[i] ^= mask
            msg = err(bytes(b))
            if i < 4:
                assert msg == "not a .lal file (bad magic)"
            elif i == 4 and b[4] in READ_VERSIONS:   # 4 -> 3: the header CRC covers the version
                assert msg == "corrupted .lal file (header CRC mismatch)", (mask, msg)
            elif i == 4:
                assert msg.startswith("unsupported .lal format version")
            else:
                assert msg.startswith("corrupted .lal file"), (i, mask, msg)


@FAMILY_FILES
def test_payload_byte_flips(kind):
    data, header_end = _BYTES_AND_HEADER_END[kind]
    rng = random.Random(4)
    offsets = rng.sample(range(header_end, len(data)), 200)
    for i in offsets + [len(data) - 1]:
        b = bytearray(data)
        b[i] ^= rng.randrange(1, 256)
        assert err(bytes(b)) == "corrupted .lal file (CRC mismatch)", i


@FAMILY_FILES
def test_random_mutation_loop(kind):
    rng = random.Random(5)
    small = pack(_FILE_MAKERS[kind](6, extras={"alpha": b"x" * 30}))
    for _ in range(3000):
        b = bytearray(small)
        for _ in range(rng.randrange(1, 4)):
            op = rng.randrange(3)
            i = rng.randrange(len(b) + 1)
            if op == 0 and i < len(b):
                b[i] = rng.randrange(256)
            elif op == 1:
                b[i:i] = rng.randbytes(rng.randrange(1, 12))
            else:
                del b[i:i + rng.randrange(1, 12)]
        if bytes(b) != small:
            err(bytes(b))


# --- specific errors --------------------------------------------------------

def test_wrong_magic():
    assert err(b"PNG\x89" + KODAK_BYTES[4:]) == "not a .lal file (bad magic)"
    assert err(b"\x89PNG\r\n\x1a\n") == "not a .lal file (bad magic)"
    assert err(b"LX") == "not a .lal file (bad magic)"
    assert err(b"LA").startswith("truncated")
    assert err(b"").startswith("truncated")


def test_future_version_reported_before_crc():
    data = build(version=5)        # CRCs are correct for the version-5 bytes
    assert err(data) == "unsupported .lal format version 5 (this lalic reads versions 1, 2, 3, 4)"
    b = bytearray(KODAK_BYTES)     # and with a now-wrong CRC: still version
    b[4] = 7
    assert err(bytes(b)).startswith("unsupported .lal format version 7")
    assert err(MAGIC + b"\x00").startswith("unsupported .lal format version 0")


def test_trailing_bytes():
    msg = err(KODAK_BYTES + b"\x00")
    assert msg.startswith("trailing data: 1 unexpected bytes"), msg
    assert err(build(tail=b"junk")).startswith("trailing data: 4")


def test_oversized_varint():
    msg = err(build(height=b"\x80" * 10 + b"\x01"))
    assert msg.startswith("corrupted .lal file (malformed header")
    assert "longer than 10 bytes" in msg
    msg = err(build(height=b"\xff" * 9 + b"\x02"))            # >= 2**64
    assert "exceeds 2**64-1" in msg
    assert "non-minimal" in err(build(height=b"\xbc\x00"))    # 60, padded


def test_declared_length_larger_than_file():
    # the header says the body is longer than what is there
    data = build(body_length=10_000)
    header_end = len(data) - 22                       # the real body is 22 bytes
    assert err(data) == f"truncated .lal file ({len(data)} of {header_end + 10_000} bytes)"
    # a string length inside the body runs past the end (CRCs are valid)
    data = build(y=(b"ab", b"cde"), zs=b"Z")
    i = data.index(bytes.fromhex("026162"))          # first y string
    b = bytearray(data)
    b[i] = 0x7F
    b[-4:] = u32be(zlib.crc32(bytes(b[:-4])))
    msg = err(bytes(b))
    assert msg.startswith("invalid .lal file: y string 0") and "declares 127 bytes" in msg


def test_max_pixels():
    assert unpack(KODAK_BYTES, max_pixels=768 * 512) == KODAK
    msg = err(KODAK_BYTES, max_pixels=768 * 512 - 1)
    assert msg == ("refusing .lal file: image is 768x512 = 393216 pixels, "
                   "more than max_pixels=393215")
    with pytest.raises(BitstreamError, match="max_pixels=1000"):
        read_header(KODAK_BYTES[:KODAK_HEADER_END], complete=False, max_pixels=1000)


@pytest.mark.parametrize("kw, fragment", [
    (dict(height=0), "image size 100x0"),
    (dict(width=2**20 + 1), "image size"),
    (dict(mode=5), "unknown colour mode code 5"),
    (dict(depth=12), "unsupported bit depth 12"),
    (dict(device=2), "unknown device class code 2"),
    (dict(family=7), "unknown model family code 7"),
    (dict(quality=0), "quality 0 outside"),
    (dict(quality=10_001), "quality 100.01 outside"),
    (dict(name=b"\xff\xfe"), "not valid UTF-8"),
    (dict(groups=0, y=()), "num_groups 0"),
    (dict(groups=65, y=(b"",) * 130), "num_groups 65"),
    (dict(z=(1, 3)), "inconsistent"),
    (dict(pad=(10, 18, 1, 4)), "inconsistent"),
    (dict(body_length=3), "body_length 3"),
])
def test_invalid_header_values(kw, fragment):
    msg = err(build(**kw))
    assert msg.startswith("invalid .lal header: ") and fragment in msg, msg


@pytest.mark.parametrize("kw, fragment", [
    (dict(y_count=3), "3 y strings, expected 2*num_groups = 2"),
    (dict(extras_count=17, extras=()), "17 extras (limit 16)"),
    (dict(extras=((b"a", b""), (b"a", b""))), "duplicate extra tag 'a'"),
    (dict(extras=((b"bad tag", b""),)), "invalid tag"),
    (dict(extras=((b"", b""),)), "invalid tag"),
    (dict(extras=((b"t" * 33, b""),)), "limit 32"),
])
def test_invalid_body(kw, fragment):
    msg = err(build(**kw))
    assert msg.startswith("invalid .lal file: ") and fragment in msg, msg


@pytest.mark.parametrize("f", [KODAK, MRT], ids=["lalic", "mrt"])
def test_read_header_modes(f):
    data, header_end = _BYTES_AND_HEADER_END[f.header.family]
    head = data[:header_end]
    assert read_header(head, complete=False) == f.header
    assert read_header(data[:header_end + 100], complete=False) == f.header
    with pytest.raises(BitstreamError, match="^truncated"):
        read_header(head[:-1], complete=False)
    with pytest.raises(BitstreamError, match="^truncated"):
        read_header(head)                       # default: the whole file
    b = bytearray(data)
    b[-100] ^= 1                                # payload damage
    assert read_header(bytes(b), complete=False) == f.header
    with pytest.raises(BitstreamError, match=r"^corrupted .lal file \(CRC mismatch\)$"):
        read_header(bytes(b))


def test_pack_rejects_invalid_input():
    import copy
    bad = []
    for attr, value in [("quality", 3.333), ("quality", 0), ("quality", float("nan")), ("mode", "CMYK"),
                        ("bit_depth", 12), ("device_class", "mps"),
                        ("weights_hash", b"123"), ("weights_name", "x" * 256),
                        ("pad", (0, 0, 0, 1)), ("height", 0), ("num_groups", 4),
                        ("family", "vq"), ("family", None), ("family", "mrt")]:
        f = copy.deepcopy(KODAK)
        setattr(f.header, attr, value)
        bad.append(f)
    f = copy.deepcopy(KODAK)
    f.extras["bad tag"] = b""
    bad.append(f)
    f = copy.deepcopy(KODAK)
    f.extras.update({f"t{i}": b"" for i in range(17)})
    bad.append(f)
    for f in bad:
        with pytest.raises(ValueError) as ei:
            pack(f)
        assert not isinstance(ei.value, BitstreamError)


# --- property-based fuzzing -------------------------------------------------

SMALL = {kind: pack(make(7, extras={"alpha": b"\x01" * 20})) for kind, make in _FILE_MAKERS.items()}
# LALIC_FUZZ_EXAMPLES raises the count for a long run outside CI.
_fuzz = settings(max_examples=int(os.environ.get("LALIC_FUZZ_EXAMPLES", 300)), deadline=None, database=None,
                 suppress_health_check=list(HealthCheck))


def _only_bitstream_errors(data, original=None):
    try:
        f = unpack(data)
    except BitstreamError as e:
        assert "\n" not in str(e) and "internal parser error" not in str(e), str(e)
        return
    assert original is not None and pack(f) == data


@_fuzz
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(data):
    _only_bitstream_errors(data)
    for version in READ_VERSIONS:
        _only_bitstream_errors(MAGIC + bytes([version]) + data)
        for complete in (False, True):
            try:
                read_header(MAGIC + bytes([version]) + data, complete=complete)
            except BitstreamError as e:
                assert "internal parser error" not in str(e), str(e)


@FAMILY_FILES
@_fuzz
@given(st.lists(st.tuples(st.sampled_from("set ins del"),
                          st.integers(0, max(map(len, SMALL.values()))), st.binary(min_size=1, max_size=16)),
                min_size=1, max_size=4))
def test_fuzz_mutated_file(kind, ops):
    small = SMALL[kind]
    b = bytearray(small)
    for op, i, payload in ops:
        i = min(i, len(b))
        if op == "set":
            b[i:i + len(payload)] = payload
        elif op == "ins":
            b[i:i] = payload
        else:
            del b[i:i + len(payload)]
    _only_bitstream_errors(bytes(b), small)

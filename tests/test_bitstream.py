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
    FORMAT_VERSION,
    MAGIC,
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


def build(*, magic=MAGIC, version=2, name=b"t", whash=bytes(range(8)),
          quality=250, height=60, width=100, mode=3, depth=8, device=0, entropy=0,
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


KODAK = kodak_file()
KODAK_BYTES = pack(KODAK)
KODAK_HEADER_END = size_breakdown(KODAK)["header"]


def err(data, **kw) -> str:
    with pytest.raises(BitstreamError) as ei:
        unpack(data, **kw)
    msg = str(ei.value)
    assert "\n" not in msg and "internal parser error" not in msg, msg
    return msg


# --- round trips and sizes --------------------------------------------------

def test_reference_bytes():
    expected = bytes.fromhex(
        "4c414c89" "02"            # magic, version
        "0174"                     # weights_name "t"
        "0001020304050607"         # weights_hash
        "fa01"                     # quality 2.5 -> 250
        "3c" "64"                  # height 60, width 100
        "03" "08" "00" "00"        # RGB, 8 bit, cpu, float entropy path
        "0a120103"                 # pad l=10 r=18 t=1 b=3
        "0102"                     # z 1x2
        "01"                       # num_groups
        "deadbeef"                 # symbols_crc
        "16")                      # body_length = 22
    expected += u32be(zlib.crc32(expected))
    expected += bytes.fromhex(
        "02" "026162" "03636465"   # 2 y strings
        "015a"                     # z string
        "01" "03696363" "020102")  # extras: icc
    expected += u32be(zlib.crc32(expected))
    assert pack(TINY) == expected
    assert build() == expected
    assert unpack(expected) == TINY
    assert read_header(expected) == TINY.header


def test_version_1_files_still_read():
    """Version 1 had no entropy byte: such files decode with the float entropy path."""
    v1 = build(version=1)
    assert unpack(v1) == TINY
    assert read_header(v1).entropy == "float"


def test_entropy_path_round_trip_and_unknown_code():
    f = LalFile(dataclasses.replace(TINY.header, entropy="exact"), TINY.y_strings, TINY.z_string, TINY.extras)
    data = pack(f)
    assert data == build(entropy=1)
    assert unpack(data).header.entropy == "exact"
    assert err(build(entropy=7)) == "invalid .lal header: unknown entropy path code 7"


def test_kodak_round_trip_and_header_size(capsys):
    assert unpack(KODAK_BYTES) == KODAK
    assert read_header(KODAK_BYTES) == KODAK.header
    sizes = size_breakdown(KODAK)
    with capsys.disabled():
        print(f"\n.lal sizes for a 768x512 Kodak image, G=5: {sizes}")
    assert sizes["total"] == len(KODAK_BYTES)
    assert sizes["header"] < 64
    assert sizes["overhead"] < 96


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

def test_truncation_at_every_offset():
    data = pack(kodak_file(3, extras={"alpha": b"a" * 100}))
    for k in range(len(data)):
        assert err(data[:k]).startswith("truncated .lal file"), k


def test_header_byte_flips():
    for i in range(KODAK_HEADER_END):
        for mask in (0x01, 0x40, 0x80, 0xFF):
            b = bytearray(KODAK_BYTES)
            b[i] ^= mask
            msg = err(bytes(b))
            if i < 4:
                assert msg == "not a .lal file (bad magic)"
            elif i == 4:
                assert msg.startswith("unsupported .lal format version")
            else:
                assert msg.startswith("corrupted .lal file"), (i, mask, msg)


def test_payload_byte_flips():
    rng = random.Random(4)
    offsets = rng.sample(range(KODAK_HEADER_END, len(KODAK_BYTES)), 200)
    for i in offsets + [len(KODAK_BYTES) - 1]:
        b = bytearray(KODAK_BYTES)
        b[i] ^= rng.randrange(1, 256)
        assert err(bytes(b)) == "corrupted .lal file (CRC mismatch)", i


def test_random_mutation_loop():
    rng = random.Random(5)
    small = pack(kodak_file(6, extras={"alpha": b"x" * 30}))
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
    data = build(version=3)        # CRCs are correct for the version-3 bytes
    assert err(data) == "unsupported .lal format version 3 (this lalic reads versions 1, 2)"
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


def test_read_header_modes():
    head = KODAK_BYTES[:KODAK_HEADER_END]
    assert read_header(head, complete=False) == KODAK.header
    assert read_header(KODAK_BYTES[:KODAK_HEADER_END + 100], complete=False) == KODAK.header
    with pytest.raises(BitstreamError, match="^truncated"):
        read_header(head[:-1], complete=False)
    with pytest.raises(BitstreamError, match="^truncated"):
        read_header(head)                       # default: the whole file
    b = bytearray(KODAK_BYTES)
    b[-100] ^= 1                                # payload damage
    assert read_header(bytes(b), complete=False) == KODAK.header
    with pytest.raises(BitstreamError, match=r"^corrupted .lal file \(CRC mismatch\)$"):
        read_header(bytes(b))


def test_pack_rejects_invalid_input():
    import copy
    bad = []
    for attr, value in [("quality", 3.333), ("quality", 0), ("quality", float("nan")), ("mode", "CMYK"),
                        ("bit_depth", 12), ("device_class", "mps"),
                        ("weights_hash", b"123"), ("weights_name", "x" * 256),
                        ("pad", (0, 0, 0, 1)), ("height", 0), ("num_groups", 4)]:
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

SMALL = pack(kodak_file(7, extras={"alpha": b"\x01" * 20}))
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
    _only_bitstream_errors(MAGIC + bytes([FORMAT_VERSION]) + data)
    for complete in (False, True):
        try:
            read_header(MAGIC + b"\x01" + data, complete=complete)
        except BitstreamError:
            pass


@_fuzz
@given(st.lists(st.tuples(st.sampled_from("set ins del"),
                          st.integers(0, len(SMALL)), st.binary(min_size=1, max_size=16)),
                min_size=1, max_size=4))
def test_fuzz_mutated_file(ops):
    b = bytearray(SMALL)
    for op, i, payload in ops:
        i = min(i, len(b))
        if op == "set":
            b[i:i + len(payload)] = payload
        elif op == "ins":
            b[i:i] = payload
        else:
            del b[i:i + len(payload)]
    _only_bitstream_errors(bytes(b), SMALL)

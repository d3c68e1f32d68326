"""The ``.lal`` container: one coded image in a self-describing byte string.

Pure standard-library code (no torch).  The byte layout is specified in
``docs/bitstream.md``; keep the two in step (``tests/test_bitstream.py``
checks hand-built reference files against this module).

One format carries every model family (the ``family`` byte, the family's
container code in ``lalic_cli.families``); the header's latent grid ``z_shape``
is in units of the family's stride (:data:`LATENT_STRIDES`), and each family's
``Container`` rules say which entropy paths and strings its files may have.

Summary of the layout (versions 3 and 4; version 2 lacks the family byte,
version 1 also the entropy byte; version 4 changes only the arithmetic of the
exact entropy path, :attr:`Header.arithmetic`)::

    magic "LAL\\x89" | version u8 | header fields | body_length | header CRC32
    body: y strings | z string | extras | file CRC32

Integers are unsigned LEB128 varints (minimal encoding, at most 10 bytes),
CRCs are CRC-32 (zlib) stored big-endian.  The header carries its own CRC so
that a reader can (a) tell a corrupted header from a truncated file and
(b) trust ``body_length`` to report truncation and trailing bytes precisely.

Every malformed input makes :func:`unpack` / :func:`read_header` raise
:class:`BitstreamError` with a one-line message; no other exception type
escapes them for any ``bytes`` input.
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from dataclasses import dataclass, field

from .errors import LalicError
from .families import DEFAULT_FAMILY, FAMILIES, Family, FamilyTable, family_for_code

__all__ = [
    "ENTROPY_CODES",
    "FAMILY_CODES",
    "FORMAT_VERSION",
    "WRITE_VERSIONS",
    "arithmetic_of",
    "MAGIC",
    "LATENT_STRIDE",
    "LATENT_STRIDES",
    "BitstreamError",
    "Header",
    "LalFile",
    "pack",
    "unpack",
    "read_header",
    "size_breakdown",
]

FORMAT_VERSION = 4
# version 1: no entropy byte (always the float entropy path);
# version 2: no family byte (always LALIC);
# version 3: the layout of 4, with arithmetic 1 on the exact entropy path
READ_VERSIONS = (1, 2, 3, 4)
#: versions that ``pack`` writes: 4, and 3 (arithmetic 1) for decoders from before 4
WRITE_VERSIONS = (3, 4)
MAGIC = b"LAL\x89"
#: pixels per element of the header's latent grid ``z_shape``, per model family
LATENT_STRIDES = FamilyTable(lambda f: f.container.stride)
#: the default family's stride (pixels per latent z element along each axis)
LATENT_STRIDE = LATENT_STRIDES[DEFAULT_FAMILY]

# --- limits (all checked before anything is sliced or allocated) ----------
MAX_VARINT_BYTES = 10          # enough for any value < 2**64
MAX_VARINT_VALUE = 2**64 - 1
MAX_NAME_BYTES = 255
WEIGHTS_HASH_BYTES = 8
MAX_QUALITY_CENTI = 10_000     # quality in (0, 100], stored in 1/100ths
MAX_DIM = 2**20                # height / width limit (pixels)
MAX_PADDED_DIM = 2**21         # stride * z_shape limit
MAX_GROUPS = 64
MAX_EXTRAS = 16
MAX_TAG_BYTES = 32
_TAG_RE = re.compile(rb"[A-Za-z0-9_.\-]{1,32}\Z")

MODE_CODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}   # code = channel count
_MODE_NAMES = {v: k for k, v in MODE_CODES.items()}
BIT_DEPTHS = (8, 16)
DEVICE_CODES = {"cpu": 0, "cuda": 1}
_DEVICE_NAMES = {v: k for k, v in DEVICE_CODES.items()}
#: how the decoder must compute the CDF indexes and means: "float" (the reference
#: model's float path, decodes on the encoder's device class only) or "exact" (the
#: portable path of docs/portable.md, the same bits everywhere)
ENTROPY_CODES = {"float": 0, "exact": 1}
_ENTROPY_NAMES = {v: k for k, v in ENTROPY_CODES.items()}
#: which model family coded the file: each family's container code
FAMILY_CODES = FamilyTable(lambda f: f.container.code)

_U32 = struct.Struct(">I")


def arithmetic_of(version: int) -> int:
    """The arithmetic the exact entropy path's layers compute in, in a file of this format
    version (docs/portable.md): 1 up to version 3, 2 from version 4."""
    return 1 if version <= 3 else 2


class BitstreamError(LalicError):
    """Raised with a clear one-line message for any malformed file."""


@dataclass
class Header:
    weights_name: str
    weights_hash: bytes
    quality: float
    height: int
    width: int
    mode: str
    bit_depth: int
    pad: tuple[int, int, int, int]     # (left, right, top, bottom)
    z_shape: tuple[int, int]           # latent grid (rows, cols), see LATENT_STRIDES
    num_groups: int                    # the family's groups (channel or bit groups)
    device_class: str = "cpu"
    symbols_crc: int = 0
    entropy: str = "float"
    family: str = DEFAULT_FAMILY
    version: int = FORMAT_VERSION      # the file's format version

    @property
    def arithmetic(self) -> int:
        """The arithmetic of the exact entropy path's layers, :func:`arithmetic_of` the version."""
        return arithmetic_of(self.version)


@dataclass
class LalFile:
    header: Header
    y_strings: list[bytes]
    z_string: bytes
    extras: dict[str, bytes] = field(default_factory=dict)


# --- varints ----------------------------------------------------------------

def _varint(n: int) -> bytes:
    if n < 0 or n > MAX_VARINT_VALUE:
        raise ValueError(f"varint out of range: {n}")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


class _Truncated(Exception):
    pass


class _Malformed(Exception):
    pass


class _Reader:
    """Bounds-checked cursor.  Raises _Truncated / _Malformed (internal)."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None):
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def u8(self, what: str) -> int:
        if self.pos >= self.end:
            raise _Truncated(f"{what} at byte {self.pos}")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def u32(self, what: str) -> int:
        return _U32.unpack(self.take(4, what))[0]

    def take(self, n: int, what: str) -> bytes:
        if n > self.end - self.pos:
            raise _Truncated(
                f"{what} at byte {self.pos} needs {n} bytes, "
                f"{self.end - self.pos} left")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def varint(self, what: str) -> int:
        start = self.pos
        value = 0
        for i in range(MAX_VARINT_BYTES):
            if self.pos >= self.end:
                raise _Truncated(f"{what} at byte {start}")
            b = self.data[self.pos]
            self.pos += 1
            value |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                if i and b == 0:
                    raise _Malformed(
                        f"non-minimal varint for {what} at byte {start}")
                if value > MAX_VARINT_VALUE:
                    raise _Malformed(
                        f"varint for {what} at byte {start} exceeds 2**64-1")
                return value
        raise _Malformed(
            f"varint for {what} at byte {start} is longer than "
            f"{MAX_VARINT_BYTES} bytes")

    def length(self, what: str, limit: int | None = None) -> int:
        """A length prefix: must fit in the remaining bytes (and ``limit``)."""
        start = self.pos
        n = self.varint(f"length of {what}")
        if limit is not None and n > limit:
            raise _Malformed(
                f"{what} at byte {start} declares {n} bytes (limit {limit})")
        if n > self.end - self.pos:
            raise _Malformed(
                f"{what} at byte {start} declares {n} bytes but only "
                f"{self.end - self.pos} remain")
        return n


# --- header -----------------------------------------------------------------

@dataclass
class _RawHeader:
    """Header fields exactly as stored, before semantic validation."""
    name: bytes
    whash: bytes
    quality_centi: int
    height: int
    width: int
    mode_code: int
    bit_depth: int
    device_code: int
    pad: tuple[int, int, int, int]
    z_shape: tuple[int, int]
    num_groups: int
    symbols_crc: int
    body_length: int
    header_end: int       # offset of the first body byte
    entropy_code: int = 0
    family_code: int = 0
    version: int = FORMAT_VERSION


def _parse_raw_header(data: bytes) -> _RawHeader:
    """Structural parse of bytes [0, header_end); magic/version already checked.

    The header CRC has not been checked yet, so only limits that a correct
    writer can never violate are enforced here (they raise _Malformed);
    running out of bytes raises _Truncated.
    """
    r = _Reader(data, 5)
    n = r.varint("weights_name length")
    if n > MAX_NAME_BYTES:
        raise _Malformed(f"weights_name length {n} > {MAX_NAME_BYTES}")
    name = r.take(n, "weights_name")
    whash = r.take(WEIGHTS_HASH_BYTES, "weights_hash")
    quality_centi = r.varint("quality")
    height = r.varint("height")
    width = r.varint("width")
    mode_code = r.u8("mode")
    bit_depth = r.u8("bit_depth")
    device_code = r.u8("device_class")
    entropy_code = r.u8("entropy") if data[4] >= 2 else 0
    family_code = r.u8("family") if data[4] >= 3 else 0
    pad = tuple(r.varint(f"pad_{s}") for s in ("left", "right", "top", "bottom"))
    z_shape = (r.varint("z_height"), r.varint("z_width"))
    num_groups = r.varint("num_groups")
    symbols_crc = r.u32("symbols_crc")
    body_length = r.varint("body_length")
    crc_pos = r.pos
    stored = r.u32("header CRC")
    if zlib.crc32(data[:crc_pos]) != stored:
        raise _BadHeaderCrc()
    return _RawHeader(name, whash, quality_centi, height, width, mode_code,
                      bit_depth, device_code, pad, z_shape, num_groups,
                      symbols_crc, body_length, r.pos, entropy_code, family_code, data[4])


class _BadHeaderCrc(Exception):
    pass


def _check_header_values(h: Header, max_pixels: int | None) -> None:
    """Semantic rules shared by pack and unpack.  Raises _Malformed."""
    if h.height < 1 or h.width < 1 or h.height > MAX_DIM or h.width > MAX_DIM:
        raise _Malformed(
            f"image size {h.width}x{h.height} outside 1..{MAX_DIM}")
    if max_pixels is not None and h.height * h.width > max_pixels:
        raise _TooLarge(
            f"image is {h.width}x{h.height} = {h.height * h.width} pixels, "
            f"more than max_pixels={max_pixels}")
    if h.mode not in MODE_CODES:
        raise _Malformed(f"unsupported colour mode {h.mode!r}")
    if h.bit_depth not in BIT_DEPTHS:
        raise _Malformed(f"unsupported bit depth {h.bit_depth}")
    if h.device_class not in DEVICE_CODES:
        raise _Malformed(f"unknown device class {h.device_class!r}")
    if h.entropy not in ENTROPY_CODES:
        raise _Malformed(f"unknown entropy path {h.entropy!r}")
    family = FAMILIES.get(h.family)
    if family is None:
        raise _Malformed(f"unknown model family {h.family!r}")
    rules = family.container
    if rules.entropy is not None and h.entropy != rules.entropy:
        raise _Malformed(
            f"{family.label} files use the {rules.entropy} entropy path, not {h.entropy!r}")
    if not 1 <= h.num_groups <= MAX_GROUPS:
        raise _Malformed(f"num_groups {h.num_groups} outside 1..{MAX_GROUPS}")
    stride = rules.stride
    zh, zw = h.z_shape
    if zh < 1 or zw < 1 or stride * zh > MAX_PADDED_DIM \
            or stride * zw > MAX_PADDED_DIM:
        raise _Malformed(f"z_shape {zh}x{zw} out of range")
    left, right, top, bottom = h.pad
    if min(h.pad) < 0:
        raise _Malformed(f"negative padding {h.pad}")
    if h.height + top + bottom != stride * zh \
            or h.width + left + right != stride * zw:
        raise _Malformed(
            f"z_shape {zh}x{zw} inconsistent with image {h.width}x{h.height} "
            f"and pad (l,r,t,b)={h.pad}: padded size must be "
            f"{stride}*z_shape for {h.family}")
    if not 0 <= h.symbols_crc <= 0xFFFFFFFF:
        raise _Malformed(f"symbols_crc {h.symbols_crc} is not a 32-bit value")


class _TooLarge(Exception):
    pass


def _header_from_raw(raw: _RawHeader, max_pixels: int | None) -> Header:
    try:
        name = raw.name.decode("utf-8")
    except UnicodeDecodeError:
        raise _Malformed("weights_name is not valid UTF-8") from None
    if not 1 <= raw.quality_centi <= MAX_QUALITY_CENTI:
        raise _Malformed(
            f"quality {raw.quality_centi / 100:g} outside (0, 100]")
    if raw.mode_code not in _MODE_NAMES:
        raise _Malformed(f"unknown colour mode code {raw.mode_code}")
    if raw.device_code not in _DEVICE_NAMES:
        raise _Malformed(f"unknown device class code {raw.device_code}")
    if raw.entropy_code not in _ENTROPY_NAMES:
        raise _Malformed(f"unknown entropy path code {raw.entropy_code}")
    family = family_for_code(raw.family_code)
    if family is None:
        raise _Malformed(f"unknown model family code {raw.family_code}")
    h = Header(
        weights_name=name,
        weights_hash=raw.whash,
        quality=raw.quality_centi / 100,
        height=raw.height,
        width=raw.width,
        mode=_MODE_NAMES[raw.mode_code],
        bit_depth=raw.bit_depth,
        pad=raw.pad,
        z_shape=raw.z_shape,
        num_groups=raw.num_groups,
        device_class=_DEVICE_NAMES[raw.device_code],
        symbols_crc=raw.symbols_crc,
        entropy=_ENTROPY_NAMES[raw.entropy_code],
        family=family.key,
        version=raw.version,
    )
    _check_header_values(h, max_pixels)
    return h


# --- reading ----------------------------------------------------------------

def _check_prefix(data: bytes) -> None:
    """Magic and version (the only checks made before any CRC)."""
    if len(data) < len(MAGIC):
        if not data:
            raise BitstreamError("truncated .lal file (empty)")
        if MAGIC.startswith(data):
            raise BitstreamError(
                f"truncated .lal file ({len(data)} bytes, shorter than the magic)")
        raise BitstreamError("not a .lal file (bad magic)")
    if data[:4] != MAGIC:
        raise BitstreamError("not a .lal file (bad magic)")
    if len(data) < 5:
        raise BitstreamError("truncated .lal file (ends before the version byte)")
    if data[4] not in READ_VERSIONS:
        raise BitstreamError(
            f"unsupported .lal format version {data[4]} "
            f"(this lalic reads versions {', '.join(map(str, READ_VERSIONS))})")


def _read_header(data: bytes, max_pixels: int | None) -> tuple[Header, _RawHeader]:
    _check_prefix(data)
    try:
        raw = _parse_raw_header(data)
    except _Truncated as e:
        raise BitstreamError(
            f"truncated .lal file (ends inside the header: {e})") from None
    except _Malformed as e:
        raise BitstreamError(f"corrupted .lal file (malformed header: {e})") from None
    except _BadHeaderCrc:
        raise BitstreamError("corrupted .lal file (header CRC mismatch)") from None
    try:
        header = _header_from_raw(raw, max_pixels)
    except _Malformed as e:
        raise BitstreamError(f"invalid .lal header: {e}") from None
    except _TooLarge as e:
        raise BitstreamError(f"refusing .lal file: {e}") from None
    if raw.body_length < _MIN_BODY:
        raise BitstreamError(
            f"invalid .lal header: body_length {raw.body_length} is smaller "
            f"than the minimum {_MIN_BODY}")
    return header, raw


# y count, z length, extras count (1 byte each at least) + file CRC
_MIN_BODY = 3 + 4


def _z_string_rule(family: Family) -> str | None:
    """Why a file of ``family`` may not carry a z string; None where it may."""
    return None if family.container.z_string else f"{family.label} files carry no z string"


def _parse_body(data: bytes, header: Header, raw: _RawHeader) -> LalFile:
    end = len(data) - 4                    # the file CRC is already verified
    r = _Reader(data, raw.header_end, end)
    count = r.varint("y string count")
    if count != 2 * header.num_groups:
        raise _Malformed(
            f"{count} y strings, expected 2*num_groups = {2 * header.num_groups}")
    y_strings = []
    for i in range(count):
        n = r.length(f"y string {i}")
        y_strings.append(r.take(n, f"y string {i}"))
    n = r.length("z string")
    z_string = r.take(n, "z string")
    if z_string and (rule := _z_string_rule(FAMILIES[header.family])):
        raise _Malformed(rule)
    n_extras = r.varint("extras count")
    if n_extras > MAX_EXTRAS:
        raise _Malformed(f"{n_extras} extras (limit {MAX_EXTRAS})")
    extras: dict[str, bytes] = {}
    for i in range(n_extras):
        n = r.length(f"extra {i} tag", MAX_TAG_BYTES)
        tag_b = r.take(n, f"extra {i} tag")
        if not _TAG_RE.match(tag_b):
            raise _Malformed(f"extra {i} has an invalid tag {tag_b!r}")
        tag = tag_b.decode("ascii")
        if tag in extras:
            raise _Malformed(f"duplicate extra tag {tag!r}")
        n = r.length(f"extra {tag!r} data")
        extras[tag] = r.take(n, f"extra {tag!r} data")
    if r.pos != end:
        raise _Malformed(f"{end - r.pos} unexpected bytes before the file CRC")
    return LalFile(header, y_strings, z_string, extras)


def _as_bytes(data) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"expected bytes, got {type(data).__name__}")


def unpack(data: bytes, *, max_pixels: int | None = None) -> LalFile:
    """Parse and fully validate a complete ``.lal`` file.

    Check order (see docs/bitstream.md): magic, version, header structure,
    header CRC, header values (incl. ``max_pixels``), file length against
    the declared body length (truncated / trailing bytes), file CRC, body.
    """
    data = _as_bytes(data)
    try:
        header, raw = _read_header(data, max_pixels)
        total = raw.header_end + raw.body_length
        if len(data) < total:
            raise BitstreamError(
                f"truncated .lal file ({len(data)} of {total} bytes)")
        if len(data) > total:
            raise BitstreamError(
                f"trailing data: {len(data) - total} unexpected bytes after "
                f"the end of the .lal file ({total} bytes)")
        if zlib.crc32(data[:-4]) != _U32.unpack(data[-4:])[0]:
            raise BitstreamError("corrupted .lal file (CRC mismatch)")
        try:
            return _parse_body(data, header, raw)
        except (_Malformed, _Truncated) as e:
            raise BitstreamError(f"invalid .lal file: {e}") from None
    except BitstreamError:
        raise
    except Exception as e:  # safety net: the contract is BitstreamError only
        raise BitstreamError(
            f"invalid .lal file (internal parser error: {type(e).__name__})"
        ) from e


def read_header(data_or_prefix: bytes, *, complete: bool = True,
                max_pixels: int | None = None) -> Header:
    """Return the header of a ``.lal`` file.

    ``complete=True`` (default, what ``lalic info`` uses): the argument must
    be the whole file and it is validated exactly like :func:`unpack`
    (both CRCs, truncation, trailing bytes, body structure).

    ``complete=False``: the argument may be any prefix that contains the
    header; only magic, version, the header CRC and the header values are
    checked (the body is not looked at).
    """
    if complete:
        return unpack(data_or_prefix, max_pixels=max_pixels).header
    data = _as_bytes(data_or_prefix)
    try:
        return _read_header(data, max_pixels)[0]
    except BitstreamError:
        raise
    except Exception as e:  # safety net
        raise BitstreamError(
            f"invalid .lal file (internal parser error: {type(e).__name__})"
        ) from e


# --- writing ----------------------------------------------------------------

def _quality_centi(q) -> int:
    if isinstance(q, bool) or not isinstance(q, (int, float)):
        raise ValueError(f"quality must be a number, got {q!r}")
    if not math.isfinite(q):
        raise ValueError(f"quality {q!r} is not finite")
    centi = round(q * 100)
    if abs(q * 100 - centi) > 1e-6:
        raise ValueError(
            f"quality {q!r} is not a multiple of 0.01 (stored in 1/100ths)")
    if not 1 <= centi <= MAX_QUALITY_CENTI:
        raise ValueError(f"quality {q!r} outside (0, 100]")
    return centi


def _encode_header_fields(h: Header) -> bytes:
    """Header fields from weights_name through symbols_crc (validated)."""
    for name, typ in (("weights_name", str), ("weights_hash", bytes),
                      ("mode", str), ("device_class", str), ("entropy", str),
                      ("family", str)):
        if not isinstance(getattr(h, name), typ):
            raise ValueError(f"Header.{name} must be {typ.__name__}")
    if isinstance(h.version, bool) or h.version not in READ_VERSIONS:
        raise ValueError(f"Header.version {h.version!r} is not a version this lalic knows")
    for name in ("height", "width", "bit_depth", "num_groups", "symbols_crc"):
        v = getattr(h, name)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"Header.{name} must be int, got {v!r}")
    if len(h.pad) != 4 or len(h.z_shape) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool)
            for v in (*h.pad, *h.z_shape)):
        raise ValueError("Header.pad must be 4 ints and Header.z_shape 2 ints")
    name = h.weights_name.encode("utf-8")
    if len(name) > MAX_NAME_BYTES:
        raise ValueError(f"weights_name is {len(name)} bytes (limit {MAX_NAME_BYTES})")
    if len(h.weights_hash) != WEIGHTS_HASH_BYTES:
        raise ValueError(f"weights_hash must be {WEIGHTS_HASH_BYTES} bytes")
    centi = _quality_centi(h.quality)
    try:
        _check_header_values(h, None)
    except _Malformed as e:
        raise ValueError(f"cannot write .lal header: {e}") from None
    out = bytearray()
    out += _varint(len(name)) + name
    out += h.weights_hash
    out += _varint(centi)
    out += _varint(h.height) + _varint(h.width)
    out += bytes((MODE_CODES[h.mode], h.bit_depth, DEVICE_CODES[h.device_class],
                  ENTROPY_CODES[h.entropy], FAMILIES[h.family].container.code))
    for v in h.pad:
        out += _varint(v)
    out += _varint(h.z_shape[0]) + _varint(h.z_shape[1])
    out += _varint(h.num_groups)
    out += _U32.pack(h.symbols_crc)
    return bytes(out)


def _encode_body_sections(f: LalFile) -> bytes:
    """Body without the trailing file CRC."""
    g = f.header.num_groups
    if len(f.y_strings) != 2 * g:
        raise ValueError(
            f"{len(f.y_strings)} y strings, expected 2*num_groups = {2 * g}")
    out = bytearray(_varint(len(f.y_strings)))
    for s in f.y_strings:
        s = _as_bytes(s)
        out += _varint(len(s)) + s
    z = _as_bytes(f.z_string)
    if z and (rule := _z_string_rule(FAMILIES[f.header.family])):
        raise ValueError(rule)
    out += _varint(len(z)) + z
    if len(f.extras) > MAX_EXTRAS:
        raise ValueError(f"{len(f.extras)} extras (limit {MAX_EXTRAS})")
    out += _varint(len(f.extras))
    for tag in sorted(f.extras):       # sorted: deterministic output
        if not isinstance(tag, str) or not _TAG_RE.match(tag.encode("utf-8")):
            raise ValueError(
                f"invalid extras tag {tag!r} (1..{MAX_TAG_BYTES} of [A-Za-z0-9_.-])")
        d = _as_bytes(f.extras[tag])
        out += _varint(len(tag)) + tag.encode("ascii") + _varint(len(d)) + d
    return bytes(out)


def pack(f: LalFile) -> bytes:
    """Serialise ``f`` in its header's version: 4, or 3 for versions up to 3 (one
    layout; 1 and 2 mean what 3 does).  Invalid contents raise ValueError (not
    BitstreamError)."""
    fields = _encode_header_fields(f.header)
    body = _encode_body_sections(f)
    version = 4 if f.header.version >= 4 else 3  # 1 and 2 mean what 3 does, in its layout
    head = MAGIC + bytes((version,)) + fields + _varint(len(body) + 4)
    head += _U32.pack(zlib.crc32(head))
    out = head + body
    return out + _U32.pack(zlib.crc32(out))


def size_breakdown(f: LalFile) -> dict[str, int]:
    """Byte counts of ``pack(f)``: header (magic .. header CRC), payload
    (y/z/extras data), overhead (everything except payload) and total."""
    data = pack(f)
    header_end = _read_header(data, None)[1].header_end
    payload = (sum(len(s) for s in f.y_strings) + len(f.z_string)
               + sum(len(v) for v in f.extras.values()))
    return {"header": header_end, "payload": payload,
            "overhead": len(data) - payload, "total": len(data)}

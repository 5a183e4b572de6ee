"""JPEG XL pictures, read and written through the optional pillow-jxl-plugin (libjxl).

Three things the plugin leaves to its caller, decided here from the file's own header
(ISO/IEC 18181-1, the codestream's ``SizeHeader`` and ``ImageMetadata``, read by
:func:`read_header` without decoding a pixel):

- **Orientation.** A JPEG XL's orientation is a field of its codestream; an EXIF
  orientation beside it is to be ignored (the format's rule: a file's EXIF may be
  stripped or edited without turning the picture). libjxl applies the field when it
  decodes pixels; a JPEG losslessly recompressed to JPEG XL (``cjxl photo.jpg``) is
  handed back by the plugin as the original JPEG, unturned, and there the field (which
  libjxl copied from the JPEG's EXIF) is applied by :func:`orientation_to_apply`.
- **Depth.** The plugin decodes colour at 8 bits (a 16-bit or float picture too) and
  grey at 8 or 16: what reading loses is said (:func:`depth_lost`).
- **Losslessness.** A picture coded without the XYB colour space and not recompressed
  from a JPEG is a lossless one (``cjxl -d 0``, an archive's PNGs): its copy is written
  lossless too, as a lossless WebP's is.

Animated JPEG XLs are refused (the plugin decodes only their first frame).
"""

from __future__ import annotations

import importlib.util
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

AVAILABLE = importlib.util.find_spec("pillow_jxl") is not None
EXTENSIONS = (".jxl",) if AVAILABLE else ()
INSTALL_HINT = "pip install 'restore[jxl]'"

_CODESTREAM_SIGNATURE = b"\xff\x0a"
_CONTAINER_SIGNATURE = b"\x00\x00\x00\x0cJXL \r\n\x87\n"


@lru_cache(maxsize=None)
def ready() -> bool:
    """Register the plugin's opener and writer with Pillow (once, on first need)."""
    importlib.import_module("pillow_jxl")  # importing it registers the JXL format

    return True


def looks_like_jxl(data: bytes) -> bool:
    """A bare JPEG XL codestream or one in its ISO-BMFF container."""
    return data[:2] == _CODESTREAM_SIGNATURE or data[:12] == _CONTAINER_SIGNATURE


@dataclass(frozen=True)
class Header:
    """What a JPEG XL's codestream header says (ISO/IEC 18181-1, ``ImageMetadata``)."""

    width: int
    height: int
    orientation: int  # 1-8, as EXIF numbers them; applied by libjxl when it decodes pixels
    bits_per_sample: int
    float_samples: bool
    animated: bool
    xyb_encoded: bool | None  # None where extra channels this reader does not follow come first
    jpeg_reconstruction: bool  # a recompressed JPEG (a ``jbrd`` box): the plugin returns that JPEG


class _Bits:
    """The codestream's bit reader: least significant bit first (ISO/IEC 18181-1, B.2)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.position = data, 0

    def u(self, count: int) -> int:
        value = 0
        for bit in range(count):
            byte = self.position >> 3
            if byte >= len(self.data):
                raise ValueError("the codestream header is cut short")
            value |= ((self.data[byte] >> (self.position & 7)) & 1) << bit
            self.position += 1
        return value

    def flag(self) -> bool:
        return bool(self.u(1))

    def u32(self, *choices: tuple[int, int]) -> int:
        """``U32``: a 2-bit selector picks one of four (bits, offset) distributions;
        (0, v) is the constant v."""
        bits, offset = choices[self.u(2)]
        return self.u(bits) + offset


def _size(bits: _Bits) -> tuple[int, int]:
    """``SizeHeader``: (width, height)."""
    large = (9, 1), (13, 1), (18, 1), (30, 1)
    small = bits.flag()
    height = (bits.u(5) + 1) * 8 if small else bits.u32(*large)
    ratio = bits.u(3)
    if ratio:
        numerator, denominator = ((1, 1), (12, 10), (4, 3), (3, 2), (16, 9), (5, 4), (2, 1))[ratio - 1]
        return height * numerator // denominator, height
    return ((bits.u(5) + 1) * 8 if small else bits.u32(*large)), height


def _skip_preview(bits: _Bits) -> None:
    """``PreviewHeader``: read past it."""
    div8 = bits.flag()
    dimension = ((0, 16), (0, 32), (5, 1), (9, 33)) if div8 else ((6, 1), (8, 65), (10, 321), (12, 1345))
    bits.u32(*dimension)
    if bits.u(3) == 0:
        bits.u32(*dimension)


def _skip_animation(bits: _Bits) -> None:
    """``AnimationHeader``: ticks per second, loop count, timecodes."""
    bits.u32((0, 100), (0, 1000), (10, 1), (30, 1))
    bits.u32((0, 1), (0, 1001), (8, 1), (10, 1))
    bits.u32((0, 0), (3, 0), (16, 0), (32, 0))
    bits.flag()


def _bit_depth(bits: _Bits) -> tuple[int, bool]:
    """``BitDepth``: (bits per sample, float samples)."""
    if bits.flag():  # float
        depth = bits.u32((0, 32), (0, 16), (0, 24), (6, 1))
        bits.u(4)  # exponent bits - 1
        return depth, True
    return bits.u32((0, 8), (0, 10), (0, 12), (6, 1)), False


def _boxes(data: bytes):
    """The (type, payload) boxes of the ISO-BMFF container; payloads as views, not copies."""
    view, position = memoryview(data), 0
    while position + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[position:position + 8])
        start = position + 8
        if size == 1:
            if position + 16 > len(data):
                return
            size, start = struct.unpack(">Q", data[position + 8:position + 16])[0], position + 16
        elif size == 0:
            size = len(data) - position
        if size < start - position:
            return
        yield kind, view[start:position + size]
        position += size


_HEADER_BYTES = 4096  # more than a codestream's header takes before the fields read here


def _codestream_start(data: bytes) -> tuple[bytes, bool]:
    """The first bytes of the codestream (enough for its header) and whether a ``jbrd``
    box (JPEG reconstruction data) comes with it."""
    if data[:2] == _CODESTREAM_SIGNATURE:
        return data[:_HEADER_BYTES], False
    start, jpeg = b"", False
    for kind, payload in _boxes(data):
        if kind == b"jxlc":
            start += bytes(payload[:_HEADER_BYTES])
        elif kind == b"jxlp" and len(start) < _HEADER_BYTES:  # a partial codestream: a 4-byte index, then its bytes
            start += bytes(payload[4:4 + _HEADER_BYTES])
        elif kind == b"jbrd":
            jpeg = True
    return start, jpeg


def read_header(data: bytes) -> Header:
    """The codestream header of a JPEG XL file; ValueError where it is not one."""
    codestream, jpeg = _codestream_start(data)
    if codestream[:2] != _CODESTREAM_SIGNATURE:
        raise ValueError("no JPEG XL codestream")
    bits = _Bits(codestream[2:])
    width, height = _size(bits)
    if bits.flag():  # all_default: an 8-bit, upright, still picture coded in XYB
        return Header(width, height, 1, 8, False, False, True, jpeg)
    orientation, animated = 1, False
    if bits.flag():  # extra_fields
        orientation = bits.u(3) + 1
        if bits.flag():  # have_intrinsic_size
            _size(bits)
        if bits.flag():  # have_preview
            _skip_preview(bits)
        animated = bits.flag()
        if animated:
            _skip_animation(bits)
    depth, float_samples = _bit_depth(bits)
    bits.flag()  # modular_16_bit_buffer_sufficient
    extra_channels = bits.u32((0, 0), (0, 1), (4, 2), (12, 1))
    xyb: bool | None = None
    if all(bits.flag() for _ in range(extra_channels)):  # every one a default alpha channel
        xyb = bits.flag()
    return Header(width, height, orientation, depth, float_samples, animated, xyb, jpeg)


class Metadata(NamedTuple):
    """The EXIF (a TIFF header first) and XMP of a JPEG XL's container boxes, and what
    could not be read of them."""

    exif: bytes | None
    xmp: bytes | None
    unread: str | None


def metadata(data: bytes) -> Metadata:
    """The ``Exif`` and ``xml `` boxes of a JPEG XL's container, Brotli-compressed ones
    (``brob``, as cjxl and libjxl may write them) too: the plugin reads an uncompressed
    ``Exif`` box alone, so a copy lost the rest without a word. Decompressing takes the
    brotli package (in ``restore[jxl]``); without it, ``unread`` says what was left."""
    if data[:2] == _CODESTREAM_SIGNATURE:
        return Metadata(None, None, None)
    found: dict[bytes, bytes] = {}
    compressed = []
    for kind, payload in _boxes(data):
        if kind == b"brob" and bytes(payload[:4]) in (b"Exif", b"xml "):
            kind = bytes(payload[:4])
            try:
                import brotli
            except ImportError:
                compressed.append("EXIF" if kind == b"Exif" else "XMP")
                continue
            try:
                payload = brotli.decompress(bytes(payload[4:]))
            except brotli.error:
                continue  # a damaged box: the picture is what matters
        if kind in (b"Exif", b"xml ") and kind not in found:
            found[kind] = bytes(payload)
    exif = found.get(b"Exif")
    if exif is not None and exif[:4] not in (b"II*\x00", b"MM\x00*"):  # a 4-byte offset to the TIFF header first
        exif = exif[4 + int.from_bytes(exif[:4], "big"):] if len(exif) > 4 else None
    unread = f"its {' and '.join(dict.fromkeys(compressed))} not read: Brotli-compressed (pip install brotli)" if compressed else None
    return Metadata(exif or None, found.get(b"xml ") or None, unread)


def exif_box(exif: bytes) -> bytes:
    """EXIF (``Exif\\0\\0`` and a TIFF header, as Pillow gives it) as a JPEG XL's ``Exif``
    box holds it (ISO/IEC 18181-2): a 4-byte offset to the TIFF header first. The plugin
    writes what it is given, and given Pillow's EXIF it wrote the TIFF header alone; its
    own reader takes either."""
    tiff = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif
    return b"\x00\x00\x00\x00" + tiff


def orientation_to_apply(header: Header) -> int:
    """The EXIF-numbered orientation still to apply to the pixels the plugin decodes:
    the codestream's for a recompressed JPEG (handed back unturned), 1 otherwise
    (libjxl turned them)."""
    return header.orientation if header.jpeg_reconstruction else 1


def is_lossless(header: Header) -> bool:
    """Whether the picture was coded losslessly (as far as its header tells)."""
    return header.xyb_encoded is False and not header.jpeg_reconstruction


def depth_lost(header: Header, decoded_bits: int) -> str | None:
    """What reading lost of the samples' depth, or None: the plugin hands colour over
    at 8 bits."""
    if header.float_samples:
        return f"its float samples read at {decoded_bits} bits (the JPEG XL reader decodes no deeper)"
    if header.bits_per_sample > decoded_bits:
        return f"its {header.bits_per_sample}-bit samples read at {decoded_bits} bits (the JPEG XL reader decodes colour no deeper)"
    return None


def keeps_colours(profile: bytes) -> bool:
    """Whether a JPEG XL copy shows the colours ``profile`` describes: the plugin writes
    no ICC profile, so libjxl labels the copy sRGB. True for an sRGB profile (named so,
    as cameras, phones and Pillow name theirs) and for the profiles libjxl itself gives a
    picture written without one (:func:`_default_profiles`)."""
    import io

    from PIL import ImageCms

    if profile in _default_profiles():
        return True
    try:
        description = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(profile)))
    except Exception:  # noqa: BLE001 - a profile littleCMS cannot parse describes nothing the copy keeps
        return False
    return description.strip().lower().startswith("srgb")


@lru_cache(maxsize=None)
def _default_profiles() -> frozenset[bytes]:
    """The ICC profiles libjxl gives a picture written without one (sRGB; grey with
    sRGB's curve), as the plugin reads them back."""
    import io

    from PIL import Image

    ready()
    profiles = set()
    for mode in ("RGB", "L"):
        buffer = io.BytesIO()
        Image.new(mode, (8, 8)).save(buffer, format="JXL", lossless=True)
        with Image.open(buffer) as image:
            profiles.add(image.info.get("icc_profile") or b"")
    return frozenset(profiles - {b""})

"""Byte-level metadata of image containers, which neither OpenCV (pixels) nor Pillow
(headers) handles for every case this project meets: PNG chunks (iCCP, eXIf, the
grey + alpha colour type), a classic TIFF's first IFD (size, ICC profile, pages;
which of its tags lay out pixels rather than describe the picture), the colour
space an ICC profile names, and the sample scales of AVIF and Netpbm files.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from PIL import Image

# A TIFF's "EXIF" as Pillow reads it is its first IFD: the tags that lay out its pixels
# (size, samples, compression, strips, palette, ink set, ...) come with the metadata.
# Written into another file they describe pixels it does not hold: a CMYK or palette
# TIFF's copy became unreadable. Only the metadata tags travel (make, model, dates,
# resolution, copyright, the EXIF/GPS sub-IFDs, XMP, IPTC).
TIFF_LAYOUT_TAGS = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 263, 264, 265, 266, 273, 277, 278, 279, 280, 281, 284, 288, 289, 290, 291, 292,
     293, 301, 317, 320, 321, 322, 323, 324, 325, 330, 332, 333, 334, 336, 337, 338, 339, 340, 341, 342, 347, 529, 530,
     531, 532, 34675} | set(range(512, 522))
)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

def png_stores_grey_alpha(data: bytes, pillow_mode: str) -> bool:
    """Whether the file holds grey + alpha (Pillow reports 16-bit PNGs of it as RGBA)."""
    is_png_colour_type_4 = data.startswith(_PNG_SIGNATURE) and len(data) > 25 and data[25] == 4
    return pillow_mode in ("LA", "La") or is_png_colour_type_4


def _png_chunk_payload(data: bytes, kind: bytes) -> bytes | None:
    """The payload of a PNG's first ``kind`` chunk, found by walking the chunk headers
    (nothing is decompressed); None when there is none before IEND."""
    offset = len(_PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length, chunk_kind = struct.unpack_from(">I4s", data, offset)
        if chunk_kind == kind:
            return data[offset + 8 : offset + 8 + length]
        if chunk_kind == b"IEND":
            return None
        offset += 12 + length  # length, type, payload, CRC
    return None


def png_exif(header: Image.Image, data: bytes) -> Image.Exif:
    """A PNG's EXIF, wherever its eXIf chunk stands.

    Pillow's ``PngImageFile.getexif()`` decodes all the pixels when the chunk is not
    before the image data (it looks for it after IDAT), which doubled the time of
    every PNG read here (OpenCV decodes the pixels anyway). The chunk headers are
    walked instead, and the base class reads what Pillow's header pass collected
    (eXIf, ImageMagick's raw EXIF text, XMP orientation).
    """
    if "exif" not in header.info:
        trailing = _png_chunk_payload(data, b"eXIf")
        if trailing is not None:
            header.info["exif"] = trailing
    return Image.Image.getexif(header)


_WEBP_FRAME_HEADER = 16  # an ANMF chunk's position, size, duration and flags, before its frame's own chunks


def webp_is_lossless(data: bytes) -> bool:
    """Whether a WebP's picture is coded losslessly (a VP8L chunk, not VP8's lossy one),
    found by walking its RIFF chunks (an animation's: those of its first frame, inside
    its first ANMF chunk); False for anything else."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return False
    offset = 12
    while offset + 8 <= len(data):
        kind, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        if kind in (b"VP8L", b"VP8 "):
            return kind == b"VP8L"
        if kind == b"ANMF":
            offset += 8 + _WEBP_FRAME_HEADER  # into the frame: its ALPH, then VP8 or VP8L
            continue
        offset += 8 + size + (size & 1)  # chunks are padded to an even size
    return False


def icc_colour_space(profile: bytes) -> str:
    """The data colour space an ICC profile's header names ("RGB", "GRAY", "CMYK", ...)."""
    return profile[16:20].decode("latin-1").strip()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


PNG_XMP_KEYWORD = b"XML:com.adobe.xmp"  # the iTXt keyword of an XMP packet in a PNG
_PNG_TEXT_KINDS = (b"tEXt", b"zTXt", b"iTXt")
# How a PNG's samples map to colours where it has no ICC profile: its gamma (gAMA: 1.0 for
# linear data), primaries (cHRM), the sRGB flag, and an HDR PNG's transfer (cICP: PQ or
# HLG) and display levels (mDCV, cLLI). Browsers and colour-managed viewers honour them:
# a linear PNG's copy without its gAMA showed far darker there.
_PNG_COLOUR_KINDS = (b"gAMA", b"cHRM", b"sRGB", b"cICP", b"mDCV", b"cLLI")


def png_chunks_to_keep(data: bytes) -> tuple[bytes, ...]:
    """A PNG's colour chunks (:data:`_PNG_COLOUR_KINDS`) and text chunks (tEXt, zTXt,
    iTXt: author, copyright, a generator's parameters, ...), whole and as stored; the XMP
    packet's iTXt is left out (the reader keeps XMP apart, for every format). Chunk
    headers are walked; nothing is decompressed."""
    found = []
    offset = len(_PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, offset)
        if kind in _PNG_TEXT_KINDS or kind in _PNG_COLOUR_KINDS:  # sliced only then: image data is never copied
            chunk = data[offset : offset + 12 + length]
            if len(chunk) == 12 + length and not chunk[8:].startswith(PNG_XMP_KEYWORD + b"\x00"):
                found.append(chunk)
        if kind == b"IEND":
            break
        offset += 12 + length
    return tuple(found)


def add_png_metadata(png: bytes, icc_profile: bytes | None, exif: bytes | None, xmp: bytes | None = None,
                     dpi: tuple[float, float] | None = None, chunks: tuple[bytes, ...] = ()) -> bytes:
    """Insert iCCP, eXIf, XMP (iTXt), pHYs (from ``dpi``) and the given whole chunks
    (:func:`png_chunks_to_keep`: colour chunks must stand before the image data) right
    after IHDR of an encoded PNG."""
    if not (icc_profile or exif or xmp or dpi or chunks):
        return png
    ihdr_end = 8 + 4 + 4 + 13 + 4  # signature + IHDR chunk
    made = b""
    if icc_profile:
        made += _png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc_profile))
    if exif:
        payload = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif
        made += _png_chunk(b"eXIf", payload)
    if dpi:  # pixels per metre, unit 1
        made += _png_chunk(b"pHYs", struct.pack(">IIB", round(dpi[0] / 0.0254), round(dpi[1] / 0.0254), 1))
    if xmp:  # keyword, no compression, no language, no translated keyword: as Adobe's tools write it
        made += _png_chunk(b"iTXt", PNG_XMP_KEYWORD + b"\x00\x00\x00\x00\x00" + xmp)
    return png[:ihdr_end] + made + b"".join(chunks) + png[ihdr_end:]


# IPTC-IIM (captions, keywords, credit, as news agencies, Photo Mechanic and Lightroom
# write them) lives in a JPEG's APP13 segment, inside Photoshop's image resource blocks
# (resource 0x0404), and in a TIFF's tag 33723. The other resources of that segment
# (Photoshop's thumbnail, print settings, slices) describe the original, not the copy.
PHOTOSHOP_SIGNATURE = b"Photoshop 3.0\x00"
_IPTC_RESOURCE = 0x0404
TIFF_IPTC_TAG = 33723
_JPEG_SEGMENT_MAX = 65533  # a segment's length field counts itself: 65535 - 2


def photoshop_iptc(applist: list[tuple[str, bytes]]) -> bytes | None:
    """The IPTC-IIM records of a JPEG's APP13 Photoshop segments (Pillow's ``applist``).
    A resource block longer than one segment continues in the next, so their payloads
    are joined before the blocks ("8BIM", id, padded Pascal name, size, padded data)
    are walked; a damaged block ends the walk with what was read."""
    irb = b"".join(data[len(PHOTOSHOP_SIGNATURE):] for marker, data in applist
                   if marker == "APP13" and data.startswith(PHOTOSHOP_SIGNATURE))
    found, offset = b"", 0
    while offset + 12 <= len(irb) and irb[offset:offset + 4] == b"8BIM":
        resource = struct.unpack_from(">H", irb, offset + 4)[0]
        name_length = irb[offset + 6]
        offset += 6 + name_length + 1 + (name_length + 1) % 2  # the name with its length byte, padded to even
        if offset + 4 > len(irb):
            break
        (size,) = struct.unpack_from(">I", irb, offset)
        data = irb[offset + 4 : offset + 4 + size]
        if len(data) < size:
            break
        if resource == _IPTC_RESOURCE:
            found += data
        offset += 4 + size + size % 2
    return found or None


def jpeg_iptc_segments(iptc: bytes) -> bytes:
    """APP13 segments holding ``iptc`` (IPTC-IIM records) as Photoshop's resource 0x0404,
    split over several segments where one cannot hold it."""
    irb = b"8BIM" + struct.pack(">HHI", _IPTC_RESOURCE, 0, len(iptc)) + iptc + b"\x00" * (len(iptc) % 2)
    step = _JPEG_SEGMENT_MAX - len(PHOTOSHOP_SIGNATURE)
    return b"".join(b"\xff\xed" + struct.pack(">H", 2 + len(PHOTOSHOP_SIGNATURE) + len(piece)) + PHOTOSHOP_SIGNATURE + piece
                    for piece in (irb[i : i + step] for i in range(0, len(irb), step)))


def insert_jpeg_segments(jpeg: bytes, segments: bytes) -> bytes:
    """An encoded JPEG with ``segments`` inserted after its leading APPn and comment
    segments (JFIF, EXIF, XMP, ICC), where readers look for APP13."""
    offset = 2  # SOI
    while offset + 4 <= len(jpeg) and jpeg[offset] == 0xFF and (0xE0 <= jpeg[offset + 1] <= 0xEF or jpeg[offset + 1] == 0xFE):
        offset += 2 + struct.unpack_from(">H", jpeg, offset + 2)[0]
    return jpeg[:offset] + segments + jpeg[offset:]


_TIFF_ICC_TAG = 34675  # InterColorProfile, type UNDEFINED


def add_tiff_metadata(tiff: bytes, icc_profile: bytes | None = None, exif: bytes | None = None) -> bytes:
    """``tiff`` (one image, as OpenCV writes 16-bit and float TIFFs, without metadata) with
    an ICC profile and the tags of an ``exif`` block (make, model, dates, the EXIF and GPS
    sub-IFDs; as Pillow's ``Exif.tobytes`` gives it) in its first IFD.

    The profile, the EXIF tags (serialised by Pillow for the place they land in, in the
    file's byte order) and a copy of the IFD holding the new entries are appended, and the
    header points at the copy: nothing already in the file moves, so every offset in it
    stays valid (the old IFD is left unused). The image's own tags win over the EXIF's;
    its layout tags are never taken from the EXIF. Pillow writes both for 8-bit TIFFs.
    """
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or struct.unpack(order + "H", tiff[2:4])[0] != 42:
        raise ValueError("not a classic TIFF")
    (ifd_offset,) = struct.unpack(order + "I", tiff[4:8])
    (count,) = struct.unpack(order + "H", tiff[ifd_offset : ifd_offset + 2])
    entries = {struct.unpack(order + "H", e[:2])[0]: e for e in (tiff[ifd_offset + 2 + 12 * i : ifd_offset + 14 + 12 * i] for i in range(count))}
    (next_ifd,) = struct.unpack(order + "I", tiff[ifd_offset + 2 + 12 * count : ifd_offset + 6 + 12 * count])
    body = tiff + b"\0" * (len(tiff) % 2)  # TIFF offsets are even
    if exif:
        tags = Image.Exif()
        tags.load(exif)
        for tag in (TIFF_LAYOUT_TAGS | {_TIFF_ICC_TAG}) & set(tags):
            del tags[tag]
        if len(tags):
            tags.endian = order
            block = tags.tobytes(len(body))[6 + 8 :]  # the IFD as if it stood at len(body): after "Exif\0\0" and a TIFF header
            (exif_count,) = struct.unpack(order + "H", block[:2])
            for i in range(exif_count):
                entry = block[2 + 12 * i : 14 + 12 * i]
                entries.setdefault(struct.unpack(order + "H", entry[:2])[0], entry)
            body += block + b"\0" * (len(block) % 2)
    if icc_profile:
        entries[_TIFF_ICC_TAG] = struct.pack(order + "HHII", _TIFF_ICC_TAG, 7, len(icc_profile), len(body))
        body += icc_profile + b"\0" * (len(icc_profile) % 2)
    ordered = [entries[tag] for tag in sorted(entries)]  # TIFF wants tags in ascending order
    new_ifd = struct.pack(order + "H", len(ordered)) + b"".join(ordered) + struct.pack(order + "I", next_ifd)
    return body[:4] + struct.pack(order + "I", len(body)) + body[8:] + new_ifd


_TIFF_FIELD_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 6: 1, 7: 1, 8: 2, 9: 4, 11: 4, 12: 8, 16: 8, 17: 8, 18: 8}  # bytes per value, by type


def _tiff_first_ifd(data: bytes) -> tuple[str, dict[int, bytes], int] | None:
    """(byte order, each tag's raw value bytes, offset of the next IFD) of a classic
    TIFF's first IFD, or None when ``data`` is not one or its IFD is cut."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    try:
        if order is None or struct.unpack(order + "H", data[2:4])[0] != 42:
            return None
        (ifd_offset,) = struct.unpack(order + "I", data[4:8])
        (count,) = struct.unpack(order + "H", data[ifd_offset : ifd_offset + 2])
        values: dict[int, bytes] = {}
        for i in range(count):
            entry = data[ifd_offset + 2 + 12 * i : ifd_offset + 14 + 12 * i]
            tag, kind, n = struct.unpack(order + "HHI", entry[:8])
            size = _TIFF_FIELD_SIZES.get(kind, 1) * n
            if size <= 4:
                values[tag] = entry[8 : 8 + size]
            else:
                (offset,) = struct.unpack(order + "I", entry[8:12])
                values[tag] = data[offset : offset + size]
        (next_ifd,) = struct.unpack(order + "I", data[ifd_offset + 2 + 12 * count : ifd_offset + 6 + 12 * count])
    except struct.error:
        return None
    return order, values, next_ifd


def tiff_header(data: bytes) -> tuple[int, int, bytes | None, bool] | None:
    """(width, height, ICC profile or None, whether another page follows) from the first
    IFD of a classic TIFF, or None when ``data`` is not one (or its header is broken: the
    decoder reports that).

    Pillow cannot open some TIFFs OpenCV decodes (three- and four-channel float32, as
    this project writes them), so their size check and profile are read here.
    """
    if (ifd := _tiff_first_ifd(data)) is None:
        return None
    order, values, next_ifd = ifd

    def number(tag: int) -> int:
        raw = values[tag]
        return struct.unpack(order + ("H" if len(raw) == 2 else "I"), raw)[0]

    try:
        return number(256), number(257), values.get(_TIFF_ICC_TAG) or None, next_ifd != 0
    except (struct.error, KeyError):
        return None


def tiff_tag(data: bytes, tag: int) -> bytes | None:
    """The raw value bytes of ``tag`` in a classic TIFF's first IFD (a TIFF, a DNG, a
    NEF), as stored; None where the file is not one or lacks the tag. Used for the IPTC
    tag: Photoshop types it LONG, and Pillow keeps its first number only."""
    ifd = _tiff_first_ifd(data)
    return (ifd[1].get(tag) or None) if ifd else None


def encode_grey_alpha_png(pixels: np.ndarray) -> bytes:
    """PNG colour type 4 (grey + alpha, 8 or 16 bits) from an H x W x 2 array.

    OpenCV writes only 1, 3 or 4 channels and Pillow no 16-bit grey + alpha, so
    this layout is encoded here: one IHDR, one IDAT of unfiltered rows, IEND.
    """
    height, width, _ = pixels.shape
    depth = 16 if pixels.dtype == np.uint16 else 8
    rows = pixels.astype(">u2" if depth == 16 else np.uint8).view(np.uint8).reshape(height, -1)
    scanlines = np.hstack([np.zeros((height, 1), np.uint8), rows])  # filter type 0 per row
    header = struct.pack(">IIBBBBB", width, height, depth, 4, 0, 0, 0)
    return (
        _PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 6))
        + _png_chunk(b"IEND", b"")
    )


def _boxes(data: bytes, start: int, end: int):
    """(type, payload start, payload end) of each ISO-BMFF box between ``start`` and ``end``."""
    while start + 8 <= end:
        size, kind = struct.unpack(">I4s", data[start : start + 8])
        header = 8
        if size == 1:  # a 64-bit size follows the type
            (size,) = struct.unpack(">Q", data[start + 8 : start + 16])
            header = 16
        elif size == 0:  # to the end of the enclosing box
            size = end - start
        if size < header or start + size > end:
            return
        yield kind, start + header, start + size
        start += size


def _child(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    return next(((a, b) for k, a, b in _boxes(data, start, end) if k == kind), None)


_NETPBM_WHITESPACE = b" \t\r\n\v\f"


def netpbm_maxval(data: bytes) -> int | None:
    """The largest sample value a Netpbm file declares (``P2``/``P3``/``P5``/``P6``: any
    of 1-65535; 1 for a bitmap, ``P1``/``P4``), or None for another format. OpenCV keeps
    the samples on that scale (a 12-bit PGM's white is 4095, a maxval-100 grey's 100),
    so the reader must know it: the header is its magic, width, height and maxval as
    decimal numbers between whitespace and ``#`` comments."""
    if len(data) < 2 or data[:1] != b"P" or data[1:2] not in b"123456":
        return None
    if data[1:2] in b"14":
        return 1
    numbers, position = [], 2
    while len(numbers) < 3 and position < min(len(data), 4096):
        byte = data[position : position + 1]
        if byte in _NETPBM_WHITESPACE:
            position += 1
        elif byte == b"#":  # a comment runs to the end of its line
            end = data.find(b"\n", position)
            position = len(data) if end < 0 else end + 1
        else:
            start = position
            while position < len(data) and data[position : position + 1].isdigit():
                position += 1
            if position == start:
                return None
            numbers.append(int(data[start:position]))
    return numbers[2] if len(numbers) == 3 and 0 < numbers[2] < 65536 else None


def avif_bit_depth(data: bytes) -> int | None:
    """Bits per sample an AVIF file declares (8, 10 or 12), from the ``pixi`` property of
    its ``meta`` box, or None. OpenCV decodes 10- and 12-bit AVIF to uint16 samples that
    keep that range (a 10-bit white is 1023), so the reader must know it."""
    path = [b"meta", b"iprp", b"ipco", b"pixi"]
    start, end = 0, len(data)
    for kind in path:
        found = _child(data, start, end, kind)
        if found is None:
            return None
        start, end = found
        if kind == b"meta":
            start += 4  # a full box: version and flags first
    return data[start + 5] if end - start >= 6 else None  # version/flags (4), channels (1), bits of the first channel

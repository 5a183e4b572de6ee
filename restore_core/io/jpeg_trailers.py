"""What a phone's JPEG holds after its image: a motion photo's video, an HDR gain map.

A Google (Pixel) or Samsung *motion photo* is a JPEG followed by the MP4 its camera
recorded around the shot; an *Ultra HDR* JPEG (Android 14 and later) is followed by a
second, small JPEG, the gain map that brightens the picture on an HDR screen. Decoders
read the first image and stop, so a restored copy written from the pixels alone lost
both without a word, while its XMP still announced them.

Both formats locate what follows the picture from the end of the file (Google's
``Container:Directory`` item lengths and the legacy ``GCamera:MicroVideoOffset``;
Samsung's SEF trailer ending in ``SEFT``), not from its start. A motion photo's video
therefore stays valid appended unchanged after a restored JPEG of another length:
:func:`read_trailer` keeps it for a JPEG copy. A gain map is not kept (it was computed
for the pixels before restoration, and Ultra HDR readers also find it through offsets
in the first image's MPF segment, which the copy does not carry): its loss is said, and
the XMP that announces it is taken out (:func:`xmp_without_trailer`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_MOTION_PHOTO_XMP = (b'GCamera:MotionPhoto="1"', b'GCamera:MicroVideo="1"', b"<GCamera:MotionPhoto>1<", b"<GCamera:MicroVideo>1<")
_GAIN_MAP_XMP = (b"hdrgm:Version", b'Item:Semantic="GainMap"')
_SAMSUNG_MOTION = b"MotionPhoto_Data"
_SAMSUNG_TRAILER_END = b"SEFT"

# XMP that announces what follows the picture: Google's camera and container properties
# (attributes or elements) and the gain map's version.
_ANNOUNCING_ATTRIBUTES = re.compile(rb'\s(?:GCamera:(?:MotionPhoto|MicroVideo)\w*|hdrgm:\w+)="[^"]*"')
_ANNOUNCING_ELEMENTS = re.compile(
    rb"<(GCamera:(?:MotionPhoto|MicroVideo)\w*|hdrgm:\w+|Container:Directory)\b[^>]*?(?:/>|>.*?</\1>)", re.DOTALL)


def jpeg_image_length(data: bytes) -> int | None:
    """Bytes of the JPEG image ``data`` begins with, through its end-of-image marker,
    found by walking the markers (and the entropy-coded scans, where a 0xFF byte is
    followed by 0x00 or a restart marker); None when ``data`` is not a JPEG or ends first."""
    if not data.startswith(b"\xff\xd8"):
        return None
    position = 2
    while True:
        position = data.find(b"\xff", position)
        if position < 0 or position + 1 >= len(data):
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
        elif marker == 0xD9:  # end of image
            return position + 2
        elif marker == 0x00 or 0xD0 <= marker <= 0xD7 or marker == 0x01:  # stuffed byte, restart, TEM: no length
            position += 2
        else:
            if position + 4 > len(data):
                return None
            position += 2 + int.from_bytes(data[position + 2:position + 4], "big")  # a segment; a scan's data follows SOS


@dataclass(frozen=True)
class JpegTrailer:
    """What follows a JPEG's picture: ``video`` (the bytes to append to a JPEG copy, as
    they were) when it is a motion photo's alone; ``lost``: what no copy keeps, in words."""

    video: bytes | None = None
    lost: str | None = None


def read_trailer(data: bytes, xmp: bytes | None) -> JpegTrailer | None:
    """The :class:`JpegTrailer` of the JPEG ``data`` whose XMP packet is ``xmp``; None
    when nothing a phone announces follows the picture (a camera's MPO previews, which
    are not content, and plain JPEGs)."""
    xmp = xmp or b""
    announced = any(sign in xmp for sign in _MOTION_PHOTO_XMP)
    gain_map = any(sign in xmp for sign in _GAIN_MAP_XMP)
    samsung = data.rstrip(b"\0").endswith(_SAMSUNG_TRAILER_END)
    if not (announced or gain_map or samsung):  # nothing to look for: the picture is not walked (4.6 ms at 12 MP)
        return None
    length = jpeg_image_length(data)
    if length is None or length >= len(data):
        return None
    trailer = data[length:]
    motion = announced or (samsung and _SAMSUNG_MOTION in trailer)
    if gain_map:
        what = "its HDR gain map (Ultra HDR; the copy shows as SDR)" + (" and its motion photo video" if motion else "")
        return JpegTrailer(None, f"{what} not kept")
    return JpegTrailer(trailer) if motion else None


def xmp_without_trailer(xmp: bytes | None) -> bytes | None:
    """``xmp`` without what announces a motion photo's video or an HDR gain map, for a
    copy that holds neither: viewers would look for them past the copy's picture."""
    if not xmp:
        return xmp
    return _ANNOUNCING_ELEMENTS.sub(b"", _ANNOUNCING_ATTRIBUTES.sub(b"", xmp))

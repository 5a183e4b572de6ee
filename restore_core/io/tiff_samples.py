"""A TIFF page's samples as stored, where OpenCV's libtiff changes them, and written back.

OpenCV reads an 8-bit RGBA page whose alpha is unassociated (as Pillow, GIMP and
Photoshop write it) with its colours multiplied by the alpha; a grey + alpha page as
8-bit grey (the alpha plane, and half of a 16-bit page's bits, lost); a 16-bit
min-is-white page as its negative; a 16-bit RGB page stored plane by plane as
garbage; float grey + alpha and float16 pages not at all. None of it said a word.

tifffile decodes such pages exactly (:func:`exactly_decodable`) where it has the codec
without imagecodecs (none, Deflate, PackBits, LZMA): grey or RGB, at most one alpha
plane, unsigned 8/16-bit or float. OpenCV decodes the others (LZW, JPEG, palette, CMYK),
an 8-bit unassociated alpha's colours then divided back (:func:`unpremultiply`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import tifffile

ALPHA_KINDS = {1: "assocalpha", 2: "unassalpha"}  # TIFF ExtraSamples values of an alpha plane
_UNASSOCIATED_ALPHA = 2
_EXACT_LAYOUTS = (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.MINISWHITE, tifffile.PHOTOMETRIC.RGB)
_EXACT_TYPES = (np.uint8, np.uint16, np.float16, np.float32, np.float64)


def exactly_decodable(page: tifffile.TiffPage) -> bool:
    """Whether tifffile decodes ``page`` into samples restore takes: grey or RGB with at
    most one alpha plane, unsigned 8/16-bit or float, not chroma-subsampled, compressed
    with a codec it has without imagecodecs."""
    if page.photometric not in _EXACT_LAYOUTS or page.is_subsampled or (page.is_tiled and page.imagedepth > 1):
        return False
    extra = page.samplesperpixel - (3 if page.photometric == tifffile.PHOTOMETRIC.RGB else 1)
    if extra not in (0, 1) or (extra == 1 and (page.extrasamples or (0,))[0] not in ALPHA_KINDS):
        return False
    if page.dtype is None or page.dtype not in _EXACT_TYPES:
        return False
    if page.predictor not in (tifffile.PREDICTOR.NONE, tifffile.PREDICTOR.HORIZONTAL):  # the float one needs imagecodecs
        return False
    try:
        tifffile.TIFF.DECOMPRESSORS[page.compression]  # raises where imagecodecs would be needed (LZW, JPEG)
    except (KeyError, ValueError, ImportError, TypeError):
        return False
    return True


def exact_samples(page: tifffile.TiffPage) -> np.ndarray:
    """``page``'s samples in RGB order, H x W or H x W x C (planes interleaved), of the
    stored type, a min-is-white page inverted (min-is-black: the same picture); not yet
    turned by its orientation tag. tifffile's errors (a truncated strip) are raised."""
    array = page.asarray()
    if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and array.ndim == 3:
        array = np.moveaxis(array, 0, -1)
    if page.photometric == tifffile.PHOTOMETRIC.MINISWHITE:
        array = (np.iinfo(array.dtype).max - array) if array.dtype.kind == "u" else (1.0 - array).astype(array.dtype)
    return np.ascontiguousarray(array)


def premultiplied_by_opencv(page: tifffile.TiffPage) -> bool:
    """Whether OpenCV gives ``page``'s colours multiplied by its alpha: 8-bit RGB with
    an unassociated alpha plane (libtiff's RGBA reader associates it)."""
    return (page.photometric == tifffile.PHOTOMETRIC.RGB and page.samplesperpixel == 4 and page.bitspersample == 8
            and (page.extrasamples or (0,))[0] == _UNASSOCIATED_ALPHA)


def unpremultiply(pixels: np.ndarray) -> np.ndarray:
    """8-bit colour-and-alpha ``pixels`` (alpha last; BGRA or RGBA alike) with the colours
    divided back by the alpha, as stored before libtiff multiplied them (to within a
    level where the alpha is above half; colour under a zero alpha is gone)."""
    alpha = pixels[..., 3:].astype(np.float32)
    colour = np.where(alpha > 0, pixels[..., :3] * (255.0 / np.maximum(alpha, 1.0)), 0.0)
    return np.dstack([np.clip(np.rint(colour), 0, 255).astype(np.uint8), pixels[..., 3:]])


@dataclass(frozen=True)
class FirstPage:
    """What tifffile tells of a TIFF's first page that OpenCV's reading would change."""

    width: int
    height: int
    exact: np.ndarray | None  # its samples (:func:`exact_samples`) where tifffile decodes it exactly, else None
    premultiplied_by_opencv: bool = False  # OpenCV's colours are multiplied by the alpha: divide them back
    alpha_dropped_by_opencv: bool = False  # grey + alpha OpenCV reads as grey (LZW, JPEG): said in a note


def first_page(data: bytes, max_pixels: int) -> FirstPage | None:
    """:class:`FirstPage` of the TIFF ``data``; None where tifffile cannot parse it
    (OpenCV's reading stands, or its error). A page over ``max_pixels`` is not decoded:
    the caller refuses it from its size."""
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tiff:
            page = tiff.pages[0]
            size = (page.imagewidth, page.imagelength)
            if page.imagewidth * page.imagelength > max_pixels:
                return FirstPage(*size, None)
            if exactly_decodable(page):
                try:
                    return FirstPage(*size, exact_samples(page))
                except Exception:  # noqa: BLE001 - a truncated strip: OpenCV's reading, or its error
                    return FirstPage(*size, None)
            grey_alpha = page.photometric == tifffile.PHOTOMETRIC.MINISBLACK and page.samplesperpixel == 2
            return FirstPage(*size, None, premultiplied_by_opencv(page), grey_alpha)
    except Exception:  # noqa: BLE001
        return None


def encode_grey_alpha_tiff(pixels: np.ndarray, dpi: tuple[float, float] | None = None) -> bytes:
    """A one-page TIFF of H x W x 2 grey + alpha ``pixels`` (8 or 16-bit, or float),
    Deflate-compressed (lossless), with its print resolution: neither OpenCV nor Pillow
    writes this layout above 8 bits."""
    buffer = io.BytesIO()
    resolution = {"resolution": dpi, "resolutionunit": "INCH"} if dpi else {}
    tifffile.imwrite(buffer, pixels, photometric="minisblack", planarconfig="contig", extrasamples=("unassalpha",),
                     compression="zlib", metadata=None, **resolution)
    return buffer.getvalue()

"""A TIFF page's stored samples as tifffile decodes them, where OpenCV's libtiff changes
them: grey + alpha pages, which OpenCV reads as 8-bit grey (the alpha plane, and half of
a 16-bit page's bits, lost without a word), and are written back here for the same reason."""

from __future__ import annotations

import io

import numpy as np
import tifffile

ALPHA_KINDS = {1: "assocalpha", 2: "unassalpha"}  # TIFF ExtraSamples values of an alpha plane


def stored_samples(page: tifffile.TiffPage) -> np.ndarray:
    """``page``'s samples, H x W or H x W x C, as stored (planes interleaved); tifffile's
    errors (a codec it lacks, a truncated strip) are raised."""
    array = page.asarray()
    if page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and array.ndim == 3:
        array = np.moveaxis(array, 0, -1)
    return np.ascontiguousarray(array)


def grey_alpha_samples(data: bytes) -> np.ndarray | None:
    """The first page of the TIFF ``data`` as H x W x 2 (grey, alpha) in its stored type,
    or None when it is not min-is-black grey with one alpha plane, or tifffile cannot
    decode it (LZW and JPEG need imagecodecs, not installed): OpenCV's reading stands then."""
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tiff:
            page = tiff.pages[0]
            if (page.photometric != tifffile.PHOTOMETRIC.MINISBLACK or page.samplesperpixel != 2
                    or (page.extrasamples or (0,))[0] not in ALPHA_KINDS):
                return None
            array = stored_samples(page)
    except Exception:  # noqa: BLE001 - OpenCV's reading stands
        return None
    return array if array.ndim == 3 and array.shape[2] == 2 else None


def encode_grey_alpha_tiff(pixels: np.ndarray, icc_profile: bytes | None = None,
                           dpi: tuple[float, float] | None = None) -> bytes:
    """A one-page TIFF of H x W x 2 grey + alpha ``pixels`` (8 or 16-bit, or float), Deflate
    compressed (lossless), with its ICC profile and print resolution: neither OpenCV nor
    Pillow writes this layout above 8 bits."""
    buffer = io.BytesIO()
    resolution = {"resolution": dpi, "resolutionunit": "INCH"} if dpi else {}
    tifffile.imwrite(buffer, pixels, photometric="minisblack", planarconfig="contig", extrasamples=("unassalpha",),
                     compression="zlib", iccprofile=icc_profile, metadata=None, **resolution)
    return buffer.getvalue()

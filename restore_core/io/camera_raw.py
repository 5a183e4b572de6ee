"""Camera raw photographs (DNG, CR2, CR3, NEF, ARW, RAF, ORF, RW2, ...), developed by
LibRaw through the optional rawpy package (``pip install 'restore[raw]'``).

A raw file holds the sensor's colour mosaic, not an image. It is developed here once,
the way dcraw develops it by default but for the choices made for restoration: the
camera's own white balance (dcraw ``-w``), 16 bits per sample (``-6``), the exposure as
recorded (``-W``: no automatic brightening, which would depend on each picture's
histogram and develop the frames of a burst or a time-lapse differently) and the sRGB
tone curve (``-g 2.4 12.92``, so that an untagged 16-bit output reads correctly as
sRGB); AHD demosaicing and the camera's colour matrix into sRGB primaries; turned
upright by the file's own rotation. No format restore writes is a raw file: the
restored copy is a 16-bit TIFF by default (:data:`RAW_OUTPUT`), or what ``--ext`` names.

The noise a denoiser meets in a developed raw file is the sensor's, shaped by
demosaicing (correlated between neighbouring pixels, stronger in the shadows), not the
white Gaussian noise the shipped denoisers were trained on. Asked to
(``measure_noise``), :func:`develop` also measures it: the sensor's noise is fitted on
the mosaic (:mod:`restore_core.degradations.sensor_noise`), one more draw of it is
added to the mosaic, and the file is developed again; the difference between the two
developments is what development makes of that noise, and its standard deviation,
times :data:`TOLD_PER_DEVELOPED_STD`, is the level a denoiser is told
(:func:`noise_level_to_tell`).
"""

from __future__ import annotations

import importlib.util
import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

AVAILABLE = importlib.util.find_spec("rawpy") is not None

RAW_EXTENSIONS = (
    ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf", ".rw2", ".rwl",
    ".pef", ".srw", ".3fr", ".fff", ".iiq", ".mos", ".erf", ".kdc", ".dcr", ".mrw", ".x3f",
)
RAW_OUTPUT = ".tif"  # 16 bits per sample, like the development

# Metadata worth carrying from a raw file's first IFD to the restored copy: who, what
# camera, when, where. Its layout tags, DNG tags and sub-IFDs describe the mosaic, not the
# developed image, and are left behind.
_KEPT_IFD0_TAGS = frozenset({270, 271, 272, 306, 315, 33432})  # description, make, model, date, artist, copyright
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_EXIF_TAGS_LEFT_OUT = frozenset({0x927C, 0xA005})  # maker note (offsets into the raw file), interoperability IFD

_DEVELOPMENT = dict(use_camera_wb=True, output_bps=16, gamma=(2.4, 12.92), no_auto_bright=True)
# The level (0-255) to tell a denoiser trained on white Gaussian noise, per unit of the
# standard deviation (0-255) of a developed raw file's noise. Correlated noise needs a
# level above its per-pixel deviation: on 37 DNGs made from 4 McMaster and 3 CBSD68
# photographs (white balance gains 2 and 1.54 for red and blue; Poisson-Gaussian noise of
# gain 0.0005 to 0.015, or Gaussian of 1 or 2 % of the white level), the factor that
# served `infoflow-denoise` best was 2.25 measured from the photographs and 1.85 from the
# noiseless developments; 2.0 is within 0.03 dB of either (session 37).
TOLD_PER_DEVELOPED_STD = 2.0


class RawError(ValueError):
    """LibRaw could not open or develop the file; the message says why."""


@dataclass(frozen=True)
class Developed:
    """A developed raw file: ``pixels`` uint16 H x W x 3, sRGB, upright; ``noise_level``
    the level to tell a denoiser (0-255 scale), when measured and measurable."""

    pixels: np.ndarray
    noise_level: float | None = None


def develop(data: bytes, check_size: Callable[[int, int], None], measure_noise: bool = False) -> Developed:
    """The developed photograph, and with ``measure_noise`` its noise level (which
    costs a second development).

    ``check_size(width, height)`` is called with the developed size before any
    development (LibRaw has read the header only), so that an over-large photograph can
    be refused first (it raises)."""
    import rawpy

    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            sizes = raw.sizes
            turned = sizes.flip in (5, 6)  # LibRaw's flips 5 and 6 are quarter turns
            check_size(sizes.height if turned else sizes.width, sizes.width if turned else sizes.height)
            pixels = raw.postprocess(**_DEVELOPMENT)
            return Developed(pixels, _measured_noise_level(raw, pixels) if measure_noise else None)
    except rawpy.LibRawError as error:  # every LibRaw failure (unsupported camera, truncated data, ...)
        raise RawError(f"cannot develop camera raw: {_cause(error)}") from None


def _measured_noise_level(raw, developed: np.ndarray) -> float | None:
    """:func:`noise_level_to_tell`, or None where it fails: the measurement is a better
    guess at the level, never a reason not to restore a photograph that developed."""
    try:
        return noise_level_to_tell(raw, developed)
    except Exception:  # noqa: BLE001 - a LibRaw quirk of one camera; the denoiser then estimates the level itself
        return None


def noise_level_to_tell(raw, developed: np.ndarray) -> float | None:
    """The level to tell a denoiser for ``developed``, the development of the open rawpy
    file ``raw``: the sensor's noise is fitted on the mosaic, one more (seeded) draw of
    it added there, the mosaic developed again, and the standard deviation of the
    difference, on the 0-255 scale, times :data:`TOLD_PER_DEVELOPED_STD`. None for
    mosaics other than 2 x 2 Bayer ones (Fujifilm's X-Trans, Foveon, linear DNGs) and
    images too small or too uniform to fit. ``raw``'s mosaic is changed in place."""
    from restore_core.degradations.sensor_noise import draw_sensor_noise, estimate_sensor_noise  # torch: not for --help

    if raw.raw_pattern is None or raw.raw_pattern.shape != (2, 2) or raw.raw_image_visible.ndim != 2:
        return None
    samples = raw.raw_image_visible
    corner = raw.raw_colors_visible[:2, :2]
    black_of = np.asarray(raw.black_level_per_channel, dtype=np.float32)
    # (rows, columns, black, white - black) of each of the four colour-filter positions;
    # done phase by phase, in place, so that a 24-megapixel file needs no per-sample copies of them.
    phases = [(slice(dy, None, 2), slice(dx, None, 2), black_of[corner[dy, dx]], np.float32(raw.white_level) - black_of[corner[dy, dx]])
              for dy in (0, 1) for dx in (0, 1)]
    mosaic = samples.astype(np.float32)
    for rows, cols, black, scale in phases:
        mosaic[rows, cols] -= black
        mosaic[rows, cols] /= scale
    noise = estimate_sensor_noise(mosaic)
    if noise is None:
        return None
    extra = draw_sensor_noise(mosaic, noise)
    del mosaic
    for rows, cols, _, scale in phases:
        extra[rows, cols] *= scale
    extra += samples
    np.clip(np.rint(extra, out=extra), 0, np.iinfo(samples.dtype).max, out=extra)
    samples[:] = extra
    del extra
    again = raw.postprocess(**_DEVELOPMENT)
    deviations = [np.std(again[..., c].astype(np.float32) - developed[..., c].astype(np.float32)) for c in range(3)]
    return TOLD_PER_DEVELOPED_STD * float(np.sqrt(np.mean(np.square(deviations)))) * 255.0 / 65535.0


def _cause(error: Exception) -> str:
    """LibRaw's failure in words: what it means for the file, then LibRaw's own message."""
    import rawpy

    meaning = (
        "not a raw format or camera LibRaw knows" if isinstance(error, rawpy.LibRawFileUnsupportedError)
        else "truncated or unreadable file" if isinstance(error, rawpy.LibRawIOError)
        else "corrupt raw data" if isinstance(error, rawpy.LibRawDataError)
        else "LibRaw failed"
    )
    detail = error.args[0] if error.args else ""
    detail = detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
    return f"{meaning} (LibRaw: {detail})" if detail else meaning


def exif_of(data: bytes) -> bytes | None:
    """EXIF for the restored copy, read from a TIFF-based raw file's first IFD (DNG, NEF,
    CR2, ARW, PEF, ...): description, make, model, date, artist, copyright, the EXIF
    sub-IFD (exposure, lens, time taken; without the maker note) and GPS; None where the
    file is not TIFF-based (CR3, RAF, ORF, RW2) or holds none of them."""
    if data[:4] not in (b"II*\0", b"MM\0*"):
        return None
    try:
        source = Image.Exif()
        source.load(data)
        kept = Image.Exif()
        for tag in _KEPT_IFD0_TAGS & set(source):
            kept[tag] = source[tag]
        for pointer, left_out in ((_EXIF_IFD, _EXIF_TAGS_LEFT_OUT), (_GPS_IFD, frozenset())):
            if pointer in source and (entries := {tag: v for tag, v in source.get_ifd(pointer).items() if tag not in left_out}):
                kept[pointer] = entries  # Pillow writes a dict under a pointer tag as that sub-IFD
        return kept.tobytes() if len(kept) else None
    except Exception:  # noqa: BLE001 - metadata is best-effort; the pixels decide whether the file is read
        return None

"""Reading and writing images without losing what the user had.

Pixels are decoded by OpenCV (it handles 16-bit RGB PNG and TIFF, which Pillow
truncates); Pillow reads only the header, for the size check, EXIF orientation,
ICC profile and EXIF bytes (what neither covers is read and written byte by byte
in :mod:`.containers`). The model always sees float32 RGB in [0, 1]; the
alpha channel, bit depth and channel layout travel beside it in
:class:`LoadedImage` and are put back by :func:`encode_image`. Camera raw files are
developed by LibRaw instead (:mod:`.camera_raw`) and read only: their restored copies
are TIFFs (:func:`output_suffix`).

Writes are atomic (:mod:`.files`): a crash or a concurrent writer never leaves a
half-written image.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import stat
import warnings
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import cv2
import numpy as np
from PIL import Image, JpegImagePlugin

from restore_core.io import camera_raw, jpeg_xl
from restore_core.io.containers import (
    PNG_XMP_KEYWORD,
    TIFF_IPTC_TAG,
    TIFF_LAYOUT_TAGS,
    add_png_metadata,
    add_tiff_metadata,
    avif_bit_depth,
    encode_grey_alpha_png,
    icc_colour_space,
    insert_jpeg_segments,
    jpeg_iptc_segments,
    netpbm_maxval,
    photoshop_iptc,
    png_exif,
    png_stores_grey_alpha,
    png_chunks_to_keep,
    tiff_header,
    tiff_tag,
    webp_is_lossless,
)
from restore_core.io.files import atomic_write_bytes
from restore_core.io.gif import decode_gif, encode_gif, gif_losses
from restore_core.io.jpeg_trailers import read_trailer, xmp_without_trailer
from restore_core.io.tiff_samples import encode_grey_alpha_tiff, first_page, unpremultiply

try:  # OpenCV's own messages ("PNG input buffer is incomplete", "IHDR chunk shall be first") would duplicate our one-line errors
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
except AttributeError:  # builds without the logging utilities
    pass



def _avif_works() -> bool:
    """Whether this install reads and writes AVIF: OpenCV decodes it (5.x wheels have
    libavif) and Pillow encodes it (11.3 and later), metadata included."""
    try:
        buffer = io.BytesIO()
        Image.new("RGB", (2, 2)).save(buffer, format="AVIF")
        return cv2.imdecode(np.frombuffer(buffer.getvalue(), np.uint8), cv2.IMREAD_UNCHANGED) is not None
    except Exception:  # noqa: BLE001 - any missing codec means no AVIF
        return False


# A 1x1 grey JPEG 2000 codestream (as OpenJPEG 2.5 writes it, losslessly), decoded once to
# learn whether this OpenCV reads JPEG 2000: its wheels bundle OpenJPEG.
_JPEG2000_PROBE = bytes.fromhex(
    "ff4fff51002900000000000100000001000000000000000000000001000000010000000000000000000107010"
    "1ff52000c00000001000004040001ff5c00044040ff640025000143726561746564206279204f70656e4a504547"
    "2076657273696f6e20322e352e34ff90000a0000000000120001ff93df800807ffd9"
)


def _jpeg2000_reads() -> bool:
    """Whether OpenCV decodes JPEG 2000 here (0.9 ms, once)."""
    try:
        return cv2.imdecode(np.frombuffer(_JPEG2000_PROBE, np.uint8), cv2.IMREAD_UNCHANGED) is not None
    except cv2.error:
        return False


# HEIC/HEIF (iPhone photos) through the optional pillow-heif package (`pip install
# 'restore[heic]'`): decoded and encoded by Pillow, since OpenCV has no HEVC image codec.
_HEIF_AVAILABLE = importlib.util.find_spec("pillow_heif") is not None
_HEIF_NAMES = (".heic", ".heif", ".hif")  # .hif: the 10-bit HEIF of Canon, Sony and Fujifilm cameras
_HEIF_EXTENSIONS = _HEIF_NAMES if _HEIF_AVAILABLE else ()


@lru_cache(maxsize=None)
def _heif_ready() -> bool:
    """Register pillow-heif's opener with Pillow (once, on first need: 27 ms of import)."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    return True


def _looks_like_heif(data: bytes) -> bool:
    """An ISO-BMFF file whose brand is one of HEIF's (``ftypheic``, ``ftypmif1``, ...)."""
    return data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")


# Other names of formats read and written, each encoded as the format it names: JPEG's
# (browsers on Windows save photos as .jfif) and Netpbm's (.ppm colour, .pgm grey, .pnm
# either; 8 or 16 bits, classic test images and scientific pipelines) and an animated PNG's (.apng).
_ENCODED_AS = {".jpe": ".jpg", ".jfif": ".jpg", ".jif": ".jpg", ".ppm": ".pnm", ".pgm": ".pnm", ".apng": ".png"}
# Formats read and written.
SUPPORTED_EXTENSIONS = ((".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif") + ((".avif",) if _avif_works() else ())
                        + _HEIF_EXTENSIONS + jpeg_xl.EXTENSIONS + (".pnm",) + tuple(_ENCODED_AS))
# Formats read, never written: camera raw files, developed on read (restored copies are TIFFs).
READ_ONLY_EXTENSIONS = camera_raw.RAW_EXTENSIONS if camera_raw.AVAILABLE else ()
# Formats read whose copies are written as PNG (output_suffix): a Netpbm bitmap (.pbm:
# one bit a pixel), whose restored grey levels it cannot hold; JPEG 2000 (archives' and
# libraries' scans, the Internet Archive's books), which OpenCV reads but cannot write
# below some size, and Pillow writes without 16-bit colour.
_JPEG2000_EXTENSIONS = (".jp2", ".j2k") if _jpeg2000_reads() else ()
READ_AS_PNG_EXTENSIONS = (".pbm",) + _JPEG2000_EXTENSIONS
READABLE_EXTENSIONS = SUPPORTED_EXTENSIONS + READ_ONLY_EXTENSIONS + READ_AS_PNG_EXTENSIONS


def encoder_extension(extension: str) -> str:
    """The extension whose encoder writes a file named with ``extension``: ``.jpg`` for
    ``.jfif``, ``.pnm`` (colour or grey, as the pixels are) for ``.ppm`` and ``.pgm``;
    the extension itself, lower-cased, otherwise."""
    extension = extension.lower()
    return _ENCODED_AS.get(extension, extension)


# Image files met in photo folders that this project cannot read: said, not skipped in silence.
UNREADABLE_FORMATS = {
    ".heic": "HEIC", ".heif": "HEIF", ".hif": "HEIF", ".avif": "AVIF (no codec in this OpenCV/Pillow)", ".jxl": "JPEG XL", ".gif": "GIF",
    ".jp2": "JPEG 2000", ".j2k": "JPEG 2000", ".jpx": "JPEG 2000", ".exr": "OpenEXR", ".hdr": "Radiance HDR",
    ".pfm": "PFM (float)", ".psd": "Photoshop", ".tga": "TGA", ".ico": "icon", ".svg": "SVG (vector)", ".pcx": "PCX",
    ".qoi": "QOI", ".dds": "DDS",
} | dict.fromkeys(camera_raw.RAW_EXTENSIONS, "camera raw")
UNREADABLE_FORMATS = {ext: name for ext, name in UNREADABLE_FORMATS.items() if ext not in READABLE_EXTENSIONS}


def how_to_read(extensions: Iterable[str]) -> str:
    """What to do about files of these unreadable ``extensions``."""
    extensions, hint = set(extensions), "convert to PNG, TIFF or JPEG first"
    if set(_HEIF_NAMES) & extensions:
        hint += " (HEIC/HEIF: pip install 'restore[heic]' adds them)"
    if ".jxl" in extensions:
        hint += f" (JPEG XL: {jpeg_xl.INSTALL_HINT} adds it)"
    if set(camera_raw.RAW_EXTENSIONS) & extensions:
        hint += " (camera raw: pip install 'restore[raw]' develops them)"
    return hint


def output_suffix(source: Path) -> str:
    """The extension of ``source``'s restored copy when none is asked for: its own;
    :data:`camera_raw.RAW_OUTPUT` (16-bit TIFF) for a format read but not written; PNG
    (lossless, any depth) for a file named without an image extension, read by its
    content (``scan``, ``photo.jfif``), whose own suffix names no encoder."""
    if source.suffix.lower() in READ_ONLY_EXTENSIONS:
        return camera_raw.RAW_OUTPUT
    return source.suffix if source.suffix.lower() in SUPPORTED_EXTENSIONS else ".png"


DEFAULT_MAX_PIXELS = 200_000_000  # 200 MP, ~2.4 GB as float32 RGB

# Formats that can store 16 bits per channel (others get 8-bit output).
_SIXTEEN_BIT_FORMATS = {".png", ".tif", ".tiff", ".pnm"}
_FLOAT_FORMATS = {".tif", ".tiff"}  # 32-bit float samples (bit_depth 32)
_EXIF_ORIENTATION_TAG = 0x0112

# Pillow only reads headers here; the pixel budget is enforced by ``max_pixels``
# (checked from the header before any decoding), so Pillow's own bomb guard,
# which would warn or fail below a user's --max-pixels, is switched off.
Image.MAX_IMAGE_PIXELS = None


class ImageError(ValueError):
    """An image cannot be read or written; the message names the file and the cause.

    A ValueError, so that the commands that read data folders (train,
    attribute-filters) report it like any other bad-data error: one line, exit 2.
    """

    def __init__(self, path: os.PathLike | str, cause: str, errno: int | None = None) -> None:
        self.path = Path(path)
        self.cause = cause
        self.errno = errno  # the OS error behind a failed read or write, when there is one
        super().__init__(f"{path}: {cause}")


class WriteError(ImageError):
    """An encoded image could not be written (``reason``: the OS's word for why, e.g. "No
    space left on device"); the message names the file."""

    def __init__(self, path: os.PathLike | str, reason: str, errno: int | None = None) -> None:
        super().__init__(path, f"cannot write: {reason}", errno)
        self.reason = reason


@dataclass
class LoadedImage:
    """A decoded image: ``rgb`` is float32 H x W x 3 in [0, 1] for the model.

    ``layout`` is ``"grey"``, ``"rgb"``, ``"grey+alpha"`` or ``"rgba"`` as stored
    in the file; ``alpha`` is the untouched alpha plane (original dtype) or None.
    ``bit_depth`` is 8 or 16 for integer samples, 32 for floating-point ones (TIFF),
    whose values the model sees clipped to [0, 1]. ``read_note`` says what reading
    changed that the restored copy cannot give back (a CMYK image comes out RGB).
    ``noise_level`` is the level (0-255 scale) to tell a denoiser, measured from a camera
    raw file's own sensor data when the reader was asked to (``measure_noise``).
    """

    rgb: np.ndarray
    layout: str
    bit_depth: int
    alpha: np.ndarray | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None
    source_format: str = ""
    read_note: str | None = None
    noise_level: float | None = None
    xmp: bytes | None = None  # the XMP packet (ratings, keywords, captions, rights), its orientation set to 1
    dpi: tuple[float, float] | None = None  # print resolution (a scan's 300 dpi)
    png_chunks: tuple[bytes, ...] = ()  # a PNG's own colour (gAMA, cHRM, sRGB, cICP) and text chunks, whole: written back into PNG outputs
    iptc: bytes | None = None  # IPTC-IIM records (caption, keywords, credit) of a JPEG or TIFF: written into JPEG and TIFF outputs
    comment: bytes | None = None  # a JPEG's or a GIF's comment: written into JPEG and GIF outputs
    # Pillow save options that write the source's own format as the source was written
    # (a JPEG's chroma subsampling, a WebP's losslessness); used for an output of that format.
    encoder_options: dict[str, Any] = field(default_factory=dict)
    # A motion photo's video, which follows its picture in the file: appended to a JPEG
    # copy as it came (io.jpeg_trailers); other formats cannot hold it.
    trailer: bytes | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.rgb.shape[0], self.rgb.shape[1]


def apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip ``array`` (H x W [x C]) so that EXIF ``orientation`` becomes 1."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
        7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
        8: lambda a: np.swapaxes(a, 0, 1)[::-1],
    }
    op = ops.get(orientation)
    return np.ascontiguousarray(op(array)) if op else array


# Sample types OpenCV's colour conversions take; others (float64 TIFF) go through NumPy.
_CV_CONVERTIBLE = (np.uint8, np.uint16, np.float32)


def _bgr_to_rgb(bgr: np.ndarray) -> np.ndarray:
    """Contiguous RGB from OpenCV's BGR or BGRA (alpha dropped). ``cv2.cvtColor`` is
    7x faster than NumPy's reversed-stride copy on a 1280x720 image, same values."""
    if bgr.dtype in _CV_CONVERTIBLE:
        return cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGRA2RGB if bgr.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(bgr[..., 2::-1])


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    """H x W x 3 with the grey plane in every channel."""
    if grey.dtype in _CV_CONVERTIBLE:
        return cv2.cvtColor(np.ascontiguousarray(grey), cv2.COLOR_GRAY2RGB)
    return np.repeat(grey[..., None], 3, axis=2)


def _to_unit_float(array: np.ndarray) -> tuple[np.ndarray, int]:
    # np.divide with dtype: one float32 buffer, no intermediate copy (matters at 100 MP).
    if array.dtype == np.uint8:
        return np.divide(array, 255.0, dtype=np.float32), 8
    if array.dtype == np.uint16:
        return np.divide(array, 65535.0, dtype=np.float32), 16
    if array.dtype in (np.float16, np.float32, np.float64):
        # Values beyond [0, 1] are clipped (an HDR float TIFF: infinities too); a NaN has
        # no value to clip to, and reached the model, whose output was then blamed.
        unit = np.clip(array.astype(np.float32), 0.0, 1.0)
        missing = int(np.count_nonzero(np.isnan(unit)))
        if missing:
            raise ValueError(f"{missing} sample(s) are NaN (not a number): no value to restore them from")
        return unit, 32
    raise ValueError(f"unsupported sample type {array.dtype}")


# Pages and animation frames are content: restoring the first alone would lose the
# rest. (A camera JPEG's extra MPO frames are previews or depth maps: not refused.)
_FORMATS_WHOSE_FRAMES_ARE_IMAGES = {"tiff", "webp", "png", "gif", "avif"}


@lru_cache(maxsize=None)
def _opencv_turns_tiffs() -> bool:
    """Whether OpenCV's TIFF decoder already applies the orientation tag (5.1 does, for
    every sample type, even with IMREAD_UNCHANGED; its JPEG, PNG and WebP decoders do not).
    Turning such pixels again would undo or double the rotation. Probed once, on a 2x1
    TIFF tagged orientation 6 (rotate 90 degrees clockwise)."""
    probe = Image.new("RGB", (2, 1))
    exif = probe.getexif()
    exif[_EXIF_ORIENTATION_TAG] = 6
    buffer = io.BytesIO()
    probe.save(buffer, format="TIFF", exif=exif.tobytes())
    decoded = cv2.imdecode(np.frombuffer(buffer.getvalue(), np.uint8), cv2.IMREAD_UNCHANGED)
    return decoded is not None and decoded.shape[:2] == (2, 1)


# Auxiliary images a HEIF carries beside its picture, by what their URN holds (an iPhone's:
# urn:com:apple:photo:2020:aux:hdrgainmap, ...:2019:aux:semanticskinmatte, ...).
_HEIF_AUXILIARY_NAMES = (("hdrgainmap", "HDR gain map"), ("matte", "portrait matte"), ("depth", "depth map"),
                         ("disparity", "depth map"))


def heif_auxiliaries_lost(info: dict) -> str | None:
    """What a HEIF's copy does not keep of the images libheif lists beside its primary
    one (pillow-heif writes none): ``info`` is pillow-heif's (``aux``: URN -> ids,
    ``depth_images``). An iPhone photo carries an HDR gain map (without it the copy shows
    as SDR on an HDR screen), a portrait one its mattes and depth map too."""
    names = [next((name for key, name in _HEIF_AUXILIARY_NAMES if key in str(urn).lower()), "auxiliary image")
             for urn, ids in (info.get("aux") or {}).items() for _ in ids]
    names += ["depth map"] * len(info.get("depth_images") or ())
    if not names:
        return None

    def counted(name: str) -> str:  # "HDR gain map", "2 portrait mattes", "1 auxiliary image"
        count = names.count(name)
        return f"{count} {name}s" if count > 1 else f"1 {name}" if name == "auxiliary image" else name

    kinds = [counted(name) for name in dict.fromkeys(names)]
    what = kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + " and " + kinds[-1]
    return f"its {what} not kept" + ("; the copy shows as SDR" if "HDR gain map" in names else "")


def _decode_heif(data: bytes) -> tuple[np.ndarray | None, str | None]:
    """Pixels of a HEIC/HEIF in OpenCV's layout (grey, BGR or BGRA), or None: decoded by
    libheif through pillow-heif, already turned upright (the file's own rotation), at the
    file's depth: 8-bit, or 10/12-bit on the 16-bit scale (pillow-heif shifts them left,
    so a 10-bit white arrives as 65472; here it is 65535); and what of the images beside
    it the copy does not keep (:func:`heif_auxiliaries_lost`)."""
    import pillow_heif

    try:
        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=False)
        pixels, bits = np.asarray(heif), int(heif.info.get("bit_depth", 8))
        lost = heif_auxiliaries_lost(heif.info)
    except Exception:  # noqa: BLE001 - the caller reports an undecodable file
        return None, None
    if pixels.dtype == np.uint16 and bits < 16:
        pixels = np.round((pixels >> (16 - bits)) * (65535 / (2**bits - 1))).astype(np.uint16)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 3:
        pixels = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGBA2BGRA if pixels.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    return pixels, lost


def _decode_with_pillow(data: bytes) -> np.ndarray | None:
    """Pixels Pillow decodes (grey, grey + alpha, RGB or RGBA, in RGB order; 16-bit grey
    as uint16), or None."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            pixels = np.asarray(image)
    except Exception:  # noqa: BLE001 - the caller reports an undecodable file
        return None
    return pixels.astype(np.uint16) if pixels.dtype.kind in "iu" and pixels.dtype.itemsize == 2 else pixels


def _check_pixels(path: os.PathLike | str, width: int, height: int, max_pixels: int) -> None:
    """Refuse, from the header and before any decoding, an image over the pixel budget."""
    if width * height > max_pixels:
        raise ImageError(path, f"image is {width}x{height} = {width * height:,} pixels, over the limit of {max_pixels:,} (--max-pixels)")


@dataclass
class _Header:
    """What the header pass learns before any pixel is decoded."""

    fmt: str = ""  # Pillow's format name, lower case ("png", "tiff", "heif", ...); "" when unknown
    mode: str = ""  # Pillow's mode ("RGB", "CMYK", "I;16", ...)
    orientation: int = 1  # EXIF orientation, applied to the decoded pixels
    icc: bytes | None = None
    exif: bytes | None = None  # metadata to write back: orientation reset, TIFF layout tags left out
    transparent_grey: int | None = None  # a grey PNG's tRNS key: the one grey value that is see-through
    xmp: bytes | None = None
    dpi: tuple[float, float] | None = None
    png_chunks: tuple[bytes, ...] = ()
    iptc: bytes | None = None
    comment: bytes | None = None
    encoder_options: dict[str, Any] = field(default_factory=dict)
    images: int = 1  # a HEIF's top-level images (a collection, a burst): the primary one is decoded


def _read_header(data: bytes, path: os.PathLike | str, max_pixels: int) -> _Header:
    """Pillow's header pass (format, size check, frames, profile, EXIF), or a TIFF's first
    IFD read directly where Pillow cannot open the file (RGB float32)."""
    header = _Header()
    if _HEIF_AVAILABLE and _looks_like_heif(data):
        _heif_ready()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Corrupt EXIF data": metadata is best-effort, pixels decide below
            with Image.open(io.BytesIO(data)) as image:
                header.fmt, header.mode = (image.format or "").lower(), image.mode
                if header.fmt == "mpo":  # a JPEG with more images after it (a camera's previews, a gain map): its own
                    header.fmt = "jpeg"  # subsampling, IPTC and comment travel as a JPEG's do
                frames = getattr(image, "n_frames", 1)
                if frames > 1 and header.fmt in _FORMATS_WHOSE_FRAMES_ARE_IMAGES:
                    raise ImageError(path, f"has {frames} frames (multi-page or animated); only single-frame images are supported")
                header.images = frames
                _check_pixels(path, *image.size, max_pixels)
                header.icc = image.info.get("icc_profile")
                if header.fmt == "png" and image.mode in ("L", "I;16") and isinstance(image.info.get("transparency"), int):
                    header.transparent_grey = image.info["transparency"]
                kept = _metadata_to_keep(png_exif(image, data) if header.fmt == "png" else image.getexif(), header.fmt)
                header.orientation, header.exif = kept.orientation, kept.exif
                header.xmp = kept.xmp if header.fmt == "tiff" else _xmp_of(image)
                if header.fmt == "tiff":
                    header.iptc = tiff_tag(data, TIFF_IPTC_TAG)
                if header.fmt == "jpeg":
                    header.iptc, header.comment = photoshop_iptc(getattr(image, "applist", [])), image.info.get("comment") or None
                if header.fmt == "gif":
                    header.comment = image.info.get("comment") or None
                header.dpi = _print_resolution(image.info.get("dpi"))
                if header.fmt == "png":
                    header.png_chunks = png_chunks_to_keep(data)
                if header.fmt == "jpeg" and (sampling := JpegImagePlugin.get_sampling(image)) in (0, 1, 2):
                    header.encoder_options["subsampling"] = sampling  # 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0
                if header.fmt == "jpeg" and image.info.get("progressive"):  # the web's: shown coarse first while loading
                    header.encoder_options["progressive"] = True
                if header.fmt == "webp" and webp_is_lossless(data):
                    header.encoder_options["lossless"] = True
    except ImageError:
        raise
    except Exception:
        pass  # Pillow may not know the format; OpenCV decides.
    if not header.fmt and (tiff := tiff_header(data)) is not None:
        (width, height, header.icc, more_pages), header.fmt = tiff, "tiff"
        try:
            exif = Image.Exif()
            exif.load(data)
            header.orientation, header.exif, header.xmp = _metadata_to_keep(exif, "tiff")
            header.iptc = tiff_tag(data, TIFF_IPTC_TAG)
            header.dpi = _tiff_print_resolution(exif)
        except Exception:  # noqa: BLE001 - metadata is best-effort; the pixels decide
            pass
        if more_pages:
            raise ImageError(path, "has more than one page (multi-page TIFF); only single-frame images are supported")
        _check_pixels(path, width, height, max_pixels)
    return header


_XMP_ORIENTATION = re.compile(rb'(tiff:Orientation=["\']|<tiff:Orientation>)[0-9]')


_TIFF_XMP_TAG = 700


def _upright_xmp(xmp: object) -> bytes | None:
    """An XMP packet as bytes, its orientation set to 1 as the EXIF's is (the pixels are
    turned on read), or None when there is none."""
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    elif isinstance(xmp, (tuple, list)):
        xmp = bytes(xmp)
    if not isinstance(xmp, bytes) or not xmp:
        return None
    return _XMP_ORIENTATION.sub(rb"\g<1>1", xmp)


def _print_resolution(dpi: object) -> tuple[float, float] | None:
    """Pillow's ``dpi`` as two positive numbers, or None (absent, or a JFIF aspect ratio
    or an EXIF resolution of 0 that describes no print size)."""
    try:
        x, y = (float(value) for value in dpi)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return (x, y) if x > 0 and y > 0 else None


def _tiff_print_resolution(tags: Image.Exif) -> tuple[float, float] | None:
    """A TIFF's print resolution in dots per inch from its X/YResolution and
    ResolutionUnit tags (2: inch, 3: centimetre), where Pillow could not open the file
    to give it (16-bit grey + alpha, float RGB); None without a unit."""
    per_inch = {2: 1.0, 3: 2.54}.get(int(tags.get(296, 2)))
    try:
        return _print_resolution((float(tags[282]) * per_inch, float(tags[283]) * per_inch)) if per_inch else None
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def _xmp_of(image: Image.Image) -> bytes | None:
    """The XMP packet of an image Pillow opened that is not a TIFF (JPEG, WebP, AVIF and
    HEIF keep it as ``xmp``, PNG in an iTXt chunk); see :func:`_upright_xmp`."""
    return _upright_xmp(image.info.get("xmp") or image.info.get(PNG_XMP_KEYWORD.decode()))


class _KeptMetadata(NamedTuple):
    orientation: int
    exif: bytes | None
    xmp: bytes | None  # a TIFF's


def _metadata_to_keep(exif: Image.Exif, fmt: str) -> _KeptMetadata:
    """The EXIF orientation, the EXIF bytes to write back, and a TIFF's XMP: the
    orientation reset to 1, since the pixels are turned on read; a TIFF's layout tags left
    out (they describe its strips, not the restored copy's) and its XMP and IPTC tags
    taken out, to travel as every format's do (:attr:`LoadedImage.xmp`, ``.iptc``)."""
    orientation = int(exif.get(_EXIF_ORIENTATION_TAG, 1) or 1)
    xmp = None
    if fmt == "tiff":
        for tag in TIFF_LAYOUT_TAGS & set(exif):
            del exif[tag]
        xmp = _upright_xmp(exif.pop(_TIFF_XMP_TAG, None))
        exif.pop(TIFF_IPTC_TAG, None)  # read whole from the file instead (tiff_tag)
    if not exif:
        return _KeptMetadata(orientation, None, xmp)
    exif[_EXIF_ORIENTATION_TAG] = 1
    return _KeptMetadata(orientation, exif.tobytes(), xmp)


def _tiff_exif(like: LoadedImage) -> bytes | None:
    """``like``'s EXIF with its XMP, IPTC and print resolution as the TIFF tags that hold
    them, for a TIFF output (OpenCV's 16-bit and float TIFFs get no other way to them)."""
    if not (like.xmp or like.dpi or like.iptc):
        return like.exif
    exif = Image.Exif()
    if like.exif:
        exif.load(like.exif)
    if like.xmp:
        exif[_TIFF_XMP_TAG] = like.xmp
    if like.iptc:
        exif[TIFF_IPTC_TAG] = like.iptc
    if like.dpi:
        exif[282], exif[283], exif[296] = float(like.dpi[0]), float(like.dpi[1]), 2  # X/YResolution per inch
    return exif.tobytes()


def _split_layout(array: np.ndarray, data: bytes, header: _Header,
                  rgb_order: bool = False) -> tuple[np.ndarray, str, np.ndarray | None]:
    """(RGB samples, layout, alpha plane or None) of OpenCV-ordered pixels (grey, BGR or
    BGRA), or of pixels already in RGB(A) order (``rgb_order``: tifffile's, Pillow's)."""
    if rgb_order and array.ndim == 3 and array.shape[2] in (3, 4):
        layout, alpha = ("rgb", None) if array.shape[2] == 3 else ("rgba", array[..., 3].copy())
        return np.ascontiguousarray(array[..., :3]), layout, alpha
    if rgb_order and array.ndim == 3 and array.shape[2] == 2:  # grey + alpha, as OpenCV never hands it over
        return _grey_to_rgb(array[..., 0]), "grey+alpha", array[..., 1].copy()
    if array.ndim == 2 and header.transparent_grey is not None:  # OpenCV drops a grey PNG's tRNS key: made an alpha plane
        alpha = np.where(array == header.transparent_grey, 0, np.iinfo(array.dtype).max).astype(array.dtype)
        return _grey_to_rgb(array), "grey+alpha", alpha
    if array.ndim == 2:
        return _grey_to_rgb(array), "grey", None
    channels = array.shape[2]
    if channels == 1:
        return _grey_to_rgb(array[..., 0]), "grey", None
    if channels == 2:
        return _grey_to_rgb(array[..., 0]), "grey+alpha", array[..., 1].copy()
    if channels == 3:
        return _bgr_to_rgb(array), "rgb", None
    if channels == 4 and png_stores_grey_alpha(data, header.mode):  # OpenCV expands grey + alpha to BGRA
        return _grey_to_rgb(array[..., 0]), "grey+alpha", array[..., 3].copy()
    if channels == 4:
        return _bgr_to_rgb(array), "rgba", array[..., 3].copy()
    raise ValueError(f"unsupported channel count {channels}")


_BIGTIFF_SIGNATURES = (b"II+\0", b"MM\0+")


def decode_image(data: bytes, path: os.PathLike | str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS,
                 measure_noise: bool = False) -> LoadedImage:
    """Decode encoded image ``data``; errors are :class:`ImageError` naming ``path``.
    ``measure_noise``: measure a camera raw file's noise level from its sensor data
    (:attr:`LoadedImage.noise_level`; a second development); other formats have none."""
    if not data:
        raise ImageError(path, "empty file (0 bytes)")
    if Path(path).suffix.lower() in READ_ONLY_EXTENSIONS:
        return _develop_camera_raw(data, path, max_pixels, measure_noise)
    if jpeg_xl.AVAILABLE and jpeg_xl.looks_like_jxl(data):
        return _decode_jpeg_xl(data, path, max_pixels)
    header = _read_header(data, path, max_pixels)
    if not header.fmt and data[:4] in _BIGTIFF_SIGNATURES:  # neither Pillow nor the classic TIFF header reader knew it
        header.fmt = "tiff"
    tiff = first_page(data, max_pixels) if header.fmt == "tiff" else None  # what OpenCV's reading would change (io.tiff_samples)
    if tiff is not None:  # sized before any decoding, a BigTIFF too
        _check_pixels(path, tiff.width, tiff.height, max_pixels)
    upright, heif_lost = False, None  # already turned by its orientation tag; what a HEIF's copy does not keep
    if header.fmt == "heif":  # OpenCV has no HEVC decoder; libheif hands the pixels over already turned
        _heif_ready()
        (array, heif_lost), header.orientation = _decode_heif(data), 1
    elif header.fmt == "gif":  # as Pillow composes it, its transparent colour an alpha plane (io.gif)
        array = decode_gif(data)
    elif tiff is not None and tiff.exact is not None:
        array = tiff.exact  # in RGB order
    else:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        upright = header.fmt == "tiff" and _opencv_turns_tiffs()
        if tiff is not None and tiff.premultiplied_by_opencv and array is not None and array.ndim == 3 and array.shape[2] == 4:
            array = unpremultiply(array)
    pillow_order = header.fmt == "gif"  # samples in RGB order, as Pillow gives them
    if array is None and header.fmt == "jpeg2000":  # grey + alpha, which OpenCV's reader refuses
        array, pillow_order = _decode_with_pillow(data), True
    if array is None:
        unreadable = UNREADABLE_FORMATS.get(Path(path).suffix.lower())
        if unreadable:
            raise ImageError(path, f"{unreadable} images cannot be read here: {how_to_read([Path(path).suffix.lower()])}")
        raise ImageError(path, "cannot decode image (corrupt, truncated or unsupported format)")
    if array.shape[0] * array.shape[1] > max_pixels:
        raise ImageError(path, f"image has {array.shape[0] * array.shape[1]:,} pixels, over the limit of {max_pixels:,}")
    if not upright:
        array = apply_orientation(array, header.orientation)
    if header.fmt == "avif" and array.dtype == np.uint16 and (bits := avif_bit_depth(data) or 16) < 16:
        array = np.round(array * (65535 / (2**bits - 1))).astype(np.uint16)  # 10/12-bit samples to the 16-bit range
    if header.fmt == "ppm" and (maxval := netpbm_maxval(data)) not in (None, 1, 255, 65535):
        full = np.iinfo(array.dtype).max  # uint8 up to a maxval of 255, uint16 above
        array = np.round(np.minimum(array, maxval) * np.float64(full) / maxval).astype(array.dtype)  # to the full 8/16-bit range
    read_note = None
    if header.mode == "CMYK":  # OpenCV converts to RGB (without colour management); libtiff adds an opaque alpha
        if array.ndim == 3 and array.shape[2] == 4:
            array = array[..., :3]
        read_note = "CMYK converted to RGB without colour management"
        if header.icc is not None and icc_colour_space(header.icc) == "CMYK":
            header.icc, read_note = None, read_note + "; its CMYK ICC profile dropped (it does not describe RGB pixels)"
    if tiff is not None and tiff.alpha_dropped_by_opencv and array.ndim == 2:
        read_note = "its alpha plane dropped (a grey + alpha TIFF compressed with LZW or JPEG is read as grey here)"
    if header.fmt == "heif" and header.images > 1:  # the image a viewer shows, as libheif and GraphicsMagick read it
        read_note = f"holds {header.images} images: the primary one restored, the other {header.images - 1} not kept"
    if heif_lost:
        read_note = "; ".join(filter(None, [read_note, heif_lost]))
    trailer = read_trailer(data, header.xmp) if header.fmt == "jpeg" else None
    if trailer is not None and trailer.lost:
        read_note, header.xmp = "; ".join(filter(None, [read_note, trailer.lost])), xmp_without_trailer(header.xmp)
    try:
        rgb_order = pillow_order or (tiff is not None and tiff.exact is not None)
        rgb, layout, alpha = _split_layout(array, data, header, rgb_order=rgb_order)
        pixels, bit_depth = _to_unit_float(rgb)
    except ValueError as exc:
        raise ImageError(path, str(exc)) from None
    return LoadedImage(pixels, layout, bit_depth, alpha, header.icc, header.exif, header.fmt, read_note,
                       xmp=header.xmp, dpi=header.dpi, png_chunks=header.png_chunks, iptc=header.iptc, comment=header.comment,
                       encoder_options=header.encoder_options, trailer=trailer.video if trailer is not None else None)


def _develop_camera_raw(data: bytes, path: os.PathLike | str, max_pixels: int, measure_noise: bool) -> LoadedImage:
    """A camera raw file developed by LibRaw (:mod:`restore_core.io.camera_raw`): 16-bit
    sRGB, upright, with the make, model, date, exposure and GPS of its EXIF, and the XMP
    (a DNG's ratings and keywords, its orientation set to 1) and IPTC of a TIFF-based one."""
    try:
        developed = camera_raw.develop(data, lambda width, height: _check_pixels(path, width, height, max_pixels), measure_noise)
    except camera_raw.RawError as exc:
        raise ImageError(path, str(exc)) from None
    pixels, bit_depth = _to_unit_float(developed.pixels)
    return LoadedImage(pixels, "rgb", bit_depth, exif=camera_raw.exif_of(data), source_format="camera raw",
                       noise_level=developed.noise_level, xmp=_upright_xmp(tiff_tag(data, _TIFF_XMP_TAG)),
                       iptc=tiff_tag(data, TIFF_IPTC_TAG))


def _decode_jpeg_xl(data: bytes, path: os.PathLike | str, max_pixels: int) -> LoadedImage:
    """A JPEG XL decoded by libjxl through pillow-jxl-plugin (:mod:`restore_core.io.jpeg_xl`):
    sized, and refused when animated, from its codestream header before any decoding;
    turned upright by the codestream's orientation, never by its EXIF's; its ICC profile,
    EXIF (orientation reset to 1) and XMP kept; a lossless one's copy lossless."""
    try:
        header = jpeg_xl.read_header(data)
    except ValueError as exc:
        raise ImageError(path, f"cannot decode image: {exc}") from None
    _check_pixels(path, header.width, header.height, max_pixels)
    if header.animated:
        raise ImageError(path, "is an animated JPEG XL; only still ones are read here (the JPEG XL reader decodes one frame)")
    jpeg_xl.ready()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "upcasting 16-bit floats": the depth is said in the note below
            with Image.open(io.BytesIO(data), formats=["JXL"]) as image:
                array = np.asarray(image)
                boxes = jpeg_xl.metadata(data)  # the container's, which the plugin reads in part
                exif = image.getexif()  # a recompressed JPEG's, or an uncompressed Exif box's
                if not exif and boxes.exif:
                    exif.load(boxes.exif)
                kept = _metadata_to_keep(exif, "jxl")  # its orientation is the codestream's, below
                icc, dpi = image.info.get("icc_profile"), _print_resolution(image.info.get("dpi"))
                xmp = _xmp_of(image) or _upright_xmp(boxes.xmp)
    except Exception:  # noqa: BLE001 - libjxl's errors say little more than this
        raise ImageError(path, "cannot decode image (corrupt, truncated or unsupported JPEG XL)") from None
    array = apply_orientation(array.astype(np.uint16) if array.dtype.kind in "iu" and array.itemsize == 2 else array,
                              jpeg_xl.orientation_to_apply(header))
    decoded_bits = 32 if array.dtype.kind == "f" else 8 * array.itemsize
    try:
        rgb, layout, alpha = _split_layout(array, data, _Header(), rgb_order=True)
        pixels, bit_depth = _to_unit_float(np.ascontiguousarray(rgb))
    except ValueError as exc:
        raise ImageError(path, str(exc)) from None
    note = "; ".join(filter(None, [jpeg_xl.depth_lost(header, decoded_bits), boxes.unread])) or None
    return LoadedImage(pixels, layout, bit_depth, alpha, icc, kept.exif, "jxl", note,
                       xmp=xmp, dpi=dpi, encoder_options={"lossless": True} if jpeg_xl.is_lossless(header) else {})


def _special_file_kind(mode: int) -> str | None:
    """What a file that holds no data of its own is (a named pipe, a socket, a device),
    or None for a regular file or a folder."""
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return None


def read_image(path: os.PathLike | str, max_pixels: int = DEFAULT_MAX_PIXELS, measure_noise: bool = False) -> LoadedImage:
    """Read and decode the image at ``path`` (EXIF orientation applied); ``measure_noise``
    as :func:`decode_image`. A named pipe, socket or device is refused unopened: opening
    a pipe with no writer waits for ever, and held the whole batch (Ctrl-C too)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode  # one look at the file for both refusals
        if stat.S_ISDIR(mode):
            raise ImageError(path, "is a directory, not an image file")
        if (kind := _special_file_kind(mode)) is not None:
            raise ImageError(path, f"is {kind}, not an image file")
        data = path.read_bytes()
    except ImageError:
        raise
    except OSError as exc:
        if path.is_symlink() and not path.exists():
            raise ImageError(path, f"a broken link (to {os.readlink(path)}, which does not exist)") from None
        raise ImageError(path, exc.strerror or str(exc)) from None
    return decode_image(data, path, max_pixels, measure_noise)


def _quantise(unit: np.ndarray, bit_depth: int) -> np.ndarray:
    """round(clip(unit, 0, 1) * max) as uint8/uint16, with a single float temporary;
    float32 clipped to [0, 1] for ``bit_depth`` 32."""
    scaled = np.clip(unit, 0.0, 1.0)
    if bit_depth == 32:
        return scaled.astype(np.float32, copy=False)
    scaled *= 65535.0 if bit_depth == 16 else 255.0
    np.rint(scaled, out=scaled)
    return scaled.astype(np.uint16 if bit_depth == 16 else np.uint8)


def _match_depth(alpha: np.ndarray, bit_depth: int) -> np.ndarray:
    """The alpha plane in the samples of ``bit_depth`` (unchanged when it has them)."""
    if bit_depth == 32:
        if alpha.dtype.kind == "f":
            return alpha.astype(np.float32, copy=False)
        return np.divide(alpha, 65535.0 if alpha.dtype == np.uint16 else 255.0, dtype=np.float32)
    if alpha.dtype.kind == "f":
        return _quantise(alpha.astype(np.float32), bit_depth)
    if bit_depth == 16 and alpha.dtype == np.uint8:
        return alpha.astype(np.uint16) * 257
    if bit_depth == 8 and alpha.dtype == np.uint16:
        return (alpha.astype(np.uint32) // 257).astype(np.uint8)
    return alpha


def stored_depth(bit_depth: int, extension: str) -> int:
    """The sample depth an output in ``extension`` keeps of an input's ``bit_depth``:
    TIFF keeps 8, 16 and 32 (float); PNG and Netpbm keep 8 and 16 (float becomes 16);
    HEIF 8, and 10 bits on the 16-bit scale (16: :data:`HEIF_DEEP_BITS`); the rest 8."""
    extension = encoder_extension(extension)
    if bit_depth == 32 and extension not in _FLOAT_FORMATS:
        bit_depth = 16
    return bit_depth if extension in _SIXTEEN_BIT_FORMATS or extension in _HEIF_NAMES else 8


HEIF_DEEP_BITS = 10  # what a HEIF copy keeps of 16-bit samples (x265's Main 10)


def kept_bits(bit_depth: int, extension: str) -> int:
    """The bits of a ``bit_depth`` sample an output in ``extension`` keeps:
    :func:`stored_depth`'s, except a HEIF's 16-bit-scale samples, which hold
    :data:`HEIF_DEEP_BITS`."""
    stored = stored_depth(bit_depth, extension)
    return HEIF_DEEP_BITS if stored == 16 and encoder_extension(extension) in _HEIF_NAMES else stored


def to_stored_layout(rgb: np.ndarray, image: LoadedImage, extension: str) -> np.ndarray:
    """Array in ``image``'s layout (RGB order) and the depth ``extension`` allows:
    uint8, uint16, or float32 in [0, 1] (:func:`stored_depth`)."""
    return _in_layout(rgb, image, stored_depth(image.bit_depth, extension))


def _in_layout(rgb: np.ndarray, image: LoadedImage, bit_depth: int) -> np.ndarray:
    """Restored float RGB put back in ``image``'s layout, with ``bit_depth`` samples."""
    if image.layout.startswith("grey"):
        # float64 sum for float outputs: the mean of three equal float32 values is then exactly that value
        pixels = _quantise(rgb.mean(axis=2, dtype=np.float64 if bit_depth == 32 else None), bit_depth)
    else:
        pixels = _quantise(rgb, bit_depth)
    if image.alpha is not None:
        alpha = _match_depth(image.alpha, bit_depth)
        pixels = np.dstack([pixels, alpha])
    return pixels


def lost_on_write(like: LoadedImage, extension: str) -> str | None:
    """What an output in ``extension`` cannot keep of the image ``like`` and that nobody
    would expect to lose: an alpha channel in a JPEG (:func:`encode_image` drops it),
    colours and soft alpha in a GIF, or samples deeper than the format holds (:func:`stored_depth`), and what reading
    already changed (``like.read_note``)."""
    extension = extension.lower()
    notes = [like.read_note] if like.read_note else []
    if like.trailer and encoder_extension(extension) not in (".jpg", ".jpeg"):
        notes.append(f"its motion photo video not kept: {extension.lstrip('.')} cannot hold one (a jpg copy keeps it)")
    if like.alpha is not None and (without := _WITHOUT_ALPHA.get(encoder_extension(extension))):
        notes.append(f"alpha channel dropped: {without} has none (png, webp, tif or bmp keep it)")
    if extension == ".gif" and like.source_format != "gif" and (  # a GIF source had no more to lose
            lost := gif_losses(like.layout == "grey", like.alpha is not None, like.icc_profile is not None)):
        notes.append(lost)
    if extension == ".jxl" and jpeg_xl.AVAILABLE and like.icc_profile and not jpeg_xl.keeps_colours(like.icc_profile):
        notes.append("its ICC profile not kept: the JPEG XL writer writes sRGB (png, jpg, tif and webp keep it)")
    kept = kept_bits(like.bit_depth, extension)
    if like.source_format == "heif" and kept >= HEIF_DEEP_BITS:  # its 10 bits (rarely 12) on the 16-bit scale: none lost
        kept = like.bit_depth
    if kept < like.bit_depth:
        source = "float" if like.bit_depth == 32 else f"{like.bit_depth}-bit"
        keeps = "tif keeps float" if like.bit_depth == 32 else "png and tif keep 16 bits"
        notes.append(f"{source} samples written as {kept}-bit {extension.lstrip('.')} ({keeps})")
    return "; ".join(notes) or None


# Output formats without an alpha channel (encode_image drops it), by encoder extension.
_WITHOUT_ALPHA = {".jpg": "JPEG", ".jpeg": "JPEG", ".pnm": "Netpbm"}

# Output formats whose encoder takes a quality (``--quality``); the others are lossless.
LOSSY_EXTENSIONS = (".jpg", ".jpeg", ".webp", ".avif", *_HEIF_NAMES, ".jxl")  # by encoder_extension


def encode_image(rgb: np.ndarray, like: LoadedImage, extension: str, jpeg_quality: int = 95) -> bytes:
    """Encode restored ``rgb`` (float H x W x 3 in [0, 1]) in the layout, depth and
    metadata of ``like``, as the format of ``extension`` (".png", ".jpg", ...)."""
    named, extension = extension.lower(), encoder_extension(extension)
    if like.trailer and extension not in (".jpg", ".jpeg"):  # no motion photo video in the copy: nothing announces one
        like = replace(like, xmp=xmp_without_trailer(like.xmp), trailer=None)
    pixels = to_stored_layout(rgb, like, extension)
    if extension in _WITHOUT_ALPHA and pixels.ndim == 3 and pixels.shape[2] in (2, 4):
        pixels = pixels[..., :-1] if pixels.shape[2] == 4 else pixels[..., 0]
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if named == ".pgm" and pixels.ndim == 3:
        raise ValueError("PGM holds grey images only: name a colour image's copy .ppm or .pnm")
    if named == ".ppm" and pixels.ndim == 2:
        pixels = np.dstack([pixels] * 3)  # PPM is a colour format: the grey level in each channel
    if extension == ".gif":
        return encode_gif(pixels, like.comment)
    if pixels.ndim == 3 and pixels.shape[2] == 2:
        if extension == ".png":
            return _with_png_metadata(encode_grey_alpha_png(pixels), like)
        if extension in (".tif", ".tiff"):
            tiff = encode_grey_alpha_tiff(pixels, dpi=like.dpi)
            return add_tiff_metadata(tiff, like.icc_profile, _tiff_exif(like)) if like.icc_profile or like.exif else tiff
        grey, alpha = pixels[..., :1], pixels[..., 1:]
        pixels = np.concatenate([grey, grey, grey, alpha], axis=2)  # other formats: RGBA with equal channels
    if pixels.dtype == np.uint16 and extension in _HEIF_NAMES:
        return _encode_deep_heif(pixels, like, jpeg_quality)
    if pixels.dtype == np.uint8 and extension in (".jpg", ".jpeg", ".webp", ".avif", *_HEIF_NAMES, ".jxl", ".tif", ".tiff"):
        # Pillow writes ICC and EXIF for these formats (JPEG XL: EXIF and XMP).
        if extension in _HEIF_NAMES:
            _heif_ready()
        if extension == ".jxl":
            jpeg_xl.ready()
        pil = Image.fromarray(pixels)  # L, LA, RGB or RGBA inferred from the shape
        options: dict = {}
        tiff, fmt_is_jpeg = extension in (".tif", ".tiff"), extension in (".jpg", ".jpeg")
        if like.icc_profile:
            options["icc_profile"] = like.icc_profile
        if exif := _tiff_exif(like) if tiff else like.exif:
            options["exif"] = jpeg_xl.exif_box(exif) if extension == ".jxl" else exif
        if like.xmp and not tiff:  # a TIFF's is one of its tags (above): Pillow's xmp= writes none there
            options["xmp"] = like.xmp
        if like.dpi and extension in (".jpg", ".jpeg", ".tif", ".tiff"):
            options["dpi"] = like.dpi
        if like.comment and fmt_is_jpeg:
            options["comment"] = like.comment
        fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".avif": "AVIF", ".heic": "HEIF", ".heif": "HEIF", ".hif": "HEIF",
               ".jxl": "JXL", ".tif": "TIFF", ".tiff": "TIFF"}[extension]
        if extension in LOSSY_EXTENSIONS:
            options["quality"] = jpeg_quality
        if extension == ".jxl" and jpeg_quality >= 100:  # libjxl's quality 100 is distance 0: lossless, which it codes apart
            options["lossless"] = True
        if fmt.lower() == like.source_format:
            # As the source was written: a 4:4:4 JPEG written 4:2:0 (Pillow's default) lost
            # 8.7 dB against itself on the bundled motorcycle at quality 95 (36.65 against
            # 45.34 dB, for 26 % more bytes); a lossless WebP came back lossy.
            options.update(like.encoder_options)
        buffer = io.BytesIO()
        pil.save(buffer, format=fmt, **options)
        encoded = buffer.getvalue()
        if like.iptc and fmt_is_jpeg:
            encoded = insert_jpeg_segments(encoded, jpeg_iptc_segments(like.iptc))
        return encoded + like.trailer if like.trailer and fmt_is_jpeg else encoded
    # OpenCV for PNG (any depth), BMP and 16-bit and float TIFF: expects BGR(A).
    if pixels.ndim == 3 and pixels.shape[2] >= 3:  # cv2.cvtColor: 0.06 ms at 1280x720, NumPy's fancy index 3.8
        pixels = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGBA2BGRA if pixels.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(extension, pixels)
    if not ok:
        raise ValueError(f"OpenCV cannot encode {extension}")
    data = buffer.tobytes()
    if extension == ".png":
        data = _with_png_metadata(data, like)
    elif extension in (".tif", ".tiff") and (like.icc_profile or like.exif or like.xmp or like.dpi or like.iptc):
        data = add_tiff_metadata(data, like.icc_profile, _tiff_exif(like))
    return data


def _encode_deep_heif(pixels: np.ndarray, like: LoadedImage, quality: int) -> bytes:
    """A 10-bit HEIF (libheif through pillow-heif, x265 Main 10) of 16-bit samples: a
    camera's 10-bit HEIF stays 10-bit, as a phone's HDR video does (Pillow's HEIF writer
    takes 8-bit pictures only). Its ICC profile, EXIF and XMP kept."""
    import pillow_heif

    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    mode = {1: "L;16", 3: "RGB;16", 4: "RGBA;16"}[channels]
    heif = pillow_heif.from_bytes(mode=mode, size=(pixels.shape[1], pixels.shape[0]), data=np.ascontiguousarray(pixels).tobytes())
    if like.icc_profile:
        heif.info["icc_profile"] = like.icc_profile
    buffer = io.BytesIO()
    heif.save(buffer, quality=quality, exif=like.exif, xmp=like.xmp)
    return buffer.getvalue()


def _with_png_metadata(png: bytes, like: LoadedImage) -> bytes:
    """An encoded PNG with ``like``'s profile, EXIF, XMP and print resolution, and its own
    colour and text chunks when ``like`` was a PNG too."""
    return add_png_metadata(png, like.icc_profile, like.exif, like.xmp, like.dpi, like.png_chunks)


def _in_one_line(exc: Exception) -> str:
    """An encoder's failure as one line: OpenCV's ``OpenCV(5.1.0) /path/loadsave.cpp:1646:
    error: (-2:Unspecified error) MESSAGE in function 'imencode'`` becomes MESSAGE."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    found = re.search(r"error: \(-?\d+:[^)]*\) (.*?)(?: in function '[^']*')?$", text)
    return found.group(1) if found else text


def write_image(path: os.PathLike | str, rgb: np.ndarray, like: LoadedImage, jpeg_quality: int = 95) -> None:
    """Encode ``rgb`` like ``like`` (format from ``path``'s extension; ``jpeg_quality``
    for JPEG and WebP) and write atomically."""
    path = Path(path)
    try:
        data = encode_image(rgb, like, path.suffix, jpeg_quality)
    except Exception as exc:
        raise ImageError(path, f"cannot encode: {_in_one_line(exc)}") from None
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise WriteError(path, exc.strerror or str(exc), exc.errno) from None


ARRAY_LAYOUTS = {1: "grey", 2: "grey+alpha", 3: "rgb", 4: "rgba"}  # channels -> layout of an in-memory image


def from_array(array: np.ndarray) -> LoadedImage:
    """An in-memory image as the model takes it: H x W (grey) or H x W x C with C = 1
    (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA), in RGB order (OpenCV's BGR arrays
    must be converted first); uint8, uint16, or float (16, 32 or 64 bits) in [0, 1], clipped to it.
    The alpha plane travels untouched, as it does from a file; :func:`to_array`
    puts the restored pixels back in the same layout and sample type."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"expected a NumPy array, got {type(array).__name__}")
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in ARRAY_LAYOUTS):
        raise ValueError(f"expected H x W or H x W x C with C in 1-4, got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"empty image (shape {array.shape})")
    if array.dtype not in (np.uint8, np.uint16, np.float16, np.float32, np.float64):
        raise ValueError(f"unsupported sample type {array.dtype}: use uint8, uint16, or float16/32/64 in [0, 1]")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError("the image holds NaN or infinite values")
    planes = array[..., None] if array.ndim == 2 else array
    layout = ARRAY_LAYOUTS[planes.shape[2]]
    colour = planes[..., :3] if layout.startswith("rgb") else _grey_to_rgb(planes[..., 0])
    alpha = planes[..., -1].copy() if layout.endswith("alpha") or layout == "rgba" else None
    pixels, bit_depth = _to_unit_float(np.ascontiguousarray(colour))
    return LoadedImage(pixels, layout, bit_depth, alpha, source_format="array")


def to_array(rgb: np.ndarray, like: LoadedImage, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Restored float RGB in [0, 1] as an array of ``shape`` and ``dtype`` laid out like
    ``like`` (the :func:`from_array` of the input): rounded to the input's integer
    samples, or clipped floats of its float type; the alpha plane put back as it came."""
    pixels = _in_layout(rgb, replace(like, alpha=None), like.bit_depth).astype(dtype, copy=False)
    if like.alpha is not None:  # the input's own plane, in its own type: bit-exact even for float64
        pixels = np.dstack([pixels, like.alpha])
    return pixels.reshape(shape)


def read_rgb(path: os.PathLike | str) -> np.ndarray:
    """Float32 RGB in [0, 1] of the image at ``path`` (for datasets and metrics)."""
    return read_image(path).rgb

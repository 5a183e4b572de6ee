"""GIF pictures: read as Pillow composes them, written with a palette of their own.

A GIF holds at most 256 colours a frame, one of which may be transparent. A restored
frame is reduced to its own palette by median cut (what Pillow's GIF writer does by
itself; 34.8 dB against the unreduced picture on scikit-image's astronaut, where
Pillow's fast octree gives 34.5 dB), without dithering, which would add back a grain
of the kind a denoiser removes. Alpha is kept as a GIF holds it: a pixel is
transparent or not, cut at half coverage.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

PALETTE_COLOURS = 256
TRANSPARENT_BELOW = 128  # alpha under half coverage: a transparent pixel
_TRANSPARENT_INDEX = PALETTE_COLOURS - 1  # the colour reserved for transparency when there is alpha


def frame_layout(modes: set[str], transparent: bool) -> str:
    """The Pillow mode every frame is read in (``"L"``, ``"LA"``, ``"RGB"`` or ``"RGBA"``):
    grey where every frame is grey, with alpha where any frame has a transparent colour
    or an alpha channel (Pillow reads a GIF's frames after the first as RGB or RGBA)."""
    alpha = transparent or any(mode in ("RGBA", "LA", "PA", "La", "RGBa") for mode in modes)
    if modes <= {"L", "LA", "La", "1", "I;16", "I"}:
        return "LA" if alpha else "L"
    return "RGBA" if alpha else "RGB"


def frame_pixels(image: Image.Image, mode: str) -> np.ndarray:
    """The current frame of ``image`` as uint8 samples in ``mode`` (RGB order): H x W
    for grey, H x W x 2/3/4 otherwise. A 16-bit grey PNG frame keeps its top 8 bits
    (Pillow's conversion would clip it instead)."""
    if image.mode in ("I;16", "I;16B", "I"):
        grey = (np.asarray(image).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
        if mode in ("L", "LA"):
            return grey if mode == "L" else np.dstack([grey, np.full_like(grey, 255)])
        planes = [grey, grey, grey] + ([np.full_like(grey, 255)] if mode == "RGBA" else [])
        return np.dstack(planes)
    return np.asarray(image.convert(mode))


def palette_image(pixels: np.ndarray) -> Image.Image:
    """uint8 ``pixels`` (H x W grey, or H x W x 2/3/4 in RGB order) as a palette image of
    at most 256 colours; with alpha, the last palette entry is transparent (the image's
    ``info["transparency"]``) and takes every pixel under half coverage."""
    if pixels.ndim == 2:
        return Image.fromarray(pixels)  # grey: GIF's own 256-level grey palette, exact
    alpha = pixels[..., -1] if pixels.shape[2] in (2, 4) else None
    colour = pixels[..., :-1] if alpha is not None else pixels
    if colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    colours = PALETTE_COLOURS if alpha is None else PALETTE_COLOURS - 1
    reduced = Image.fromarray(np.ascontiguousarray(colour)).quantize(colours, method=Image.Quantize.MEDIANCUT)
    if alpha is None:
        return reduced
    indices = np.asarray(reduced).copy()
    indices[alpha < TRANSPARENT_BELOW] = _TRANSPARENT_INDEX
    palette = (reduced.getpalette() or [])[: 3 * colours]
    framed = Image.frombytes("P", reduced.size, indices.tobytes())
    framed.putpalette(palette + [0] * (3 * PALETTE_COLOURS - len(palette)))
    framed.info["transparency"] = _TRANSPARENT_INDEX
    return framed


def gif_losses(grey: bool, has_alpha: bool, has_icc_profile: bool) -> str | None:
    """What a GIF copy of a picture that was not a GIF loses, said in a result's note; None
    for a grey picture without alpha, whose 256 levels a GIF holds. (Pillow neither reads
    nor writes a GIF's ICC profile.)"""
    losses = []
    if has_alpha:
        losses.append("colours reduced to a GIF's 256, its alpha to transparent or opaque")
    elif not grey:
        losses.append("colours reduced to a GIF's 256")
    if has_icc_profile:
        losses.append("its ICC profile not kept")
    return "; ".join(losses) or None


def _grey_palette(image: Image.Image) -> bool:
    """Whether every colour of a palette image's palette is a grey (red = green = blue)."""
    colours = np.asarray(image.getpalette("RGB") or [], np.uint8).reshape(-1, 3)
    return bool(colours.size) and bool((colours == colours[:, :1]).all())


def decode_gif(data: bytes) -> np.ndarray | None:
    """The picture of a one-frame GIF as uint8 samples in RGB order (grey where its
    palette is, RGB otherwise, with alpha where the GIF has a transparent colour), or
    None when Pillow cannot decode it."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            transparent = "transparency" in image.info
            mode = "L" if image.mode == "P" and _grey_palette(image) else image.mode  # a grey scan's GIF stays grey
            return frame_pixels(image, frame_layout({mode}, transparent))
    except Exception:  # noqa: BLE001 - the caller reports an undecodable file
        return None


def encode_gif(pixels: np.ndarray, comment: bytes | None = None) -> bytes:
    """uint8 ``pixels`` (RGB order) as a one-frame GIF (:func:`palette_image`), with its comment."""
    options = {"comment": comment} if comment else {}
    buffer = io.BytesIO()
    palette_image(pixels).save(buffer, format="GIF", **options)
    return buffer.getvalue()

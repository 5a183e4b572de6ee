"""GIF pictures: read as Pillow composes them, written with a palette of their own.

A GIF holds at most 256 colours a frame, one of which may be transparent. A restored
picture is reduced to its own palette by median cut (what Pillow's GIF writer does by
itself; 34.8 dB against the unreduced picture on scikit-image's astronaut, where
Pillow's fast octree gives 34.5 dB), without dithering, which would add back a grain
of the kind a denoiser removes. Alpha is kept as a GIF holds it: a pixel is
transparent or not, cut at half coverage.

An animation's frames share one palette (:func:`shared_palette`), as ffmpeg's
palettegen makes one: with a palette per frame, a still background changed colour from
frame to frame wherever the palettes differed. On 24 frames of the bundled motorcycle
with a moving ball, a palette per frame changed 40 % of the still pixels between
frames (0.83 levels on average) and took 2.7 MB, since a GIF can only skip pixels that
do not change; one palette changed none, took 160 kB, and was made 14x faster, for
0.8 dB less against the unreduced frames (34.9 against 35.7 dB).
"""

from __future__ import annotations

import io
import math
from typing import Sequence

import numpy as np
from PIL import Image

PALETTE_COLOURS = 256
TRANSPARENT_BELOW = 128  # alpha under half coverage: a transparent pixel
_TRANSPARENT_INDEX = PALETTE_COLOURS - 1  # the colour reserved for transparency when there is alpha
_PALETTE_SAMPLE_PIXELS = 4_000_000  # an animation's frames, subsampled to about this many pixels, choose its palette


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


def _colour_and_alpha(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB samples (grey repeated) and the alpha plane, or None, of H x W x 2/3/4 ``pixels``."""
    alpha = pixels[..., -1] if pixels.shape[2] in (2, 4) else None
    colour = pixels[..., :-1] if alpha is not None else pixels
    return (np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else colour), alpha


def shared_palette(frames: Sequence[np.ndarray]) -> Image.Image:
    """One palette for every frame of an animation (uint8 H x W x 2/3/4, RGB order): median
    cut over their opaque pixels, each frame subsampled so that together they count about
    4 MP. 256 colours, or 255 and a last entry that repeats the first where the frames
    have alpha (:func:`palette_image` then keeps that entry for transparency)."""
    total = sum(frame.shape[0] * frame.shape[1] for frame in frames)
    step = max(1, math.ceil(math.sqrt(total / _PALETTE_SAMPLE_PIXELS)))
    samples = []
    for frame in frames:
        colour, alpha = _colour_and_alpha(frame[::step, ::step])
        samples.append(colour.reshape(-1, 3) if alpha is None else colour[alpha >= TRANSPARENT_BELOW])
    column = np.concatenate(samples) if any(len(sample) for sample in samples) else np.zeros((1, 3), np.uint8)
    has_alpha = frames[0].shape[2] in (2, 4)
    colours = PALETTE_COLOURS - 1 if has_alpha else PALETTE_COLOURS
    reduced = Image.fromarray(np.ascontiguousarray(column[:, None, :])).quantize(colours, method=Image.Quantize.MEDIANCUT)
    entries = (reduced.getpalette() or [])[: 3 * colours]
    entries += entries[:3] * ((3 * PALETTE_COLOURS - len(entries)) // 3)  # unused entries repeat the first colour
    palette = Image.new("P", (1, 1))
    palette.putpalette(entries)
    return palette


def palette_image(pixels: np.ndarray, palette: Image.Image | None = None) -> Image.Image:
    """uint8 ``pixels`` (H x W grey, or H x W x 2/3/4 in RGB order) as a palette image of
    at most 256 colours: its own (median cut), or the nearest of ``palette``'s
    (:func:`shared_palette`). With alpha, the last palette entry is transparent (the
    image's ``info["transparency"]``) and takes every pixel under half coverage."""
    if pixels.ndim == 2:
        return Image.fromarray(pixels)  # grey: GIF's own 256-level grey palette, exact
    colour, alpha = _colour_and_alpha(pixels)
    rgb = Image.fromarray(np.ascontiguousarray(colour))
    if palette is not None:
        reduced = rgb.quantize(palette=palette, dither=Image.Dither.NONE)
    else:
        reduced = rgb.quantize(PALETTE_COLOURS if alpha is None else PALETTE_COLOURS - 1, method=Image.Quantize.MEDIANCUT)
    if alpha is None:
        return reduced
    indices = np.asarray(reduced).copy()
    indices[indices == _TRANSPARENT_INDEX] = 0  # a shared palette's last entry repeats its first colour
    indices[alpha < TRANSPARENT_BELOW] = _TRANSPARENT_INDEX
    entries = (reduced.getpalette() or [])[: 3 * (PALETTE_COLOURS - 1)]
    framed = Image.frombytes("P", reduced.size, indices.tobytes())
    framed.putpalette(entries + [0] * (3 * PALETTE_COLOURS - len(entries)))
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

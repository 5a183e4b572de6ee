"""Motion-compensated temporal smoothing of restored video frames and image sequences (``--temporal R``).

A single-image model restores each frame on its own, so what it leaves behind (residual
noise, faint streaks, its guesses under heavy rain) changes from frame to frame: the
clip flickers. This stage averages each restored frame with its ``R`` neighbours on
each side after aligning them to it, in the manner of motion-compensated temporal
filters (MCTF) and flow-guided non-local means in time:

1. Alignment. Dense optical flow (OpenCV's DIS) from the centre frame ``c`` to each
   neighbour ``n`` gives, per pixel ``x``, where the same point lies in ``n``; the
   neighbour is warped onto the centre: ``n~(x) = n(x + F(x))``, then given the centre's
   brightness at coarse scales (:func:`match_exposure`): a flash, a fade or an exposure
   change stays the centre's; only the finer things that vary around it are averaged.
2. Patch distance. ``D(x)`` = the mean over a ``p x p`` patch around ``x`` and over the
   colour channels of ``(n~ - c)^2`` (0-255 scale). Where the flow is right, ``D`` is
   about twice the residual variance; where it is wrong (occlusions, new content, a
   scene cut), it is far larger.
3. Weights. ``w_n(x) = exp(-D_n(x) / h_n^2)`` and the output is
   ``(c + sum_n w_n n~) / (1 + sum_n w_n)``. The bandwidth adapts to the clip and to
   each neighbour: ``h_n^2 = strength * median_x D_n``, what that neighbour's distance
   typically is where it is aligned, so residual noise is averaged gently and heavy
   residual rain strongly, while the pixels far above the typical distance (occlusions,
   flow errors) get little weight.
4. Scenes. A neighbour whose aligned luma correlates with the centre's by less than
   :data:`SAME_SCENE_CORRELATION` shows another scene (a cut, or motion the flow could
   not follow) and is left out, so a cut never blends two shots.

Measured with ``restore derain`` / ``restore denoise --sigma 25`` and ``--temporal 2`` on
20 real consecutive 1280x720 GoPro frames (../shared/data/GoPro_DMPHN_blur20, handheld
and fast) under one synthetic storm with new streaks each frame, or new noise: derained
28.106 -> 28.368 dB, denoised 34.637 -> 34.743 dB. The gain grows as the camera holds
still: on a still synthetic view, denoised frames +1.5 dB, derained ones differing from
one to the next by 2.2 levels instead of 3.6; a view panning with an object crossing it
+1.1 dB denoised (+0.5 around the object); a clean clip +0.03 dB. The strength
(``--temporal-strength``) trades detail in motion for less flicker: on the GoPro clip's
decoded per-frame outputs 2, 4 and 8 gave +0.43, +0.29 and -0.12 dB denoised and
+0.18, +0.20 and +0.17 dB derained.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Iterator

import cv2
import numpy as np

# Step 4: below this correlation an aligned neighbour shows another scene. Measured on
# 4x-reduced luma: same-scene neighbours 0.959-1.000 (heavy rain left by the derainer, an
# object crossing), cuts between different shots 0.35-0.55.
SAME_SCENE_CORRELATION = 0.8
FLOW_MAX_SIDE = 1280  # optical flow is computed on frames scaled down to this long side, then scaled up
EXPOSURE_SIGMA = 40.0  # pixels: the scale above which each frame keeps its own brightness (match_exposure)


@dataclass(frozen=True)
class TemporalConfig:
    """``radius``: neighbours used on each side (0 = off); ``strength``: the bandwidth
    ``h^2`` in multiples of a well-aligned neighbour's median patch distance; ``patch``:
    the side of the patch the distance is averaged over."""

    radius: int = 0
    strength: float = 4.0
    patch: int = 7

    def __post_init__(self) -> None:
        if not 0 <= self.radius <= 8:
            raise ValueError(f"temporal radius must be between 0 (off) and 8 frames, got {self.radius}")
        if self.strength <= 0 or self.patch < 1 or self.patch % 2 == 0:
            raise ValueError(f"temporal strength must be > 0 and patch an odd size, got {self.strength} and {self.patch}")


def flow_image(frame: np.ndarray) -> np.ndarray:
    """What the optical flow looks at: the frame's luma (uint8; a float frame is on the
    0-255 scale), scaled down so that its long side is at most :data:`FLOW_MAX_SIDE`."""
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    if grey.dtype != np.uint8:
        grey = np.clip(grey + 0.5, 0, 255).astype(np.uint8)
    scale = FLOW_MAX_SIDE / max(grey.shape)
    return cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else grey


def upscale_flow(flow: np.ndarray, height: int, width: int) -> np.ndarray:
    """A flow field computed at a smaller size, as displacements in pixels of a
    ``height x width`` frame."""
    if flow.shape[:2] == (height, width):
        return flow
    factor = np.array([width / flow.shape[1], height / flow.shape[0]], np.float32)
    return cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR) * factor


def warp(frame: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``frame`` sampled at ``x + flow(x)`` (bilinear; float32, whatever ``frame``'s type),
    and where that point lies inside the frame."""
    height, width = flow.shape[:2]
    xs = np.arange(width, dtype=np.float32)[None, :] + flow[..., 0]
    ys = np.arange(height, dtype=np.float32)[:, None] + flow[..., 1]
    warped = cv2.remap(frame, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = (xs >= 0) & (xs <= width - 1) & (ys >= 0) & (ys <= height - 1)
    return warped.astype(np.float32, copy=False), inside


def low_pass(image: np.ndarray, sigma: float = EXPOSURE_SIGMA) -> np.ndarray:
    """A Gaussian blur of ``sigma`` pixels, computed on the image reduced 8x (float32)."""
    height, width = image.shape[:2]
    small = cv2.resize(image, (max(1, width // 8), max(1, height // 8)), interpolation=cv2.INTER_AREA)
    return cv2.resize(cv2.GaussianBlur(small, (0, 0), sigma / 8), (width, height), interpolation=cv2.INTER_LINEAR)


def match_exposure(centre_low: np.ndarray, aligned: np.ndarray) -> np.ndarray:
    """Step 1, last part: ``aligned`` (float32) with its brightness at scales above
    :data:`EXPOSURE_SIGMA` replaced by the centre's (``centre_low`` = ``low_pass(centre)``),
    ``n~ + L(c) - L(n~)``. Without it a lightning flash (frame mean 131 -> 192 levels on
    the GoPro clip) was averaged away to 147 and lit its four neighbours by 14 levels."""
    return aligned + centre_low - low_pass(aligned)


def patch_distance(centre: np.ndarray, other: np.ndarray, patch: int) -> np.ndarray:
    """Step 2: the mean of ``(other - centre)^2`` over channels and a ``patch x patch`` window."""
    difference = cv2.subtract(other, centre)
    squared = cv2.multiply(difference, difference)
    if squared.ndim == 3:  # the channels' mean (cv2.transform: one pass, unlike NumPy's strided mean)
        squared = cv2.transform(squared, np.full((1, squared.shape[2]), 1 / squared.shape[2], np.float32))
    return cv2.boxFilter(squared, -1, (patch, patch))


def scene_correlation(centre: np.ndarray, aligned: np.ndarray, inside: np.ndarray) -> float:
    """Step 4: the correlation of the centre's luma with the aligned neighbour's, both
    scaled down 4x (rain, noise and small misalignments averaged away), over the pixels
    that came from inside the neighbour; 0 where either is flat or nothing came from inside."""
    def small(image: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        return cv2.resize(grey.astype(np.float32), None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    keep = small(inside.astype(np.float32)) > 0.999
    a, b = small(centre)[keep], small(aligned)[keep]
    if a.size < 2 or a.std() < 1e-3 or b.std() < 1e-3:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def bandwidth(distance: np.ndarray, strength: float) -> float | None:
    """``h^2`` of step 3 for one neighbour from its patch distances (outside pixels as
    inf): ``strength`` times their median (over every 4th row and column: the patch
    mean has smoothed the distances already); None when no pixel is inside."""
    sample = distance[::4, ::4] if min(distance.shape[:2]) >= 64 else distance
    inside = sample[np.isfinite(sample)]
    return strength * max(float(np.median(inside)), 1.0) if inside.size else None


def smooth_frame(centre: np.ndarray, neighbours: Iterable[tuple[np.ndarray, np.ndarray]], strength: float) -> np.ndarray:
    """Step 3: the weighted mean of ``centre`` and its aligned neighbours (float32,
    0-255), given as (aligned neighbour, its patch distances) pairs, each weighted by
    ``exp(-distance / h^2)`` with its own ``h^2``. A generator of pairs keeps one
    neighbour in memory at a time (a 4K frame is 100 MB in float32)."""
    total = centre.astype(np.float32)
    weight_sum = np.ones(centre.shape[:2], np.float32)
    for neighbour, distance in neighbours:
        h2 = bandwidth(distance, strength)
        if h2 is None:
            continue
        weight = np.exp(-distance / h2)  # 0 where distance is inf (outside the frame)
        total += neighbour * (weight[..., None] if neighbour.ndim == 3 else weight)
        weight_sum += weight
    return total / (weight_sum[..., None] if centre.ndim == 3 else weight_sum)


@dataclass
class Frame:
    """One restored frame in a :class:`FrameWindow`."""

    image: np.ndarray  # H x W x 3 on the 0-255 scale: uint8 (videos) or float32 (16-bit images keep their precision)
    flow_view: np.ndarray  # flow_image(image)
    stamp: object  # what the caller needs back with it (a timestamp, the image's job)
    emit: bool = True  # False: a neighbour only (a frame an earlier run or another shard writes)

    @classmethod
    def of(cls, image: np.ndarray, stamp: object = None, emit: bool = True) -> "Frame":
        return cls(image, flow_image(image), stamp, emit)


def smooth_in_window(centre: Frame, neighbours: list[Frame], config: TemporalConfig) -> np.ndarray:
    """Steps 1-4 for one frame: ``centre`` smoothed with those of its ``neighbours`` that
    show its scene; uint8 for a uint8 frame, else float32 on the 0-255 scale."""
    height, width = centre.image.shape[:2]
    centre_float = centre.image.astype(np.float32, copy=False)
    centre_low = low_pass(centre_float)
    flow_engine = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)  # not thread-safe; 7 us to make

    def aligned() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for other in neighbours:
            if other.image.shape != centre.image.shape:
                continue
            flow = upscale_flow(flow_engine.calc(centre.flow_view, other.flow_view, None), height, width)
            warped, inside = warp(other.image, flow)
            if scene_correlation(centre.image, warped, inside) < SAME_SCENE_CORRELATION:
                continue
            warped = match_exposure(centre_low, warped)
            distance = patch_distance(centre_float, warped, config.patch)
            distance[~inside] = np.inf
            yield warped, distance

    smoothed = np.clip(smooth_frame(centre_float, aligned(), config.strength), 0, 255)
    return (smoothed + 0.5).astype(np.uint8) if centre.image.dtype == np.uint8 else smoothed


class FrameWindow:
    """The frames of one stream, each handed back with its ``radius`` neighbours on each
    side once the frames after it are in (:meth:`push`), or at the stream's end
    (:meth:`flush`). Frames pushed with ``emit=False`` serve as neighbours only. Holds
    ``2 * radius + 1`` frames at most: what :func:`smooth_in_window` needs next."""

    def __init__(self, radius: int) -> None:
        self.radius = radius
        self._frames: deque[Frame] = deque()
        self._first = 0  # index of self._frames[0] in the stream
        self._pushed = 0
        self._next = 0  # index of the next frame to hand back

    def push(self, frame: Frame) -> list[tuple[Frame, list[Frame]]]:
        self._frames.append(frame)
        self._pushed += 1
        return self._ready_up_to(self._pushed - self.radius)

    def flush(self) -> list[tuple[Frame, list[Frame]]]:
        return self._ready_up_to(self._pushed)

    def _ready_up_to(self, end: int) -> list[tuple[Frame, list[Frame]]]:
        """The frames before index ``end`` not handed back yet, with their neighbours;
        forgets the frames no later one needs."""
        ready = []
        while self._next < end:
            frame = self._frames[self._next - self._first]
            if frame.emit:
                window = range(max(self._first, self._next - self.radius), min(self._pushed, self._next + self.radius + 1))
                ready.append((frame, [self._frames[i - self._first] for i in window if i != self._next]))
            self._next += 1
            while self._first < self._next - self.radius:
                self._frames.popleft()
                self._first += 1
        return ready


def smoothing_threads() -> int:
    """Threads for ``--temporal``: half the cores, at most 8 (the model and the codecs
    use the rest); one on a 2-core machine, where two sped it up 1.1-1.4x alone and the
    model needs both cores anyway."""
    return max(1, min(8, (os.cpu_count() or 2) // 2))


class TemporalSmoother:
    """Frames in, smoothed frames out, in order, ``radius`` frames later (each needs its
    following neighbours): :meth:`push` each restored frame, then :meth:`flush` at the
    end, and :meth:`close`. A frame pushed with ``emit=False`` serves as a neighbour only:
    a resumed video pushes the frames before its first new one this way, so that the join
    is smoothed as an uninterrupted run's.

    With ``workers`` > 1, frames are smoothed in that many threads (OpenCV releases the
    GIL): :meth:`push` returns the frames finished so far, in order, holding at most
    ``2 * workers`` unfinished, so a fast model (a GPU) is not held to one CPU core's pace."""

    def __init__(self, config: TemporalConfig, workers: int = 1) -> None:
        if config.radius < 1:
            raise ValueError("a TemporalSmoother needs a radius of at least 1")
        self.config = config
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="restore-temporal") if workers > 1 else None
        self._limit = 2 * workers
        self._window = FrameWindow(config.radius)
        self._out: deque[tuple[Future | np.ndarray, object]] = deque()  # smoothed or being smoothed, in order

    def push(self, image: np.ndarray, stamp: object = None, emit: bool = True) -> list[tuple[np.ndarray, object]]:
        self._start(self._window.push(Frame.of(image, stamp, emit)))
        return self._finished(wait_all=False)

    def flush(self) -> list[tuple[np.ndarray, object]]:
        self._start(self._window.flush())
        return self._finished(wait_all=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _start(self, ready: list[tuple[Frame, list[Frame]]]) -> None:
        for frame, neighbours in ready:
            if self._pool is None:
                self._out.append((smooth_in_window(frame, neighbours, self.config), frame.stamp))
            else:
                self._out.append((self._pool.submit(smooth_in_window, frame, neighbours, self.config), frame.stamp))

    def _finished(self, wait_all: bool) -> list[tuple[np.ndarray, object]]:
        out = []
        while self._out:
            result, stamp = self._out[0]
            if isinstance(result, Future) and not (wait_all or result.done() or len(self._out) > self._limit):
                break
            self._out.popleft()
            out.append((result.result() if isinstance(result, Future) else result, stamp))
        return out

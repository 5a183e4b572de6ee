"""How much memory a model's forward pass takes per pixel, measured.

:class:`PeakMemory` runs the model on a small input and follows every tensor storage
created on the way, adding its bytes when it is allocated and taking them off when
Python frees it, which gives the peak of live activations. Activations of these fully
convolutional models grow with the pixel count, so the peak's growth per pixel between
two small sizes carries over to any size (:func:`activation_bytes_per_pixel`). The
engine tiles by it (:mod:`restore_core.engine.memory`); ``restore models MODEL`` shows it.
"""

from __future__ import annotations

import weakref
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class PeakMemory(TorchDispatchMode):
    """Peak bytes of tensor storage alive at once among the storages created inside.

    Storages that existed before entering (weights, the input) are not counted;
    views share their base's storage and are counted once.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._tracked: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor):
                self._track(value.untyped_storage())
        return out

    def _track(self, storage: torch.UntypedStorage) -> None:
        key, size = storage.data_ptr(), storage.nbytes()
        if size == 0 or key in self._tracked:
            return
        self._tracked.add(key)
        self.live += size
        self.peak = max(self.peak, self.live)
        # The storage's Python object lives exactly as long as the storage itself.
        weakref.finalize(storage, self._release, key, size)

    def _release(self, key: int, size: int) -> None:
        self._tracked.discard(key)
        self.live -= size


def peak_activation_bytes(forward: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor) -> int:
    """Peak bytes of tensor storage alive at once while ``forward(example)`` runs."""
    tracker = PeakMemory()
    with torch.inference_mode(), tracker:
        forward(example)
    return tracker.peak


def activation_bytes_per_pixel(forward: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor) -> float:
    """Bytes of activations per pixel: the growth of the peak from ``example`` to an
    input twice its height and width, divided by the pixels added.

    A slope rather than ``peak / pixels``, so that costs that do not grow with the
    image are left out: ADMS builds its merged weights (parameter-sized tensors)
    in every forward pass, which at 128x128 alone would read as 500+ bytes per pixel.
    """
    larger = example.new_zeros(*example.shape[:-2], 2 * example.shape[-2], 2 * example.shape[-1])
    if example.is_contiguous(memory_format=torch.channels_last):
        larger = larger.contiguous(memory_format=torch.channels_last)
    pixels = example.shape[0] * example.shape[-2] * example.shape[-1]
    grown = peak_activation_bytes(forward, larger) - peak_activation_bytes(forward, example)
    return max(grown, 0) / (3 * pixels)


def model_activation_bytes_per_pixel(forward: Callable[[torch.Tensor], torch.Tensor], multiple: int,
                                     dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> float:
    """:func:`activation_bytes_per_pixel` of a model's ``forward`` as the engine runs it:
    channels_last inputs of ``dtype`` on ``device``, 128x128 and up (a multiple of the
    model's ``multiple``, at least 4 of them a side)."""
    side = max(128, 4 * multiple)
    side += (-side) % multiple
    example = torch.zeros(1, 3, side, side, dtype=dtype, device=device).contiguous(memory_format=torch.channels_last)
    return activation_bytes_per_pixel(forward, example)

"""How much host memory a whole-image forward pass needs, and a tile size that fits.

On a GPU an out-of-memory error is an exception the engine catches and answers by
tiling (:class:`restore_core.engine.runner.Restorer`). On a CPU there is no such
error: the kernel's OOM killer ends the process, and with it the whole batch. So
before a large image runs untiled on the CPU, the engine estimates its peak memory
and tiles when the estimate does not fit in what the machine has free.

The estimate is measured, not guessed (:mod:`restore_core.models.activation_memory`:
the model's live activations followed on two small inputs, per pixel), plus what the
pipeline holds per pixel (:data:`PIPELINE_BYTES_PER_PIXEL`).
"""

from __future__ import annotations

from pathlib import Path

# What the pipeline holds per pixel besides the model's activations: the decoded
# image, its float32 copy, the padded input, the float32 output and the encoded
# result. Measured: peak RSS of `restore <task>` on a 2000x1500 image minus that on
# a 64x64 image, per pixel, is 56-58 bytes above PeakMemory's figure for the four
# default models (derain 420 vs 344, ... on the 2-core CPU). With it, the estimates
# of the shipped models (408-700 bytes per pixel) are within 4 % of the RSS growth
# from 400x300 to 2000x1500 (`/usr/bin/time -f %M restore <task> ... --threads 1`);
# the denoiser's since its refinement heads: 816 estimated, 799 measured (to 2000x1504).
PIPELINE_BYTES_PER_PIXEL = 64
# Share of the free memory a single image may plan to use; the rest is headroom for
# the prefetched images, the writer threads and the estimate's error.
MEMORY_BUDGET_SHARE = 0.5
MIN_AUTO_TILE = 256  # smaller tiles cost more overlap than they save


def available_memory_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """``MemAvailable`` of Linux (free memory plus reclaimable caches); None elsewhere."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def gib_text(size: float) -> str:
    """Bytes in GiB for a message: one decimal, two figures below 1 GiB (0.25)."""
    gib = size / 2**30
    return f"{gib:.1f}" if gib >= 1 else f"{gib:.2g}"


def tile_for_budget(bytes_per_pixel: float, budget_bytes: float, multiple: int) -> int:
    """The largest square tile (a multiple of ``multiple``) whose pixels fit the budget."""
    side = int((budget_bytes / bytes_per_pixel) ** 0.5)
    side -= side % multiple
    return max(side, MIN_AUTO_TILE + (-MIN_AUTO_TILE) % multiple)

"""The bundled sample images: scikit-image photographs with this project's rain.

``python -m restore_core.degradations.samples samples/rain`` rebuilds
``samples/rain/input/*.png`` (rainy) and ``samples/rain/target/*.png`` (clean
references) deterministically: the paired layout every benchmark reads. These photographs are not among the training images of the
shipped derain model (see its model card), so the demo is a fair check.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from restore_core.degradations.rain import RainConfig, add_rain
from restore_core.io.files import atomic_write_bytes


def sample_photographs() -> dict[str, np.ndarray]:
    """Name -> uint8 image (RGB or grey) from scikit-image's bundled data."""
    from skimage import data

    left, right = data.stereo_motorcycle()[:2]
    return {
        "motorcycle": cv2.resize(left, (480, 320), interpolation=cv2.INTER_AREA),
        "motorcycle-detail": right[100:420, 200:680],
        "camera": cv2.resize(data.camera(), (320, 320), interpolation=cv2.INTER_AREA),
    }


def make_rain_samples(out_dir: Path, seed: int = 2024) -> list[Path]:
    out_dir = Path(out_dir)
    written = []
    for index, (name, image) in enumerate(sorted(sample_photographs().items())):
        rng = np.random.default_rng([seed, index])
        clean = image.astype(np.float32) / 255.0
        rainy = add_rain(clean, rng, RainConfig(heavy_probability=0.5))
        for folder, pixels in ((out_dir / "input", rainy), (out_dir / "target", clean)):
            arr = np.round(pixels * 255).astype(np.uint8)
            if arr.ndim == 3:
                arr = arr[..., ::-1]
            ok, buf = cv2.imencode(".png", arr)
            assert ok
            path = folder / f"{name}.png"
            atomic_write_bytes(path, buf.tobytes())
            written.append(path)
    return written


def bundled_samples(task: str = "rain") -> Path | None:
    """The folder of bundled sample pairs for ``task`` (source checkout or installed copy)."""
    for root in (Path(__file__).resolve().parents[2] / "samples", Path(sys.prefix) / "share" / "restore" / "samples"):
        if (root / task / "input").is_dir():
            return root / task
    return None


if __name__ == "__main__":
    for p in make_rain_samples(Path(sys.argv[1] if len(sys.argv) > 1 else "samples/rain")):
        print(p)

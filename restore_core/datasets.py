"""Benchmark dataset adapters: the public layouts of the standard test sets.

Each adapter turns a root folder into a list of :class:`Sample` (a degraded
image and its reference, loaded lazily) plus a scoring :class:`Protocol`. When
a layout does not match, :class:`DatasetError` says what was expected and how
many pairs were found. The explicit table :data:`DATASETS` lists them all.

Synthetic-noise sets (clean images only) follow the protocol of
``../shared/data/*_sigma25/SOURCE.md`` so that files made elsewhere are
reproduced bit-exactly: image ``i`` in sorted order, ``rng =
numpy.random.default_rng(1000 * sigma + i)``, noise drawn over the array as
OpenCV reads it (H x W x 3 in BGR order, or H x W), then
``clip(round((clean / 255 + noise) * 255))`` as uint8.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from restore_core.degradations import PAIR_RECORD_NAME
from restore_core.evaluation import Protocol, Sample, file_sample
from restore_core.io.images import LoadedImage, decode_image, read_image
from restore_core.io.folders import (
    PAIR_LAYOUTS, PREFIX_LAYOUTS, ImagesWithoutReferences, describe_layouts, list_images, list_pairs, list_scene_pairs, match_folders, match_prefixed, natural_key, not_a_folder,
    resolve_folder, unpaired_images,
)
from restore_core.presets import declared_task
from restore_core.tasks import RESTORATION_TASKS, TASK_DEGRADATION, task_of_degradation


class DatasetError(ValueError):
    pass


@dataclass
class Dataset:
    name: str
    root: Path
    task: str
    samples: list[Sample]
    protocol: Protocol = field(default_factory=Protocol)
    note: str = ""
    unpaired: list[Path] = field(default_factory=list)  # images of its folders in no pair: left out
    caution: str = ""  # what may make its scores other than its name suggests (said before them)
    labels: dict[str, str] = field(default_factory=dict)  # sample name -> its degradation, where the set says (_degradation_labels)


def _expect(condition: bool, root: Path, expected: str, found: int = 0) -> None:
    if not condition:
        raise DatasetError(f"{root}: layout does not match: expected {expected}; found {found} pair(s)")


def paired(root: Path, layouts=PAIR_LAYOUTS, task: str = "any", name: str = "paired") -> Dataset:
    """Any folder pair of :data:`PAIR_LAYOUTS` (input/target, rainy/norain, ...), or both
    in one folder under the prefixes of :data:`PREFIX_LAYOUTS` (PReNet's rain-N/norain-N)."""
    try:
        pairs = list_pairs(root, layouts)
    except ImagesWithoutReferences as exc:
        raise DatasetError(f"{exc}; clean images are scored under synthetic noise as --dataset cbsd68 (colour) or bsd68 (grey) "
                           "with --sigma, or made into pairs by restore make-pairs") from None
    except ValueError as exc:
        raise DatasetError(str(exc)) from None
    return Dataset(name, root, task, [file_sample(p.name, p, t) for p, t in pairs], unpaired=unpaired_images(pairs))


def rain(root: Path) -> Dataset:
    """Rain100H / Rain100L / Test100 / Rain1200: input|target, rainy|norain, rain|norain,
    or PReNet's one folder of rain-N.png beside norain-N.png; optionally under test/."""
    layouts = (("input", "target"), ("rainy", "norain"), ("rain", "norain"))
    for sub in (root, root / "test"):
        if any(resolve_folder(sub / a) is not None for a, _ in layouts) or match_prefixed(sub):
            return paired(sub, layouts, "derain", "rain")
    _expect(False, root, f"{describe_layouts(layouts)} (optionally under test/)")
    raise AssertionError


def gopro(root: Path) -> Dataset:
    """GoPro: test/<scene>/blur/*.png + test/<scene>/sharp/*.png (or <scene>/... or input/+target/)."""
    pairs = list_scene_pairs(root, "test")
    samples = [file_sample(f"{b.parent.parent.name}/{b.name}", b, s) for b, s in pairs]
    if samples:
        return Dataset("gopro", root, "deblur", samples, unpaired=unpaired_images(pairs))
    if (root / "input").is_dir() or (root / "blur").is_dir():
        return paired(root, (("input", "target"), ("blur", "sharp")), "deblur", "gopro")
    _expect(False, root, "test/<scene>/blur/ + test/<scene>/sharp/, or input/ + target/")
    raise AssertionError


def hide(root: Path) -> Dataset:
    """HIDE: test/test-close-ups/*.png and test/test-long-shot/*.png, references in GT/."""
    gt = root / "GT"
    blur_dirs = [d for d in (root / "test" / "test-close-ups", root / "test" / "test-long-shot") if d.is_dir()]
    if not blur_dirs and (root / "test").is_dir():
        blur_dirs = [root / "test"]
    samples = []
    if gt.is_dir():
        gt_files = {p.name: p for p in list_images(gt)}
        for folder in blur_dirs:
            samples += [file_sample(f"{folder.name}/{p.name}", p, gt_files[p.name]) for p in list_images(folder) if p.name in gt_files]
    _expect(bool(samples), root, "GT/*.png and test/test-close-ups/ or test/test-long-shot/ with the same names")
    return Dataset("hide", root, "deblur", samples)


def realblur(root: Path, variant: str) -> Dataset:
    """RealBlur-J / -R: RealBlur_<J|R>_test_list.txt ('gt path  blur path' per line), or
    <scene>/blur/blur_N.png + <scene>/gt/gt_N.png found under the root."""
    letter = variant[-1].upper()
    samples = []
    listing = root / f"RealBlur_{letter}_test_list.txt"
    if listing.is_file():
        for line in listing.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2:
                gt, blur = root / parts[0], root / parts[1]
                samples.append(file_sample(parts[1], blur, gt))
    else:
        for blur_dir in sorted(root.glob("**/blur")):
            if (blur_dir.parent / "gt").is_dir() and (f"RealBlur-{letter}" in str(blur_dir) or "RealBlur" not in str(blur_dir)):
                for b, g in match_folders(blur_dir, blur_dir.parent / "gt"):
                    samples.append(file_sample(str(b.relative_to(root)), b, g))
    _expect(bool(samples), root, f"RealBlur_{letter}_test_list.txt, or <scene>/blur/blur_N.png + <scene>/gt/gt_N.png")
    return Dataset(f"realblur-{letter.lower()}", root, "deblur", samples)


def sots(root: Path, variant: str) -> Dataset:
    """RESIDE SOTS: hazy/<id>_<k>.png against clear/<id>.png (many hazy per clear), or
    input/ + target/ with the same names. Indoor references carry a 10-pixel white
    border (640x480 vs 620x460): cropped as ``gt[10:470, 10:630]``."""
    samples = []
    for hazy_name, clear_name in (("hazy", "clear"), ("hazy", "gt"), ("input", "target")):
        hazy_dir, clear_dir = resolve_folder(root / hazy_name), resolve_folder(root / clear_name)
        if hazy_dir is not None and clear_dir is not None:
            clear = {p.stem: p for p in list_images(clear_dir)}
            for h in list_images(hazy_dir):
                ref = clear.get(h.stem) or clear.get(h.stem.split("_")[0])
                if ref is not None:
                    crop = (10, 470, 10, 630) if variant == "indoor" else None
                    samples.append(file_sample(h.name, h, ref, crop))
            break
    _expect(bool(samples), root, "hazy/<id>_<k>.png + clear/<id>.png (or gt/), or input/ + target/")
    samples.sort(key=lambda s: natural_key(Path(s.name)))
    return Dataset(f"sots-{variant}", root, "dehaze", samples, note="indoor targets cropped [10:470, 10:630]" if variant == "indoor" else "")


def add_gaussian_noise_float(clean_as_read: np.ndarray, sigma: float, index: int) -> np.ndarray:
    """The fixed noise protocol's noisy image before 8-bit rounding and clipping: float64
    in [0, 1] plus the seeded noise, values outside [0, 1] kept (the papers' protocol)."""
    rng = np.random.default_rng(int(1000 * sigma + index))
    return clean_as_read / 255.0 + rng.normal(0.0, sigma / 255.0, clean_as_read.shape)


def add_gaussian_noise(clean_as_read: np.ndarray, sigma: float, index: int) -> np.ndarray:
    """The fixed noise protocol (module docstring) on an array as OpenCV reads it."""
    noisy = add_gaussian_noise_float(clean_as_read, sigma, index)
    return np.clip(np.round(noisy * 255.0), 0, 255).astype(np.uint8)


def _float_image(noisy_as_read: np.ndarray) -> LoadedImage:
    """An OpenCV-ordered float array (H x W, or H x W x 3 BGR) as a LoadedImage whose
    ``rgb`` keeps the values outside [0, 1]."""
    if noisy_as_read.ndim == 2:
        rgb, layout = np.repeat(noisy_as_read[..., None], 3, axis=2), "grey"
    else:
        rgb, layout = noisy_as_read[..., ::-1], "rgb"
    return LoadedImage(np.ascontiguousarray(rgb, dtype=np.float32), layout, 8)


def synthetic_noise(root: Path, sigma: float, name: str = "noise", float_noise: bool = False) -> Dataset:
    """Clean images only (CBSD68, Kodak24, McMaster, BSD68, Set12, any folder) with
    Gaussian noise at ``sigma`` under the fixed, documented seed protocol.

    ``float_noise``: the same noise, but the noisy image is neither rounded to 8 bits
    nor clipped to [0, 1] (never written to a file): the protocol of most papers, and of
    published figures such as CBM3D's 30.71 dB on CBSD68 at sigma 25 (the shared data's
    SOURCE.md puts the 8-bit protocol about 0.3 dB lower for such methods; this project's
    models, which see the image clipped to [0, 1], score about the same under both).
    Outputs are scored on the 8-bit grid either way."""
    files = list_images(root)
    _expect(bool(files), root, "a folder of clean images")
    samples = []
    for index, path in enumerate(files):
        def load_degraded(path=path, index=index) -> LoadedImage:
            as_read = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if as_read is None:
                raise DatasetError(f"{path}: cannot decode")
            if as_read.dtype != np.uint8:
                raise DatasetError(f"{path}: the noise protocol is defined for 8-bit images")
            if as_read.ndim == 3 and as_read.shape[2] == 4:
                as_read = as_read[..., :3]
            if float_noise:
                return _float_image(add_gaussian_noise_float(as_read.astype(np.float64), sigma, index))
            ok, encoded = cv2.imencode(".png", add_gaussian_noise(as_read.astype(np.float64), sigma, index))
            return decode_image(encoded.tobytes(), path)

        samples.append(Sample(path.name, load_degraded, lambda path=path: read_image(path).rgb))
    suffix, kind = ("-float", "float (not rounded, not clipped)") if float_noise else ("", "clipped, 8-bit")
    return Dataset(f"{name}-sigma{sigma:g}{suffix}", root, "denoise", samples, note=f"Gaussian sigma {sigma:g}, seed 1000*sigma+i, {kind}",
                   caution=_layout_caution(name, files[0]))


def sidd(root: Path) -> Dataset:
    """SIDD validation: ValidationNoisyBlocksSrgb.mat and ValidationGtBlocksSrgb.mat
    (40 images x 32 blocks of 256x256 sRGB)."""
    from scipy.io import loadmat

    noisy_path, gt_path = root / "ValidationNoisyBlocksSrgb.mat", root / "ValidationGtBlocksSrgb.mat"
    _expect(noisy_path.is_file() and gt_path.is_file(), root, "ValidationNoisyBlocksSrgb.mat and ValidationGtBlocksSrgb.mat")
    noisy = loadmat(str(noisy_path))["ValidationNoisyBlocksSrgb"]
    gt = loadmat(str(gt_path))["ValidationGtBlocksSrgb"]
    samples = []
    for i in range(noisy.shape[0]):
        for j in range(noisy.shape[1]):
            def load_degraded(i=i, j=j) -> LoadedImage:
                return LoadedImage(noisy[i, j].astype(np.float32) / 255.0, "rgb", 8)

            samples.append(Sample(f"{i:02d}_{j:02d}", load_degraded, lambda i=i, j=j: gt[i, j].astype(np.float32) / 255.0))
    return Dataset("sidd", root, "denoise", samples)


CLEAN_SETS = ("cbsd68", "kodak24", "mcmaster", "bsd68", "set12")
GREY_SETS = ("bsd68", "set12")  # the others are colour sets


def _layout_caution(name: str, first: Path) -> str:
    """A named clean set whose images are not of its kind (``--dataset bsd68`` over
    CBSD68's colour files, or ``cbsd68`` over grey ones): scored as they are, under a
    name that says otherwise. Judged from the first image; empty when it fits."""
    as_read = cv2.imread(str(first), cv2.IMREAD_UNCHANGED)
    if name not in CLEAN_SETS or as_read is None:
        return ""
    colour = as_read.ndim == 3 and as_read.shape[2] >= 3 and not (
        np.array_equal(as_read[..., 0], as_read[..., 1]) and np.array_equal(as_read[..., 1], as_read[..., 2]))
    colour_sets = [n for n in CLEAN_SETS if n not in GREY_SETS]
    if name in GREY_SETS and colour:
        return (f"{name} names a grey set, but {first.name} is in colour: the images are noised and scored in colour, "
                f"as a colour set ({', '.join(colour_sets)}) is")
    if name not in GREY_SETS and not colour:
        return (f"{name} names a colour set, but {first.name} is grey: the images are noised and scored in grey, "
                f"as a grey set ({', '.join(GREY_SETS)}) is")
    return ""

# name -> (adapter, task, description). ``sigma`` is passed to the noise sets.
DATASETS: dict[str, tuple[Callable[..., Dataset], str, str]] = {
    "paired": (paired, "any", "any folder pair: input/+target/, rainy/+norain/, hazy/+clear/, blur/+sharp/, noisy/+clean/"),
    "rain100h": (rain, "derain", "Rain100H: input|target, rainy|norain or rain|norain"),
    "rain100l": (rain, "derain", "Rain100L: same layouts as Rain100H"),
    "test100": (rain, "derain", "Test100 (Rain800 test): same layouts"),
    "rain1200": (rain, "derain", "Rain1200 (DID-MDN test): same layouts"),
    "gopro": (gopro, "deblur", "GoPro: test/<scene>/blur|sharp, or input/target"),
    "hide": (hide, "deblur", "HIDE: test/test-close-ups|test-long-shot + GT/"),
    "realblur-j": (lambda root: realblur(root, "j"), "deblur", "RealBlur-J: RealBlur_J_test_list.txt or <scene>/blur|gt"),
    "realblur-r": (lambda root: realblur(root, "r"), "deblur", "RealBlur-R: RealBlur_R_test_list.txt or <scene>/blur|gt"),
    "sidd": (sidd, "denoise", "SIDD validation .mat blocks"),
    "sots-indoor": (lambda root: sots(root, "indoor"), "dehaze", "RESIDE SOTS indoor: hazy|clear, targets cropped by 10 px"),
    "sots-outdoor": (lambda root: sots(root, "outdoor"), "dehaze", "RESIDE SOTS outdoor: hazy|clear"),
    **{name: (synthetic_noise, "denoise", f"{name}: clean images + Gaussian noise at --sigma") for name in CLEAN_SETS},
}


def dataset_task(name: str) -> str | None:
    """The task a named dataset is for (``denoise`` for ``cbsd68``), or None for
    ``paired`` (any task) and unknown names."""
    entry = DATASETS.get(name)
    return None if entry is None or entry[1] == "any" else entry[1]


def _pair_record(root: Path | None) -> dict:
    """The ``degradation.json`` of a paired set ``restore make-pairs`` made; {} for any
    other folder, or a record that cannot be read."""
    if root is None:
        return {}
    try:
        record = json.loads((Path(root) / PAIR_RECORD_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def recorded_degradation(root: Path | None) -> str | None:
    """The degradation a paired set ``restore make-pairs`` made records in its
    ``degradation.json`` (``noise``, ``mixed``, ...); None for any other folder, or a
    record that cannot be read."""
    degradation = _pair_record(root).get("degradation")
    return degradation if isinstance(degradation, str) else None


def recorded_labels(root: Path | None) -> dict[str, str]:
    """For a mixed set ``restore make-pairs`` made: each pair's file name -> the
    degradation it got (its record's ``per_image``); {} for any other folder."""
    labels = _pair_record(root).get("per_image")
    if not isinstance(labels, dict):
        return {}
    return {name: label for name, label in labels.items() if isinstance(name, str) and isinstance(label, str)}


def recorded_task(root: Path | None) -> str | None:
    """The task of a paired set ``restore make-pairs`` made (:func:`recorded_degradation`
    ``noise``: a denoising set; ``mixed``: ``auto``), else None."""
    return task_of_degradation(recorded_degradation(root))


# The degraded half of a paired folder named after its degradation: rainy/ + norain/,
# hazy/ + clear/ or gt/, ... (input/ and lq/ say nothing).
_TASK_OF_DEGRADED_FOLDER = {"rainy": "derain", "rain": "derain", "hazy": "dehaze", "blur": "deblur", "noisy": "denoise"}


def layout_task(root: Path | None) -> str | None:
    """The task a paired folder's names give (``noisy/`` + ``clean/``: denoise; PReNet's
    ``rain-N`` beside ``norain-N``: derain), or None (``input/`` + ``target/`` say nothing)."""
    if root is None:
        return None
    named = [task for folder, task in _TASK_OF_DEGRADED_FOLDER.items() if (Path(root) / folder).is_dir()]
    if any(any(Path(root).glob(f"{reference}*")) for _, reference in PREFIX_LAYOUTS):  # all of them rain sets
        named.append("derain")
    if len(set(named)) == 1:
        return named[0]
    return None


def models_task(models: list[str]) -> str | None:
    """The task every model of ``models`` declares (an all-in-one model's: ``auto``), or
    None where they differ or one cannot be read (:func:`presets.declared_task`)."""
    declared = {"auto" if task == "all" else task for task in map(declared_task, models)}
    return declared.pop() if len(declared) == 1 and declared <= {*RESTORATION_TASKS, "auto"} else None


def benchmark_task(dataset: str, root: Path | None, models: list[str]) -> str | None:
    """The task of a benchmark not told one, which picks the default model, the
    self-ensemble's views and what an all-in-one model removes: the named dataset's
    (``cbsd68``: denoise); else the degradation a ``make-pairs`` set records; else its
    folders' names (``hazy/``: dehaze); else the task all the given models share; None
    where nothing says (the caller falls back on derain, and says so)."""
    return set_task(dataset, root) or models_task(models)


def set_task(dataset: str, root: Path | None) -> str | None:
    """The task a set itself declares: the named dataset's, a ``make-pairs`` record's, or
    its folders' names' (:func:`benchmark_task` without the models); None where it does not."""
    return dataset_task(dataset) or recorded_task(root) or layout_task(root)


def load_dataset(name: str, root: Path, sigma: float = 25.0, float_noise: bool = False) -> Dataset:
    """``sigma`` and ``float_noise`` (see :func:`synthetic_noise`) apply to the clean-only
    denoising sets; ``float_noise`` on any other set is an error."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    if not root.is_dir():
        raise DatasetError(not_a_folder(root))
    adapter = DATASETS[name][0]
    if adapter is synthetic_noise:
        data = synthetic_noise(root, sigma, name, float_noise)
    elif float_noise:
        raise DatasetError(f"--float-noise applies to the clean-only denoising sets ({', '.join(CLEAN_SETS)}), not {name}")
    else:
        try:
            data = adapter(root)
        except DatasetError:
            raise
        except ValueError as exc:  # an ambiguous pairing (io.folders)
            raise DatasetError(str(exc)) from None
    data.labels = _degradation_labels(data, name, root)
    return data


def _degradation_labels(data: Dataset, name: str, root: Path) -> dict[str, str]:
    """Each sample's degradation, where the set says: a mixed ``make-pairs`` set's record,
    or the one degradation of a set whose task is known (:func:`set_task`); else {}."""
    if labels := recorded_labels(root):
        return {sample.name: labels[sample.name] for sample in data.samples if sample.name in labels}
    degradation = TASK_DEGRADATION.get(set_task(name, root) or "")
    return {sample.name: degradation for sample in data.samples} if degradation else {}


def embedded_dataset(task: str) -> Dataset:
    """A small deterministic set for ``task`` that needs no data: the bundled sample
    pairs for derain; for the other tasks the bundled clean photographs with this
    project's synthetic degradation under a fixed seed; for ``auto`` all four of them
    (``rain/camera.png``, ``noise/camera.png``, ...), each sample labelled with its
    degradation."""
    from restore_core.degradations.samples import bundled_samples

    root = bundled_samples()
    if root is None:
        raise DatasetError("the bundled samples are not installed; pass --root")
    if task == "derain":
        return paired(root, task="derain", name="samples-rain")
    if task == "auto":
        samples = [Sample(f"rain/{sample.name}", sample.load_degraded, sample.load_target)
                   for sample in paired(root, task="derain").samples]
        for other in ("deblur", "denoise", "dehaze"):
            samples += _synthetic_samples(root / "target", _embedded_degradation(other), folder_name=TASK_DEGRADATION[other])
        return Dataset("samples-auto", root, task, samples, labels={s.name: s.name.split("/")[0] for s in samples},
                       note="bundled photographs with each of the four degradations: rain as bundled, the others synthetic, seed [7, i]")
    degrade = _embedded_degradation(task)
    return Dataset(f"samples-{task}", root / "target", task, _synthetic_samples(root / "target", degrade),
                   note=f"bundled photographs with synthetic {task} degradation, seed [7, i]")


def _embedded_degradation(task: str) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    """The synthetic degradation of ``task``'s embedded set."""
    from restore_core.degradations.blur import add_motion_blur
    from restore_core.degradations.haze import add_haze
    from restore_core.degradations.noise import gaussian_noise

    degrade = {
        "denoise": lambda img, rng: gaussian_noise(img, 25, rng),
        "deblur": add_motion_blur,
        "dehaze": add_haze,
    }.get(task)
    if degrade is None:
        raise DatasetError(f"no embedded dataset for task {task!r}; pass --root")
    return degrade


def _synthetic_samples(folder: Path, degrade: Callable[[np.ndarray, np.random.Generator], np.ndarray], folder_name: str = "") -> list[Sample]:
    """The images of ``folder`` as samples degraded on load, image i with
    ``default_rng([7, i])``; named ``folder_name/NAME`` when given."""
    samples = []
    for index, path in enumerate(list_images(folder)):
        def load_degraded(path=path, index=index) -> LoadedImage:
            clean = read_image(path)
            rng = np.random.default_rng([7, index])
            return LoadedImage(degrade(clean.rgb, rng), clean.layout, clean.bit_depth)

        samples.append(Sample(f"{folder_name}/{path.name}" if folder_name else path.name, load_degraded, lambda path=path: read_image(path).rgb))
    return samples

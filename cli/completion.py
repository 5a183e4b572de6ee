"""Shell completion of option values (``restore --install-completion`` sets it up).

Each function takes what the user has typed of a value and returns the values that
start with it, with a short help where the shell shows one (zsh, fish). They run at
every Tab press, in a fresh process: the tables they read import no torch.
"""

from __future__ import annotations

import glob
import os

Choices = list[tuple[str, str]]


def _starting_with(incomplete: str, choices: Choices) -> Choices:
    return [(value, help_text) for value, help_text in choices if value.startswith(incomplete)]


def _paths(incomplete: str, extension: str) -> Choices:
    """Folders and ``extension`` files whose path starts with ``incomplete``."""
    found = []
    for path in sorted(glob.glob(glob.escape(incomplete) + "*")):
        if os.path.isdir(path):
            found.append((path + os.sep, ""))
        elif path.lower().endswith(extension):
            found.append((path, ""))
    return found


def models(incomplete: str) -> Choices:
    """``--model``: the preset names (shipped weights first), then, once a path is begun,
    the folders and ``.safetensors`` files it leads to."""
    from restore_core.presets import PRESETS

    shipped = [(name, f"{p.task}, shipped weights") for name, p in PRESETS.items() if p.weights]
    untrained = [(name, f"{p.task}, architecture only") for name, p in PRESETS.items() if not p.weights]
    return _starting_with(incomplete, shipped + untrained) + (_paths(incomplete, ".safetensors") if incomplete else [])


def devices(incomplete: str) -> Choices:
    return _starting_with(incomplete, [("auto", "CUDA if present, else CPU"), ("cpu", ""), ("cuda", "the first GPU"),
                                       ("cuda:0", ""), ("cuda:1", "")])


def precisions(incomplete: str) -> Choices:
    return _starting_with(incomplete, [("auto", "bf16/fp16 on CUDA, fp32 on CPU"), ("fp32", ""), ("fp16", ""), ("bf16", "")])


def output_formats(incomplete: str) -> Choices:
    """``--ext``: the image and video formats this install writes."""
    from restore_core.io.images import SUPPORTED_EXTENSIONS
    from restore_core.io.video import WRITABLE_VIDEO_EXTENSIONS

    images = [(ext.lstrip("."), "image") for ext in SUPPORTED_EXTENSIONS]
    videos = [(ext.lstrip("."), "video") for ext in WRITABLE_VIDEO_EXTENSIONS]
    return _starting_with(incomplete.lstrip("."), images + videos)


def frame_formats(incomplete: str) -> Choices:
    """``--frames``: image formats (png and tif keep 16 bits, heic 10)."""
    from restore_core.io.images import SUPPORTED_EXTENSIONS, kept_bits

    return _starting_with(incomplete.lstrip("."), [(ext.lstrip("."), f"{bits} bits" if (bits := kept_bits(16, ext)) > 8 else "")
                                                   for ext in SUPPORTED_EXTENSIONS])


def noise_levels(incomplete: str) -> Choices:
    """``--sigma`` (and the benchmark's ``--model-sigma``)."""
    return _starting_with(incomplete, [("auto", "estimated per image, two looks (default)"), ("quick", "estimated from the image alone"),
                                       ("blind", "the model's blind path"), ("15", "told the level"), ("25", "told the level"),
                                       ("50", "told the level")])


def tasks(incomplete: str) -> Choices:
    """``--task``: the tasks of the preset table, each with its default model."""
    from restore_core.presets import DEFAULT_MODEL_FOR_TASK

    return _starting_with(incomplete, [(task, f"default model {model}") for task, model in DEFAULT_MODEL_FOR_TASK.items()])


# The names of restore_core.degradations.table.DEGRADATIONS (a test keeps them equal),
# spelled out here because that table imports torch and a Tab press must not.
DEGRADATION_NAMES = ("rain", "noise", "motion-blur", "haze", "mixed")


def degradations(incomplete: str) -> Choices:
    """``restore make-pairs --degradation``."""
    return _starting_with(incomplete, [(name, "synthetic degradation") for name in DEGRADATION_NAMES])


def recipes(incomplete: str) -> Choices:
    from restore_core.training.recipes import RECIPES

    return _starting_with(incomplete, [(name, recipe.task) for name, recipe in RECIPES.items()])


def datasets(incomplete: str) -> Choices:
    from restore_core.datasets import DATASETS

    return _starting_with(incomplete, [(name, task) for name, (_, task, _) in DATASETS.items()])

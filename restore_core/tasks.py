"""The tasks a model can be for, and the check that a checkpoint or recipe names one.

Plain data, imported by the checkpoint format, the recipes and the CLI alike (no torch).
"""

from __future__ import annotations

from restore_core.configs import did_you_mean

# Which degradation (of restore_core.degradations) each restoration task removes: ADMS
# forces it for a task command; a set made by `restore make-pairs -d noise` is a denoising set.
TASK_DEGRADATION: dict[str, str] = {"derain": "rain", "deblur": "motion-blur", "denoise": "noise", "dehaze": "haze"}
RESTORATION_TASKS = tuple(TASK_DEGRADATION)
# What an all-in-one model's classifier with a clean class (models.adms.ClassifierConfig)
# names an image with none of the degradations; `restore auto` writes such an image unchanged.
CLEAN = "clean"


def task_of_degradation(degradation: str | None) -> str | None:
    """The task that removes ``degradation`` (``noise``: denoise; ``mixed``, one of the
    four per image: auto), or None for a name that is none of them."""
    if degradation == "mixed":
        return "auto"
    return next((task for task, removed in TASK_DEGRADATION.items() if removed == degradation), None)


# What a checkpoint's ``task`` may say: one of the four restorations, "all" (an
# all-in-one model, ADMS) or "any" (an architecture without a task of its own).
MODEL_TASKS = (*RESTORATION_TASKS, "all", "any")


def check_model_task(task: str, what: str = "task") -> None:
    """Raise ValueError unless ``task`` is one of :data:`MODEL_TASKS`: a checkpoint that
    records "denoize" would be warned about ("trained for denoize") wherever it runs.
    ``what``: how the message names the value (an option, such as ``--task``)."""
    if task not in MODEL_TASKS:
        raise ValueError(f"{what} {task!r}{did_you_mean(task, MODEL_TASKS)}: a model's task is one of {', '.join(MODEL_TASKS)}")

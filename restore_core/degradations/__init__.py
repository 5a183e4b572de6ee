"""Synthetic degradations: rain, noise, motion blur and haze (one module each), and the
table that names them (:mod:`restore_core.degradations.table`)."""

# The table's single degradations by name, in its order: here so that recipes check
# names without importing the table (which imports torch, and `--help` should not).
SINGLE_DEGRADATIONS = ("rain", "noise", "motion-blur", "haze")

# Which degradation each restoration task removes (ADMS forces it for a task command;
# a set made by `restore make-pairs -d noise` is a denoising set).
TASK_DEGRADATION: dict[str, str] = {"derain": "rain", "deblur": "motion-blur", "denoise": "noise", "dehaze": "haze"}

# What `restore make-pairs` writes beside a set's input/ and target/: how it was made.
PAIR_RECORD_NAME = "degradation.json"

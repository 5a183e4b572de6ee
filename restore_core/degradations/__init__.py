"""Synthetic degradations: rain, noise, motion blur and haze (one module each, NumPy and
OpenCV), the table that names them (:mod:`restore_core.degradations.table`), and how much
noise an image holds (:mod:`restore_core.degradations.noise_level`, the one that needs torch)."""

# The table's single degradations by name, in its order: here so that recipes check
# names without importing the table (which imports OpenCV, and `--help` should not).
SINGLE_DEGRADATIONS = ("rain", "noise", "motion-blur", "haze")

# What `restore make-pairs` writes beside a set's input/ and target/: how it was made.
PAIR_RECORD_NAME = "degradation.json"

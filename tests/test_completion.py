"""Shell completion of option values: the functions, and the protocol bash speaks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli import completion


def values(choices: list[tuple[str, str]]) -> list[str]:
    return [value for value, _ in choices]


def test_values_are_completed_from_the_projects_own_tables(tmp_path):
    """Presets (shipped weights first, each with its task), checkpoint files once a path
    is begun (folders to descend into; other files left out), formats this install
    writes, recipes, datasets, noise levels."""
    assert values(completion.models("infoflow-de")) == ["infoflow-denoise", "infoflow-denoise-grey", "infoflow-dehaze"]
    assert dict(completion.models("adms"))["adms"] == "all, shipped weights"
    assert "golf-paper" in values(completion.models("")) and not any("/" in v for v in values(completion.models("")))
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "last.safetensors").touch()
    (tmp_path / "runs" / "log.csv").touch()
    prefix = str(tmp_path / "runs") + os.sep
    assert values(completion.models(prefix)) == [prefix + "a" + os.sep, prefix + "last.safetensors"]
    assert values(completion.output_formats("m")) == ["mp4", "m4v", "mov", "mkv", "mts", "m2ts"]
    assert values(completion.output_formats(".pn")) == ["png", "pnm"]
    assert values(completion.noise_levels("b")) == ["blind"]
    assert values(completion.recipes("golf")) == ["golf-deblur"]
    assert values(completion.datasets("sots")) == ["sots-indoor", "sots-outdoor"]
    assert values(completion.precisions("")) == ["auto", "fp32", "fp16", "bf16"]
    assert values(completion.degradations("m")) == ["motion-blur", "mixed"]


def test_the_degradation_names_completed_are_the_tables():
    """Spelled out in cli/completion.py (the table imports torch); kept equal here."""
    from restore_core.degradations.table import DEGRADATIONS

    assert completion.DEGRADATION_NAMES == tuple(DEGRADATIONS)


def test_bash_completes_subcommands_and_option_values_without_loading_torch(tmp_path):
    """`restore --install-completion` wires the shell to the console script, which
    answers through environment variables; each Tab press is a fresh process, so it must
    not import torch (the check: it answers in a process where torch cannot be imported)."""
    script = Path(sys.executable).with_name("restore")
    if not script.exists():
        pytest.skip("the restore console script is not installed beside this Python")

    blocker = tmp_path / "torch"  # a torch package that cannot be imported, first on the path
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('torch imported while completing a command line')\n")

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        env = {**os.environ, "_RESTORE_COMPLETE": "complete_bash", "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1),
               "PYTHONPATH": str(tmp_path)}
        result = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert complete("restore de") == ["derain", "deblur", "denoise", "dehaze"]
    assert complete("restore denoise a b --sigma b") == ["blind"]
    assert complete("restore derain a b --model taylor") == ["taylor-derain", "taylor-unet-s"]
    assert complete("restore train --recipe adm") == ["adms"]

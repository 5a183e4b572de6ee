"""``restore convert``: a third-party PyTorch state dict -> a restore safetensors checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from cli.console import fail, os_cause, say
from restore_core.configs import did_you_mean
from restore_core.presets import PRESETS
from restore_core.tasks import check_model_task


def convert(
    source: Path = typer.Argument(..., metavar="IN", help="A .pth/.pt/.ckpt state dict (read with torch.load(weights_only=True)), or a .safetensors file of bare tensors."),
    out: Path = typer.Argument(..., metavar="OUT", help="The .safetensors checkpoint to write."),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help=f"Architecture and config of a preset ({', '.join(PRESETS)})."),
    architecture: Optional[str] = typer.Option(None, "--architecture", help="Architecture name, with --config, instead of --preset."),
    config: str = typer.Option("{}", "--config", help="Architecture config as JSON (with --architecture)."),
    task: Optional[str] = typer.Option(None, "--task", help="Task recorded in the checkpoint (default: the preset's)."),
    key: Optional[str] = typer.Option(None, "--key", help="The entry of IN's dict holding the weights (net_g, params, ...); "
                                      "default: the file itself, params_ema, params, state_dict, ..., or its only state dict."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
) -> None:
    """Import PyTorch weights whose architecture this project knows; never runs code from the file.

    Examples:

        restore convert unet_s.pth unet_s.safetensors --preset unet-s --task denoise

        restore convert net.pth net.safetensors --architecture unet --config '{"width": 32}' --task derain

        restore convert gan_step_90000.pth g.safetensors --preset infoflow-s --task denoise --key net_g
    """
    # The options and the paths first, torch (about 1 s) after: a mistake is answered at once.
    if (preset is None) == (architecture is None):
        fail("give exactly one of --preset or --architecture", code=2)
    if preset is not None and config != "{}":  # it was ignored: the preset's own config was written
        fail("--config goes with --architecture; --preset brings its preset's config (for another, give --architecture "
             f"{PRESETS[preset].architecture if preset in PRESETS else 'NAME'} --config '{{...}}')", code=2)
    if preset is not None:
        if preset not in PRESETS:
            fail(f"unknown preset {preset!r}{did_you_mean(preset, PRESETS)}; known: {', '.join(PRESETS)}", code=2)
        arch, arch_config, default_task = PRESETS[preset].architecture, PRESETS[preset].config, PRESETS[preset].task
    else:
        try:
            arch_config = json.loads(config)
        except json.JSONDecodeError as exc:
            fail(f"--config is not valid JSON: {exc}", code=2)
        arch, default_task = architecture, "any"
    if task is not None:
        try:
            check_model_task(task, "--task")
        except ValueError as exc:
            fail(str(exc), code=2)
    if out.exists() and not overwrite:
        fail(f"{out} already exists; pass --overwrite", code=2)
    if out.suffix != ".safetensors":
        fail(f"{out}: the output must be a .safetensors file", code=2)
    if not source.is_file():
        fail(f"{source}: no such file" if not source.exists() else f"{source}: a folder, not a weights file", code=1)

    from restore_core.checkpoint import CheckpointError, read_metadata
    from restore_core.configs import ConfigError
    from restore_core.convert import convert as convert_file
    from restore_core.models import parse_config

    if architecture is not None:
        try:  # the option that is wrong, before the file is read
            parse_config(arch, arch_config)
        except ConfigError as exc:
            fail(f"--architecture/--config: {exc}", code=2)
    try:
        written = convert_file(source, out, arch, arch_config, task or default_task, key)
    except CheckpointError as exc:
        fail(str(exc), code=1)
    except OSError as exc:
        fail(f"{out}: cannot write: {os_cause(exc)}", code=1)
    print(written)
    entry = read_metadata(written)["recipe"].get("source_entry")
    say(f"converted {source}{f' (its entry {entry})' if entry else ''} -> {written} ({arch})")

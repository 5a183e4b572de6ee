"""``restore models``: the shipped weights, or every architecture preset."""

from __future__ import annotations

import json
from typing import Any, Optional

import typer
from rich.table import Table

from cli import completion
from cli.console import cell, fail, print_json, say, table_console
from restore_core.presets import PRESETS, shipped_weights


_HEADLINE = {"psnr_y": "Y", "psnr_rgb": "RGB", "psnr": ""}  # the PSNR entries of a card, as the table names them


def _headline(metrics: dict) -> str:
    """A card's PSNR entries, one item a set: ``Rain100H_dev50/all50 28.16 Y / 26.70 RGB``
    (``set/psnr_y``, ``set/psnr_rgb``; ``set/psnr`` for grey sets, unlabelled)."""
    by_set: dict[str, dict[str, float]] = {}
    for key in sorted(metrics):
        where, _, name = key.rpartition("/")
        if name in _HEADLINE and isinstance(metrics[key], (int, float)):
            by_set.setdefault(where or "-", {})[name] = metrics[key]
    return ", ".join(
        f"{where} " + " / ".join(f"{values[name]:.2f}{' ' + label if label else ''}" for name, label in _HEADLINE.items() if name in values)
        for where, values in by_set.items()
    ) or "-"


def _giga(macs: int) -> str:
    """Multiply-accumulates as papers print them: ``4.20 G``."""
    return f"{macs / 1e9:.2f} G"


def _flat(metrics: dict, prefix: str = "") -> dict[str, Any]:
    """Nested metrics as ``a/b/c`` keys."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    return value if isinstance(value, str) else json.dumps(value)


CONFIG_SHOWN = 600  # characters of a config shown as text (an ADMS file's filter lists run to 20,000)


def _brief(text: str, limit: int = CONFIG_SHOWN) -> str:
    """``text``, or its first ``limit`` characters and how much more there is."""
    return text if len(text) <= limit else f"{text[:limit]} ... ({len(text):,} characters in all: --json shows them)"


def _memory(bytes_per_pixel: int) -> str:
    """The CPU memory an image needs untiled, per megapixel and for a 12-megapixel photograph."""
    per_megapixel = bytes_per_pixel * 1e6 / 2**30
    return (f"{bytes_per_pixel:,} bytes a pixel on the CPU (fp32): {per_megapixel:.2f} GiB a megapixel, "
            f"{12 * per_megapixel:.1f} GiB for a 12-megapixel photograph untiled (--max-memory tiles to fit)")


def _describe(spec: str, as_json: bool) -> None:
    """``restore models MODEL``: one model, whole (core: presets.model_details)."""
    from restore_core.checkpoint import CheckpointError
    from restore_core.engine.memory import PIPELINE_BYTES_PER_PIXEL
    from restore_core.presets import model_details

    try:
        details = model_details(spec)
    except CheckpointError as exc:
        fail(str(exc), code=2)
    details["cpu_memory_bytes_per_pixel"] = details["activation_bytes_per_pixel"] + PIPELINE_BYTES_PER_PIXEL  # what restore plans with
    if as_json:
        print_json(details, indent=2)
        return
    recipe, data = details["recipe"], details["recipe"].get("data") or {}
    rows = [
        ("file", details["path"]), ("sha256", details["sha256"]), ("task", details["task"]),
        ("architecture", f"{details['architecture']}, {details['parameters']:,} parameters, {_giga(details['macs'])} "
                         f"multiply-accumulates at {details['macs_input'][0]}x{details['macs_input'][1]}; inputs padded to a multiple of "
                         f"{details['size_multiple']}; half precision: {'yes' if details['supports_half'] else 'no'}"
                         + ("; trained on grey images only" if details["grey_only"] else "")),
        ("memory", _memory(details["cpu_memory_bytes_per_pixel"])),
        ("config", _brief(json.dumps(details["config"], separators=(", ", ": ")))),
    ]
    if recipe.get("converted_from"):
        entry = f", its entry {recipe['source_entry']}" if recipe.get("source_entry") else ""
        rows.append(("recipe", f"none: imported by restore convert from {recipe['converted_from']}{entry} (sha256 {recipe.get('source_sha256', '?')})"))
    elif recipe:
        steps = recipe.get("trained_steps", recipe.get("steps"))
        rows.append(("recipe", f"{recipe.get('name', '?')}: {steps} steps of {recipe.get('batch_size', '?')} patches of "
                               f"{recipe.get('patch_size', '?')} pixels, lr {recipe.get('lr', '?')}"
                               + (f", {recipe['precision']}" if recipe.get("precision") else "")))
        if recipe.get("objective"):
            rows.append(("objective", recipe["objective"]))
        for field, label in (("paired", "paired data"), ("clean", "clean data"), ("validation", "validation")):
            if data.get(field):
                rows.append((label, ", ".join(data[field])))
    else:
        rows.append(("recipe", "none recorded (imported weights, or a file written outside restore train)"))
    rows += [(f"metric {key}", _value(value)) for key, value in _flat(details["metrics"]).items()]
    if details["card"]:
        rows.append(("model card", details["card"]))
    table = Table(title=cell(details["name"]), show_header=False, box=None, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for label, value in rows:
        table.add_row(label, cell(str(value)))
    table_console().print(table)


def models(
    model: Optional[str] = typer.Argument(None, metavar="MODEL", autocompletion=completion.models,
                                          help="One model to describe whole (a preset or a .safetensors file): its file, config, training recipe and metrics."),
    presets: bool = typer.Option(False, "--presets", help="List every architecture preset, trained or not, with its parameters and multiply-accumulates (MACs) on a 256x256 image, as papers compare them."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
) -> None:
    """List available models with their task, architecture, size and measured metrics.

    Examples:

        restore models

        restore models --presets --json

        restore models runs/derain/model.safetensors
    """
    if model is not None:
        if presets:
            fail("--presets lists every preset; name no model with it", code=2)
        _describe(model, as_json)
        return
    out = table_console()
    if presets:
        rows = [
            {"name": p.name, "task": p.task, "architecture": p.architecture, "parameters": p.parameters(),
             "macs_256": p.macs(), "trained_weights": p.weights, "description": p.description}
            for p in PRESETS.values()
        ]
        if as_json:
            print_json(rows, indent=2)
            return
        table = Table("preset", "task", "architecture", "parameters", "MACs 256²", "weights", "description")
        for r in rows:
            table.add_row(cell(r["name"]), r["task"], r["architecture"], f"{r['parameters']:,}", _giga(r["macs_256"]),
                          cell(r["trained_weights"] or "-"), cell(r["description"]))
        out.print(table)
        return
    rows = [
        {"name": w.name, "task": w.task, "architecture": w.architecture, "parameters": w.parameters,
         "path": str(w.path), "sha256": w.sha256, "size_multiple": w.size_multiple,
         "card": str(w.card) if w.card else None, "metrics": w.metrics}
        for w in shipped_weights()
    ]
    if as_json:
        print_json(rows, indent=2)
        return
    if not rows:
        say("no trained weights found (see 'restore models --presets' for architectures)")
        return
    table = Table("model", "task", "architecture", "parameters", "metrics (model card)")
    for r in rows:
        table.add_row(cell(r["name"]), r["task"], r["architecture"], f"{r['parameters']:,}", _headline(r["metrics"]))
    out.print(table)

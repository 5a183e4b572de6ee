"""``restore models``: the shipped weights, or every architecture preset."""

from __future__ import annotations

import typer
from rich.table import Table

from cli.console import cell, print_json, say, table_console
from restore_core.presets import PRESETS, shipped_weights


def _headline(metrics: dict) -> str:
    """The PSNR entries of a card's metrics (``set/psnr`` for grey sets, ``set/psnr_y``, ``set/psnr_rgb``)."""
    keys = [k for k in metrics if k.rsplit("/", 1)[-1] in ("psnr", "psnr_y", "psnr_rgb")]
    return ", ".join(f"{k} {metrics[k]:.2f}" for k in sorted(keys)) or "-"


def models(
    presets: bool = typer.Option(False, "--presets", help="List every architecture preset, trained or not."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
) -> None:
    """List available models with their task, architecture, size and measured metrics.

    Examples:

        restore models

        restore models --presets --json
    """
    out = table_console()
    if presets:
        rows = [
            {"name": p.name, "task": p.task, "architecture": p.architecture, "parameters": p.parameters(),
             "trained_weights": p.weights, "description": p.description}
            for p in PRESETS.values()
        ]
        if as_json:
            print_json(rows, indent=2)
            return
        table = Table("preset", "task", "architecture", "parameters", "weights", "description")
        for r in rows:
            table.add_row(cell(r["name"]), r["task"], r["architecture"], f"{r['parameters']:,}", cell(r["trained_weights"] or "-"), cell(r["description"]))
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

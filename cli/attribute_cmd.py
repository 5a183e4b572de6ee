"""``restore attribute-filters``: FAIG scores of every convolution filter (SPEC §2.3)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from cli import completion
from cli.console import cell, fail, os_cause, print_json, say, table_console, warn
from restore_core.io.folders import file_in_the_way, not_a_folder


def _parse_fraction(text: str) -> float:
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        value = float("nan")  # not a number: refused below, with the option named
    if not 0 < value <= 1:
        raise ValueError(f"--top {text}: give a fraction in (0, 1] or a percentage like 1%")
    return value


def _load_pairs(folder: Path, limit: int, crop: int, multiple: int):
    """Centre crops of up to ``limit`` pairs of a paired folder, as tensors: crop x crop, or
    (crop 0) the whole image cut down to a multiple of ``multiple``, the model's size multiple."""
    import torch

    from restore_core.io.folders import list_pairs
    from restore_core.io.images import read_rgb

    pairs = []
    for degraded_path, clean_path in list_pairs(folder)[:limit]:
        degraded, clean = read_rgb(degraded_path), read_rgb(clean_path)
        h, w = degraded.shape[:2]
        height, width = (min(h, crop), min(w, crop)) if crop else (h, w)
        height, width = height // multiple * multiple, width // multiple * multiple
        if not height or not width:
            raise ValueError(f"{degraded_path}: {w}x{h} is smaller than the model's size multiple ({multiple} pixels)")
        top, left = (h - height) // 2, (w - width) // 2
        degraded, clean = degraded[top : top + height, left : left + width], clean[top : top + height, left : left + width]
        as_tensor = [torch.from_numpy(a.transpose(2, 0, 1).copy())[None] for a in (degraded, clean)]
        pairs.append((as_tensor[0], as_tensor[1]))
    return pairs


def _check_output_name(flag: str, path: Path | None, suffix: str) -> None:
    """Refuse a --out/--plot that cannot be written as asked, before minutes of FAIG."""
    if path is None:
        return
    if path.suffix.lower() != suffix:
        fail(f"{flag} {path}: name a {suffix} file", code=2)
    if path.is_dir():
        fail(f"{flag} {path}: is a folder; name a {suffix} file", code=2)
    if (blocking := file_in_the_way(path.parent)) is not None:
        fail(f"{flag} {path}: {blocking} is a file, so no folder can be made there", code=2)
    if not path.parent.is_dir():
        fail(f"{flag} {path}: its folder {path.parent} does not exist", code=2)


def attribute_filters(
    baseline: Path = typer.Option(..., "--baseline", help="Baseline checkpoint θ̄ (e.g. the unified model)."),
    target: Path = typer.Option(..., "--target", help="Target checkpoint θ, fine-tuned from the baseline for one degradation."),
    data: Path = typer.Option(..., "--data", help="Paired folder of the target degradation (input/ + target/, ...)."),
    others: list[Path] = typer.Option([], "--others", help="Paired folders of the other degradations. Repeatable."),
    steps: int = typer.Option(100, "--steps", help="N points on the straight path from θ̄ to θ."),
    top: str = typer.Option("1%", "--top", help="Share of all filters selected: 1%, 5%, or a fraction like 0.01."),
    limit: int = typer.Option(8, "--limit", help="Images read from each folder."),
    crop: int = typer.Option(128, "--crop", help="Centre crop of each image in pixels, a multiple of the model's size multiple (0 = whole image, cut to that multiple; slower)."),
    show: int = typer.Option(20, "--show", help="Rows of the ranked table printed."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write one boolean mask per layer to this .safetensors file."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG bar chart of the top filters per layer."),
    validate: bool = typer.Option(False, "--validate", help="Revert the top filters to the baseline and compare with random, |θ−θ̄| and IG filters."),
    as_json: bool = typer.Option(False, "--json", help="Print the ranking (and validation) as JSON on stdout."),
    device: str = typer.Option("auto", "--device", autocompletion=completion.devices, help="auto (CUDA if present, else CPU), cpu, cuda, cuda:1, ..."),
) -> None:
    """Find the filters that make a fine-tuned model specific to one degradation (FAIG).

    Examples:

        restore attribute-filters --baseline unified.safetensors --target rain.safetensors --data rain/ --others blur/ --others noise/

        restore attribute-filters --baseline u.safetensors --target r.safetensors --data rain/ --top 5% --out masks.safetensors --validate
    """
    # The options and the paths first, torch (about 1 s) and the models after: a mistake is answered at once.
    try:
        fraction = _parse_fraction(top)
    except ValueError as exc:
        fail(str(exc), code=2)
    if steps < 1 or limit < 1 or crop < 0 or show < 0:
        fail("--steps and --limit must be >= 1, --crop and --show >= 0", code=2)
    _check_output_name("--out", out, ".safetensors")
    _check_output_name("--plot", plot, ".png")
    for flag, checkpoint in (("--baseline", baseline), ("--target", target)):
        if not checkpoint.is_file():
            fail(f"{flag} {checkpoint}: {'no such checkpoint file' if not checkpoint.exists() else 'a folder, not a checkpoint file'}", code=2)
    for flag, folder in [("--data", data), *(("--others", other) for other in others)]:
        if not folder.is_dir():
            fail(f"{flag} {not_a_folder(folder)}", code=2)

    import torch

    from restore_core import attribution as A
    from restore_core.checkpoint import CheckpointError, atomic_save_file, load_checkpoint
    from restore_core.device import pick_device
    from restore_core.io.files import atomic_write_bytes

    try:  # a device torch does not know, or one this machine lacks: one line (it was torch's traceback)
        device = str(pick_device(device))
    except ValueError as exc:
        fail(str(exc), code=2)
    try:
        base = load_checkpoint(baseline, device)
        tuned = load_checkpoint(target, device)
    except CheckpointError as exc:
        fail(str(exc), code=2)
    # Fine-tuning keeps every tensor; settings without weights (a denoiser's noise calibration,
    # measured anew at the end of each run) may differ and do not matter to the path from θ̄ to θ.
    base_shapes = {k: tuple(v.shape) for k, v in base.model.named_parameters()}
    tuned_shapes = {k: tuple(v.shape) for k, v in tuned.model.named_parameters()}
    if base.architecture != tuned.architecture or base_shapes != tuned_shapes:
        differing = next((k for k in sorted(base_shapes.keys() | tuned_shapes.keys()) if base_shapes.get(k) != tuned_shapes.get(k)), None)
        what = (f"{tuned.architecture}, the baseline {base.architecture}" if base.architecture != tuned.architecture
                else f"tensor {differing} is {tuned_shapes.get(differing, 'absent')} there, {base_shapes.get(differing, 'absent')} in the baseline")
        fail(f"{target}: not the baseline's network ({what}); FAIG needs a model fine-tuned from {baseline}", code=2)
    multiple = tuned.size_multiple
    if crop % multiple:
        below, above = crop // multiple * multiple, (crop // multiple + 1) * multiple
        fail(f"--crop {crop}: give a multiple of {multiple} (the model's size multiple), e.g. {f'{below} or ' if below else ''}{above}", code=2)
    try:
        target_images = [(a.to(device), b.to(device)) for a, b in _load_pairs(data, limit, crop, multiple)]
        other_images = [(a.to(device), b.to(device)) for folder in others for a, b in _load_pairs(folder, limit, crop, multiple)]
    except (ValueError, OSError) as exc:
        fail(str(exc), code=2)

    model = tuned.model
    theta_base = {k: v.detach() for k, v in base.model.named_parameters()}
    theta_target = {k: v.detach() for k, v in tuned.model.named_parameters()}
    if all(torch.equal(theta_base[k], theta_target[k]) for k in theta_base):
        # The path from θ̄ to θ has length zero: every score is 0 and the ranking arbitrary.
        fail(f"{target}: its weights are the baseline's ({baseline}), so every filter scores 0; "
             "give the model fine-tuned from it", code=2)
    say(f"FAIG over {len(target_images)} target and {len(other_images)} other images, {steps} steps")
    if not other_images:
        warn("no --others: the scores are the integrated gradients on the target degradation alone, not what is specific "
             "to it (FAIG subtracts the other degradations' mean); give their paired folders with --others")
    scores = A.faig(model, theta_base, theta_target, target_images, other_images, steps)
    ranked = A.rank(scores)
    masks = A.top_masks(model, ranked, fraction)
    selected = sum(int(m.sum()) for m in masks.values())
    total = len(ranked)

    rows = None
    if validate:
        say("validating: reverting top filters to the baseline ...")
        rows = A.validate(model, theta_base, theta_target, target_images, other_images, scores, fraction, steps)

    if out is not None:
        meta = {"baseline": str(baseline), "target": str(target), "top": str(fraction), "selected": str(selected), "filters": str(total),
                "architecture": tuned.architecture, "config": json.dumps(tuned.config, sort_keys=True)}
        try:
            atomic_save_file({k: v.to(torch.uint8).contiguous() for k, v in masks.items()}, out, meta)
        except OSError as exc:
            fail(f"{out}: cannot write: {os_cause(exc)}", code=1)
        say(f"masks: {out} ({selected} of {total} filters)")
    if plot is not None:
        import cv2

        ok, png = cv2.imencode(".png", A.spread_plot(A.layer_counts(masks)))
        try:
            atomic_write_bytes(plot, png.tobytes())
        except OSError as exc:
            fail(f"{plot}: cannot write: {os_cause(exc)}", code=1)
        say(f"plot: {plot}")

    if as_json:
        print_json({
            "filters": total,
            "selected": selected,
            "top": fraction,
            "ranking": [{"layer": f.layer, "filter": f.index, "score": f.score} for f in ranked[: max(show, selected)]],
            "per_layer": A.layer_counts(masks),
            "validation": [row.__dict__ for row in rows] if rows else None,
        })
        return
    console = table_console()
    table = Table(title=f"top filters by FAIG ({selected} of {total} selected at --top {top})")
    for column in ("rank", "layer", "filter", "score"):
        table.add_column(column, justify="right" if column != "layer" else "left")
    for position, f in enumerate(ranked[:show], start=1):
        table.add_row(str(position), cell(f.layer), str(f.index), f"{f.score:.4g}")
    console.print(table)
    if rows:
        check = Table(title="PSNR drop (dB) after reverting the selected filters to the baseline")
        for column in ("filters chosen by", "count", "target degradation", "other degradations"):
            check.add_column(column)
        for row in rows:
            check.add_row(row.method, str(row.filters), f"{row.target_drop:.3f}", "-" if math.isnan(row.others_drop) else f"{row.others_drop:.3f}")
        console.print(check)

"""``restore make-pairs``: a paired test set made from clean images with one of the
project's synthetic degradations (rain, motion blur, noise, haze), reproducibly."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cli import completion
from cli.console import error, fail, first_few, os_cause, print_json, say, stdin_paths, warn


def make_pairs_command(
    sources: list[str] = typer.Argument(..., metavar="IN", show_default=False, help="Clean images: folders (their images, sorted by name; with --recursive, their sub-folders' too), glob patterns, files, or '-' alone for paths on stdin (one a line, or NUL-separated as find -print0 writes them)."),
    out: Path = typer.Argument(..., metavar="OUT", help="Output folder: OUT/input/NAME.png (degraded) beside OUT/target/NAME.png (the clean image), 8-bit PNGs."),
    degradation: str = typer.Option(..., "--degradation", "-d", autocompletion=completion.degradations,
                                    help=f"Which synthetic degradation: {', '.join(completion.DEGRADATION_NAMES)} (the training recipes' own; mixed: one of the four per image)."),
    settings: list[str] = typer.Option([], "--set", help="A field of the degradation's settings, KEY=VALUE (JSON value), e.g. sigma=25 or 'length=[9,25]'; a single number fixes a range. Repeatable."),
    seed: int = typer.Option(0, "--seed", help="Image i of the sorted inputs is degraded with numpy.random.default_rng([SEED, i])."),
    grey: bool = typer.Option(False, "--grey", help="Convert colour images to grey (BT.601 luma) first; grey images are always degraded and written grey."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders of IN. The pairs are written side by side (OUT/input/NAME.png): an image named like one before it in another sub-folder is refused."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing pairs."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per image on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary or warnings on stderr (errors still)."),
) -> None:
    """Make a paired test set: degrade clean images with a synthetic degradation, reproducibly.

    The input/ + target/ folders are what `restore benchmark --root OUT` scores and
    `restore train --val OUT` validates on; OUT/degradation.json records how they were made.

    Examples:

        restore make-pairs photos/ sets/noise25 -d noise --set sigma=25

        restore make-pairs shots/*.jpg scans/ sets/noise15 -d noise --set sigma=15

        restore make-pairs photos/ sets/blur -d motion-blur --set 'length=[9,25]' --set noise_sigma=0.0039 --seed 7

        restore make-pairs scans/ sets/grey15 -d noise --set sigma=15 --grey

        restore make-pairs photos/ sets/haze -d haze --recursive
    """
    from restore_core.configs import ConfigError
    from restore_core.degradations.pairs import PairRecipe, PairSetError, make_pairs
    from restore_core.degradations.table import config_cautions
    from restore_core.engine.inputs import (
        InputError, OtherCase, collect_all_inputs, left_out_unreadable, other_case_warning, several_inputs_refusal,
    )

    options = {}
    for item in settings:
        if "=" not in item:
            fail(f"--set expects KEY=VALUE, got {item!r}", code=2)
        key, value = (part.strip() for part in item.split("=", 1))
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        *outer, last = key.split(".")  # settings.noise.sigma=25: a field of a field, as restore train's --set
        into = options
        for part in outer:
            into = into.setdefault(part, {})
            if not isinstance(into, dict):
                fail(f"--set {key}: {part} is already given a value ({json.dumps(into)}), not fields", code=2)
        into[last] = parsed
    if refusal := several_inputs_refusal(sources, out):
        fail(refusal, code=2)
    try:
        recipe = PairRecipe.from_options(degradation, options, seed, grey)
        unreadable: list[Path] = []
        videos: list[Path] = []
        other_case: list[OtherCase] = []
        jobs = collect_all_inputs(sources, recursive, stdin_paths(quiet) if sources == ["-"] else None, out,
                                  unreadable, videos, other_case)
    except (ConfigError, InputError) as exc:
        fail(str(exc), code=2)
    for caution in config_cautions(recipe.config) if not quiet else []:
        warn(caution)
    if unreadable and not quiet:
        warn(left_out_unreadable(unreadable))
    for missed in other_case if not quiet else ():
        warn(other_case_warning(missed))
    if videos and not quiet:
        warn(f"left out {len(videos)} video(s) in {', '.join(sources)}: pairs are made from still images")

    made = failed = skipped = 0
    noted: list[Path] = []  # inputs whose alpha plane or deeper samples their pair left out
    try:
        for pair in make_pairs([job.source for job in jobs], out, recipe, overwrite):
            if pair.error is not None:
                failed += 1
                error(pair.error)
                if as_json:
                    print_json({"input": str(pair.source), "status": "error", "error": pair.error})
                continue
            if pair.skipped:
                skipped += 1
                if as_json:
                    print_json({"input": str(pair.source), "status": "skipped", "reason": "pair exists, made with these settings"})
                continue
            made += 1
            if pair.note is not None:
                noted.append(pair.source)
            if as_json:
                print_json({"input": str(pair.source), "status": "ok", "degraded": str(pair.degraded), "target": str(pair.target), "grey": pair.grey,
                            **({"degradation": pair.degradation} if pair.degradation else {}), **({"note": pair.note} if pair.note else {})})
            else:
                print(pair.degraded, flush=True)
    except PairSetError as exc:
        fail(str(exc), code=2)
    except OSError as exc:
        fail(f"{out}: cannot write: {os_cause(exc)}", code=1)
    if noted and not quiet:
        warn(f"pairs are 8-bit PNGs of the colour (or grey) planes: {len(noted)} input(s) lost an alpha plane or "
             f"deeper samples in theirs ({first_few(noted, 3)}; --json notes each)")
    if not quiet:
        say(f"{made} pair(s) made in {out} ({degradation}, seed {seed})" + (f", {skipped} there already" if skipped else "")
            + (f"; {failed} failed" if failed else ""))
    if failed:
        raise typer.Exit(1)

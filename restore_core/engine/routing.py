"""``restore auto`` by routing: an all-in-one model's classifier says what each image
suffers from, and the single-task model for that degradation restores it.

ADMS (SPEC §2.3) restores with one network whose filters adapt to the classifier's
ĉ; it carries +17 % parameters over its unified model instead of four networks. This
project's single-task models are far stronger than its ADMS run (2.3-5.7 dB, see
weights/adms.md), so by default ``restore auto`` keeps ADMS's classifier and hands each
image to the specialist of its most probable degradation; ``--no-route`` restores
with the ADMS network itself. A classifier with a clean class
(:attr:`ClassifierConfig.clean_class`) may also find an image clean: it is then
written as it is (:class:`LeaveUnchanged`), not handed to a model made for a
degradation it does not have.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from restore_core.checkpoint import ModelDescriptor
from restore_core.engine.ensemble import views_for_task
from restore_core.engine.runner import Restorer, restore_array
from restore_core.tasks import CLEAN, TASK_DEGRADATION
from restore_core.presets import load_for_task

# Degradation the classifier names -> the task whose default model restores it.
DEGRADATION_TASK = {degradation: task for task, degradation in TASK_DEGRADATION.items()}


# The model name routing reports for an image its classifier finds clean (no model ran).
UNCHANGED = "unchanged"


class LeaveUnchanged:
    """Where routing sends an image its classifier finds clean: the image itself, as
    float32 on ``device``. Has what routing reads of a specialist (call, ``name``,
    ``notices``)."""

    name = UNCHANGED

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.notices: list[str] = []

    def __call__(self, batch: torch.Tensor, noise_levels: Sequence[float | None] | None = None) -> torch.Tensor:
        return batch.to(self.device, torch.float32)


class RoutedRestorer:
    """Restores like a :class:`Restorer` (same call, same ``last_degradation`` and
    ``notices``), sending each image of a batch to the single-task model of the
    degradation ``detector``'s classifier finds most probable in the whole image.

    The specialists are the tasks' default models, loaded here (all four take about
    0.4 s; a missing one is an error before any image), each run with the options
    given here (tiling, precision, strength; ``ensemble_views`` per task).
    ``last_models`` names the model that restored each image of the last batch
    (:data:`UNCHANGED` for one the classifier found clean, when it has that class).
    ``leave_clean`` asks the model's clean-aware classifier (``clean_classifier``)
    instead of its own, when its own has no clean class.
    """

    def __init__(
        self,
        detector: ModelDescriptor,
        device: torch.device,
        precision: str = "auto",
        tile: int = 0,
        tile_overlap: int | None = None,
        self_ensemble: bool = False,
        ensemble_views: int | None = None,
        compile: bool = False,
        strength: float = 1.0,
        leave_clean: bool = False,
        memory_limit: int | None = None,
    ) -> None:
        classifier = getattr(detector.model, "classifier", None)
        if classifier is None:
            raise ValueError(f"{detector.name} has no degradation classifier to route with (an all-in-one model such as adms has)")
        if leave_clean and not classifier.config.clean_class:
            classifier = getattr(detector.model, "clean_classifier", None)
            if classifier is None:
                raise ValueError(f"{detector.name} has no classifier that knows clean photographs, which --leave-clean asks "
                                 "(train one: restore train --recipe adms --init MODEL --set classifier.clean_class=true "
                                 "--set keep_classifier=true ...)")
        unknown = [d for d in detector.model.degradations if d not in DEGRADATION_TASK]
        if unknown:
            raise ValueError(f"{detector.name} detects {', '.join(unknown)}, which no single-task model restores")
        self.descriptor = detector
        self.device = device
        self.asks_clean_classifier = classifier is not detector.model.classifier  # --leave-clean: the model's second classifier
        self.classifier = classifier.to(device=device, dtype=torch.float32).eval()
        self.degradations = tuple(detector.model.degradations)
        self.classes = self.degradations + ((CLEAN,) if classifier.config.clean_class else ())
        self.unchanged = LeaveUnchanged(device)
        ensembled = self_ensemble or ensemble_views is not None
        self.specialists: dict[str, Restorer] = {}
        for degradation in self.degradations:
            task = DEGRADATION_TASK[degradation]
            views = views_for_task(task, ensemble_views) if ensembled else ()
            self.specialists[task] = Restorer(load_for_task(None, task, str(device)), device, precision, tile, tile_overlap,
                                              views, compile, strength, memory_limit)
        self.notices: list[str] = []
        self.last_degradation: list[dict[str, float]] | None = None
        self.last_models: list[str] | None = None

    @property
    def dtype(self) -> torch.dtype:
        """The precision the specialists run at (what ``precision`` picks on this device)."""
        return next(iter(self.specialists.values())).dtype

    @property
    def takes_measured_noise(self) -> bool:
        """Whether a specialist takes levels measured from the files (the denoiser under
        ``--sigma auto``): a camera raw file routed to it is told its sensor's level."""
        return any(restorer.takes_measured_noise for restorer in self.specialists.values())

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor, noise_levels: Sequence[float | None] | None = None) -> torch.Tensor:
        """Restore an N x 3 x H x W float batch in [0, 1]; returns float32 in [0, 1].
        ``noise_levels``: per image, a level measured from its file, or None
        (:attr:`takes_measured_noise`); the specialist that takes them is told them."""
        probabilities = self.classifier.probabilities(batch.to(self.device, torch.float32)).cpu()
        routes = [self._route(self.classes[int(row.argmax())]) for row in probabilities]
        restored: torch.Tensor | None = None
        for restorer in dict.fromkeys(routes):  # each specialist once per batch, in order of first use
            chosen = [i for i, r in enumerate(routes) if r is restorer]
            images = batch if len(chosen) == len(routes) else batch[chosen]  # no copy of a lone image
            output = restorer(images, None if noise_levels is None else [noise_levels[i] for i in chosen])
            self.notices.extend(restorer.notices)
            restorer.notices.clear()
            if restored is None:
                restored = torch.empty((batch.shape[0], *output.shape[1:]), dtype=output.dtype, device=output.device)
            restored[chosen] = output
        self.last_degradation = [{c: round(float(p), 4) for c, p in zip(self.classes, row)} for row in probabilities]
        self.last_models = [restorer.name for restorer in routes]
        assert restored is not None
        return restored

    def _route(self, found: str) -> Restorer | LeaveUnchanged:
        """What restores an image whose most probable class is ``found``."""
        return self.unchanged if found == CLEAN else self.specialists[DEGRADATION_TASK[found]]

    @torch.inference_mode()
    def specialist_for(self, frames: list[torch.Tensor]) -> tuple[Restorer | LeaveUnchanged, dict[str, float]]:
        """The single-task model for a whole video, and the classifier's probabilities
        averaged over ``frames`` (its first ones, each 1 x 3 x H x W): a clip routed
        frame by frame could switch models, and its look, from one frame to the next."""
        probabilities = torch.stack([self.classifier.probabilities(frame.to(self.device, torch.float32))[0].cpu()
                                     for frame in frames]).mean(dim=0)
        found = self.classes[int(probabilities.argmax())]
        return self._route(found), {c: round(float(p), 4) for c, p in zip(self.classes, probabilities)}

    def restore_array(self, rgb: np.ndarray) -> np.ndarray:
        """One H x W x 3 float image in [0, 1] -> restored, same shape."""
        return restore_array(self, rgb)


def build_restorer(descriptor: ModelDescriptor, device: torch.device, task: str, precision: str = "auto", tile: int = 0,
                   tile_overlap: int | None = None, self_ensemble: bool = False, ensemble_views: int | None = None,
                   compile: bool = False, strength: float = 1.0, route: bool = False, leave_clean: bool = False,
                   memory_limit: int | None = None) -> Restorer | RoutedRestorer:
    """What restores a command's images (CLI and Python interface alike): ``descriptor``
    itself with ``task``'s self-ensemble views, or, with ``route``, the single-task
    models its classifier chooses between (each with its own task's views); with
    ``leave_clean`` too, the classifier asked is the model's clean-aware one.
    ``memory_limit``: bytes one image may use (``--max-memory``), tiles sized to fit."""
    if leave_clean and not route:
        raise ValueError("--leave-clean chooses what routing asks; without routing (--no-route) every image is restored")
    if route:
        return RoutedRestorer(descriptor, device, precision, tile, tile_overlap, self_ensemble, ensemble_views, compile, strength,
                              leave_clean, memory_limit)
    ensembled = self_ensemble or ensemble_views is not None
    views = views_for_task(task, ensemble_views) if ensembled else ()
    return Restorer(descriptor, device, precision, tile, tile_overlap, views, compile, strength, memory_limit)


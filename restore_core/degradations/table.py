"""The synthetic degradations a recipe (or ``restore degrade``) can name, in one
explicit table: name -> (config dataclass, function(clean, rng, config)).

Each function takes float32 RGB in [0, 1] and a numpy Generator and returns the
degraded image, so a degradation is reproducible from its seed alone.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from typing import Callable, ClassVar

import numpy as np

from restore_core.configs import ConfigError, config_from_dict, did_you_mean
from restore_core.degradations import SINGLE_DEGRADATIONS
from restore_core.degradations.blur import BlurConfig, add_motion_blur
from restore_core.degradations.haze import HazeConfig, add_haze
from restore_core.degradations.noise import NoiseConfig, add_noise, scale_caution
from restore_core.degradations.rain import RainConfig, add_rain

Degrade = Callable[[np.ndarray, np.random.Generator], np.ndarray]

DEGRADATIONS: dict[str, tuple[type, Callable]] = {
    "rain": (RainConfig, add_rain),
    "noise": (NoiseConfig, add_noise),
    "motion-blur": (BlurConfig, add_motion_blur),
    "haze": (HazeConfig, add_haze),
}


@dataclass(frozen=True)
class MixedConfig:
    """Each patch gets one of ``degradations``, uniformly (ADMS's unified model), with
    that degradation's own ``settings`` where given (``{"noise": {"sigma": 25}}``:
    fields of its config, as ``--set`` gives them to it alone); its defaults otherwise."""

    degradations: tuple[str, ...] = ("rain", "motion-blur", "noise", "haze")
    settings: dict[str, dict] = dataclasses.field(default_factory=dict)

    CHOICES: ClassVar[dict] = {"degradations": SINGLE_DEGRADATIONS}


def draw_one_of(rng: np.random.Generator, config: MixedConfig = MixedConfig()) -> str:
    """Which of ``config.degradations`` a mixed draw applies: ``rng``'s first draw, so a
    set made with ``default_rng([seed, i])`` knows image i's before degrading it."""
    return config.degradations[int(rng.integers(len(config.degradations)))]


@functools.lru_cache(maxsize=64)
def _own_config(name: str, settings_json: str):
    """The config of one degradation of a mixed draw, built and checked once per
    settings, not once per training patch (about 0.1-0.2 ms each)."""
    return degradation_config(name, json.loads(settings_json))


def add_one_of(clean: np.ndarray, rng: np.random.Generator, config: MixedConfig = MixedConfig()) -> np.ndarray:
    name = draw_one_of(rng, config)
    return DEGRADATIONS[name][1](clean, rng, _own_config(name, json.dumps(config.settings.get(name, {}), sort_keys=True)))


DEGRADATIONS["mixed"] = (MixedConfig, add_one_of)


def as_grey_camera(degraded: np.ndarray) -> np.ndarray:
    """A grey photograph's degradation: the first channel's for all three, as a grey
    camera records it (independent noise per channel would be colour noise that grey
    inputs, BSD68 or Set12, never have)."""
    return np.ascontiguousarray(np.repeat(degraded[..., :1], 3, axis=2))


# Every pair field of the degradation configs is a (low, high) range drawn from uniformly.
_RANGE_TYPES = ("tuple[float, float]", "tuple[int, int]")


def degradation_config(name: str, options: dict):
    """The config of degradation ``name`` with its fields overridden by ``options``
    (validated: unknown fields, wrong types, ranges given high then low, values outside
    the config class's ``LIMITS`` and names outside its ``CHOICES`` are
    :class:`ConfigError`). A single number for a range field fixes it: ``sigma=25``
    is ``sigma=[25, 25]``."""
    if name not in DEGRADATIONS:
        raise ConfigError(f"unknown degradation {name!r}{did_you_mean(name, DEGRADATIONS)}; known: {', '.join(DEGRADATIONS)}")
    config_class = DEGRADATIONS[name][0]
    ranges = {spec.name for spec in dataclasses.fields(config_class) if str(spec.type) in _RANGE_TYPES}
    where = f"degradation_options ({name})"
    for key, value in options.items():
        if key in ranges and (isinstance(value, bool) or not isinstance(value, (int, float, list, tuple))):
            raise ConfigError(f"{where}: {key} takes a number or a [low, high] range, got {value!r}")
    options = {key: [value, value] if key in ranges and isinstance(value, (int, float)) else value
               for key, value in options.items()}
    config = config_from_dict(config_class, options, where)
    for key in ranges:
        value = getattr(config, key)
        if value[0] > value[1]:
            raise ConfigError(f"{where}: {key} is a (low, high) range, got {list(value)}")
    for key, (lowest, highest) in getattr(config_class, "LIMITS", {}).items():
        value = getattr(config, key)
        for end in value if isinstance(value, tuple) else (value,):
            if (lowest is not None and end < lowest) or (highest is not None and end > highest):
                bounds = f"in [{lowest}, {highest}]" if highest is not None else f">= {lowest}"
                raise ConfigError(f"{where}: {key} must be {bounds}, got {list(value) if isinstance(value, tuple) else value}")
    for key, known in getattr(config_class, "CHOICES", {}).items():
        value = getattr(config, key)
        unknown = [item for item in value if item not in known]
        if not value or unknown:
            raise ConfigError(f"{where}: {key} must name one or more of {', '.join(known)}"
                              + (f"; unknown: {', '.join(map(str, unknown))}" if unknown else ", got none"))
    if isinstance(config, MixedConfig):  # each degradation's own settings, checked as its own would be
        for other, settings in config.settings.items():
            if other not in config.degradations:
                raise ConfigError(f"{where}: settings for {other!r}, which is not among degradations ({', '.join(config.degradations)})")
            if not isinstance(settings, dict):
                raise ConfigError(f"{where}: settings of {other} must be an object of its fields, e.g. {{\"sigma\": 25}}, got {settings!r}")
            degradation_config(other, settings)
    return config


def config_cautions(config) -> list[str]:
    """What looks mistaken in a valid degradation config (:func:`degradation_config`): a
    noise level given on the 0-1 scale (:func:`~restore_core.degradations.noise.scale_caution`),
    alone or as a mixed draw's noise settings."""
    if isinstance(config, NoiseConfig):
        return [caution] if (caution := scale_caution(config)) else []
    if isinstance(config, MixedConfig) and "noise" in config.degradations:
        return config_cautions(degradation_config("noise", config.settings.get("noise", {})))
    return []


def make_degradation(name: str, options: dict) -> Degrade:
    """``clean, rng -> degraded`` for degradation ``name`` with ``options`` (see
    :func:`degradation_config`)."""
    config = degradation_config(name, options)
    function = DEGRADATIONS[name][1]
    return lambda clean, rng: function(clean, rng, config)

"""Information-flow generative restoration (SPEC §2.2; papers/information-theory-generative-restoration.txt).

A pix2pix generator fixed by the paper's three findings:

* InfoAccum-L before the generator (Eq. 14), a dense block whose layer ``i`` is
  ``x_i = concat[x_{i-1}, F_i(x_{i-1}), G_i(x_{i-1}), H_i(x_{i-1})]`` with
  F, G, H = 3x3 convolutions of dilation 1, 3, 5 (padding 1, 3, 5), each
  producing ``growth`` channels: the output has ``in + 3 * L * growth`` channels.
* A U-Net with N down/up-samplings (N = 5 instead of pix2pix's 8; Table I).
* SubPixUpsamp (Eq. 15): the top decoder layer upsamples by convolution +
  PixelShuffle instead of a transposed convolution.

Not in the paper: an optional full-resolution refinement head (``refine`` > 0
channels). The pix2pix generator leaves full resolution after InfoAccum (its first
encoder is a stride-2 convolution) and comes back only through the top
PixelShuffle, so fine texture must squeeze through half-resolution features; at
light noise (sigma 5) a compact model smooths that texture away. The head adds
``R(concat[InfoAccum features, coarse output])`` at full resolution, three 3x3
convolutions with the last one zero-initialised, so a model grown from a
``refine = 0`` checkpoint starts out as exactly that model. ``refine_more`` adds
further heads of the same shape in cascade, head k correcting the output of head
k - 1 (it sees the same features and that output); each starts at zero too, so a
model grows head by head from its checkpoint without losing what it learned.

Also not in the paper, for dehazing: an optional scattering-model recomposition
(``recompose`` section): the output is rebuilt from the hazy input with the
transmission the network's output implies, guided-filtered (the dark channel
prior's inversion with the network in place of the prior); see
:mod:`restore_core.models.scattering`. It has no weights: any dehazing checkpoint
can switch it on (``restore dehaze --recompose-radius``).

Also not in the paper: an optional noise-level input (``noise_level = true``), so
that one denoiser runs blind (told nothing) or non-blind when told the level
(``restore denoise --sigma``), as FFDNet's noise-level map. See
:class:`NoiseLevelEmbedding`; it too starts as an exact no-op. Told nothing at
inference, such a model estimates each whole image's level itself and is told that
(``--sigma auto``, the default): a first look from the image alone
(:func:`~restore_core.degradations.noise_level.estimate_noise_level`, in :meth:`condition`
before tiling) and, when the checkpoint carries a calibration table
(``noise_calibration``), a second look at what the model removes from a central
crop told that first estimate
(:func:`~restore_core.degradations.noise_level.residual_noise_level`, in
:meth:`condition_on_first_pass`); where the first look, read at half resolution too,
finds the noise correlated between neighbours (a camera's, demosaiced), the level is
raised (:func:`~restore_core.degradations.noise_level.level_for_correlated_noise`).
``--sigma quick`` stops at the first look;
``--sigma blind`` runs the learned blind path.

The discriminator is pix2pix's 5-layer fully convolutional PatchGAN (70x70
receptive field) conditioned on the input: ``D(concat[x, y])``. Losses (LSGAN,
Eqs. 16-18) are in :mod:`restore_core.training.losses`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from restore_core.configs import MAX_REPEATS, require_at_least, require_at_most
from restore_core.degradations.noise import NoiseConfig, meant_on_the_unit_scale
from restore_core.degradations.noise_level import (
    FirstLooks,
    correlated_noise_weight,
    estimate_noise_level,
    first_looks,
    level_for_correlated_noise,
    residual_noise_level,
)
from restore_core.models.scattering import RecomposeConfig, recompose
from restore_core.models.unet import refinement_head


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


@dataclass(frozen=True)
class InfoAccumConfig:
    layers: int = 15  # L (paper: 15)
    growth: int = 4  # channels each dilated path adds per layer

    def __post_init__(self) -> None:
        require_at_least(self, 0, "layers")
        require_at_most(self, MAX_REPEATS, "layers")
        require_at_least(self, 1, "growth")


class InfoAccumLayer(nn.Module):
    """One dense layer of Eq. 14: three dilated 3x3 paths, concatenated with the input.

    Each path is norm, ReLU, convolution. Without a norm the three paths' ReLU(x) is one
    tensor, computed once: the same numbers, and a third of the full-resolution
    activation work (measured 8 % of the shipped denoiser's CPU time at 1280x720)."""

    def __init__(self, in_channels: int, growth: int, norm: str = "none") -> None:
        super().__init__()
        self.paths = nn.ModuleList(
            nn.Sequential(_norm(norm, in_channels), nn.ReLU(), nn.Conv2d(in_channels, growth, 3, padding=d, dilation=d))
            for d in (1, 3, 5)
        )
        self.shares_activation = norm == "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shares_activation:
            activated = torch.relu(x)
            return torch.cat([x] + [path[-1](activated) for path in self.paths], dim=1)
        return torch.cat([x] + [path(x) for path in self.paths], dim=1)


class InfoAccum(nn.Module):
    """InfoAccum-L: L dense layers; ``out_channels = in_channels + 3 * L * growth``."""

    def __init__(self, in_channels: int, config: InfoAccumConfig, norm: str = "none") -> None:
        super().__init__()
        layers = []
        channels = in_channels
        for _ in range(config.layers):
            layers.append(InfoAccumLayer(channels, config.growth, norm))
            channels += 3 * config.growth
        self.layers = nn.Sequential(*layers)
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or not all(layer.shares_activation for layer in self.layers):
            return self.layers(x)
        return self._accumulate_in_place(x)

    def _accumulate_in_place(self, x: torch.Tensor) -> torch.Tensor:
        """Inference: the same numbers as :attr:`layers`, each layer's features written
        into one tensor of :attr:`out_channels` made at the start, instead of a new
        concatenation per layer (L tensors of growing width): on a CPU each new
        full-resolution tensor costs its pages' first touch (measured in the CHANGELOG)."""
        features = _new_like(x, self.out_channels)
        channels = x.shape[1]
        features[:, :channels].copy_(x)
        for layer in self.layers:
            activated = torch.relu(features[:, :channels])  # a new, dense tensor: what each path's ReLU gives
            for path in layer.paths:
                conv = path[-1]
                features[:, channels : channels + conv.out_channels].copy_(conv(activated))
                channels += conv.out_channels
        return features


def _new_like(x: torch.Tensor, channels: int) -> torch.Tensor:
    """An uninitialised N x ``channels`` x H x W tensor laid out as ``x`` (channels_last or not)."""
    layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() else torch.contiguous_format
    return torch.empty((x.shape[0], channels, *x.shape[2:]), dtype=x.dtype, device=x.device, memory_format=layout)


@dataclass(frozen=True)
class InfoFlowConfig:
    """Generator: InfoAccum + U-Net-N (+ SubPixUpsamp at the top)."""

    channels: int = 3
    levels: int = 5  # N down/up-samplings
    base_filters: int = 64  # pix2pix ngf
    max_filters: int = 512
    info_accum: InfoAccumConfig | None = InfoAccumConfig()
    subpixel_top: bool = True
    norm: str = "batch"  # "batch" (pix2pix), "instance" or "none"
    residual: bool = False  # predict y + residual instead of pix2pix's tanh image
    refine: int = 0  # channels of the full-resolution refinement head (0 = none, the paper's generator)
    refine_more: tuple[int, ...] = ()  # channels of further refinement heads, each correcting the one before
    noise_level: bool = False  # takes an optional noise level (--sigma); blind when none is given
    # (residual level, input level) pairs measured on this model's own outputs
    # (restore_core.training.calibration); empty = no second look for --sigma auto.
    noise_calibration: tuple[tuple[float, float], ...] = ()
    recompose: RecomposeConfig | None = None  # dehazing: rebuild the output by the scattering model (None = off)

    def __post_init__(self) -> None:
        require_at_least(self, 0, "levels", "refine")
        require_at_most(self, MAX_REPEATS, "levels", "refine")
        require_at_least(self, 1, "channels", "base_filters", "max_filters", "refine_more")

    def filters(self, level: int) -> int:
        return min(self.base_filters * 2**level, self.max_filters)


class NoiseLevelEmbedding(nn.Module):
    """Turns each image's noise level, known or not, into a bias on the full-resolution features.

    For image b with level ``s_b`` (standard deviation of the noise on the 0-255 scale;
    NaN = unknown) the input is ``v_b = [k_b, k_b * s_b / 50]`` with ``k_b = 1`` when the
    level is known, else 0, and the embedding is ``e_b = W2 · LeakyReLU(W1 · v_b + b1) + b2``,
    one value per feature channel, added to every pixel. For a uniform noise map this is
    what FFDNet's map concatenated to the first convolution amounts to (a level-dependent
    bias), with the unknown case as its own input instead of a guessed level. ``W2`` and
    ``b2`` start at zero, so a model grown from a blind checkpoint starts out as exactly it.
    """

    def __init__(self, channels: int, hidden: int = 32) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, channels))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, noise_level: torch.Tensor) -> torch.Tensor:
        """``noise_level``: (B,) levels, NaN where unknown -> (B, channels, 1, 1)."""
        known = torch.isfinite(noise_level).to(self.mlp[0].weight.dtype)
        level = torch.nan_to_num(noise_level, nan=0.0).to(known.dtype) / 50.0
        return self.mlp(torch.stack([known, known * level], dim=1))[:, :, None, None]


class InfoFlowGenerator(nn.Module):
    """pix2pix U-Net generator with InfoAccum in front and SubPixUpsamp on top.

    Encoder level i: Conv 4x4 stride 2 (LeakyReLU 0.2 before, norm after, none on
    the first). Decoder level i: ReLU, ConvTranspose 4x4 stride 2, norm, with the
    skip concatenated; the top level uses Conv 3x3 + PixelShuffle(2) when
    ``subpixel_top``. Works in [0, 1] on the outside ([-1, 1] inside, as pix2pix).
    """

    def __init__(self, config: InfoFlowConfig = InfoFlowConfig()) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.info_accum = InfoAccum(c, config.info_accum, config.norm if config.norm != "batch" else "none") if config.info_accum else None
        in_ch = self.info_accum.out_channels if self.info_accum else c
        self.encoders = nn.ModuleList()
        for level in range(config.levels):
            out_ch = config.filters(level)
            layers: list[nn.Module] = [] if level == 0 else [nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(in_ch, out_ch, 4, stride=2, padding=1, bias=config.norm == "none" or level == 0))
            if 0 < level < config.levels - 1:
                layers.append(_norm(config.norm, out_ch))
            self.encoders.append(nn.Sequential(*layers))
            in_ch = out_ch
        self.decoders = nn.ModuleList()
        for level in reversed(range(config.levels)):
            inner = config.filters(level) * (1 if level == config.levels - 1 else 2)
            if level == 0:
                up: list[nn.Module] = [nn.ReLU(inplace=True)]  # on the innermost output or a concatenation: used nowhere else
                if config.subpixel_top:
                    up += [nn.Conv2d(inner, c * 4, 3, padding=1), nn.PixelShuffle(2)]
                else:
                    up += [nn.ConvTranspose2d(inner, c, 4, stride=2, padding=1)]
                self.decoders.append(nn.Sequential(*up))
            else:
                out_ch = config.filters(level - 1)
                self.decoders.append(
                    nn.Sequential(nn.ReLU(inplace=True), nn.ConvTranspose2d(inner, out_ch, 4, stride=2, padding=1, bias=config.norm == "none"), _norm(config.norm, out_ch))
                )

        full_resolution_channels = self.info_accum.out_channels if self.info_accum else c
        self.refine = refinement_head(full_resolution_channels + c, config.refine, c) if config.refine else None
        if config.refine_more and not config.refine:
            raise ValueError("infoflow: refine_more needs a first head (refine > 0)")
        self.refine_more = nn.ModuleList(refinement_head(full_resolution_channels + c, width, c) for width in config.refine_more)
        self.noise_level_embedding = NoiseLevelEmbedding(full_resolution_channels) if config.noise_level else None
        self.sigma: float | None = None  # the level told at inference (restore denoise --sigma); None = not told
        # Not told a level, a model with a noise-level input estimates each image's
        # (--sigma auto, the default); --sigma blind runs its learned blind path instead.
        self.estimates_sigma = config.noise_level
        self.second_look = True  # --sigma auto (not quick): look twice when the checkpoint is calibrated
        self.estimated_levels: torch.Tensor | None = None  # of the whole images condition() saw last
        self.looks: FirstLooks | None = None  # their first looks
        self.measured_levels: torch.Tensor | None = None  # given to condition() (camera raw files), NaN where none
        self.recompose = config.recompose
        self.finish_in_forward = True  # the engine turns it off to call finish() on whole images after tiling
        if self.refine is not None and not config.residual:
            raise ValueError("infoflow: refine needs residual = true (the head adds a correction to the output)")

    @property
    def size_multiple(self) -> int:
        return 2**self.config.levels

    @property
    def takes_noise_level(self) -> bool:
        return self.noise_level_embedding is not None

    def set_sigma(self, sigma: float | str | None) -> None:
        """The noise level (0-255 scale) of the images to come; ``"auto"`` = estimated per
        image in two looks (the second when the checkpoint is calibrated); ``"quick"`` =
        the first look only (:func:`estimate_noise_level`); ``"blind"`` or None = not told
        (the learned blind path)."""
        if sigma is None or sigma == "blind":
            self.sigma, self.estimates_sigma = None, False
            return
        if not self.takes_noise_level:
            raise ValueError("this model is blind: it takes no noise level (train one with model.noise_level=true)")
        if sigma in ("auto", "quick"):
            self.sigma, self.estimates_sigma, self.second_look = None, True, sigma == "auto"
            return
        if isinstance(sigma, str):
            raise ValueError(f"expected a level, 'auto', 'quick' or 'blind', got {sigma!r}")
        if not 0 <= sigma <= 255:
            raise ValueError(f"sigma must be between 0 and 255, got {sigma}")
        self.sigma, self.estimates_sigma = float(sigma), False

    def setting_caution(self, name: str, value, recipe: dict) -> str | None:
        """A level told between 0 and 1, most likely meant on the 0-1 scale of float
        images (as DeepInverse and scikit-image take it): on this model's 0-255 scale it
        is a fraction of one 8-bit step, and the image comes back nearly as it was. Or a
        level beyond the range the recipe's noise was drawn from (its
        ``degradation_options.sigma``, else :class:`NoiseConfig`'s): the model never saw
        such noise, so what it does there was not measured."""
        if name != "sigma" or isinstance(value, str) or value is None:
            return None
        if (meant := meant_on_the_unit_scale(value, value)) is not None:
            return (f"takes levels on the 0-255 scale of 8-bit samples, where {value:g} is a fraction of one step (next to "
                    f"no noise, so little is removed); a level of {value:g} on the 0-1 scale is {meant} here")
        if recipe.get("degradation") != "noise":
            return None
        trained = (recipe.get("degradation_options") or {}).get("sigma", NoiseConfig().sigma)
        if isinstance(trained, (int, float)):
            trained = (trained, trained)  # one level recorded: a range of one
        if not (isinstance(trained, (list, tuple)) and len(trained) == 2):
            return None  # a record this code did not write says nothing
        low, high = trained
        if low <= value <= high:
            return None
        return (f"was trained on noise levels {low:g}-{high:g}; told a level outside them, it restores images unlike any "
                "it learned from (not measured)")

    def condition(self, y: torch.Tensor, measured: torch.Tensor | None = None) -> list[dict[str, float]] | None:
        """With ``--sigma auto``: estimate the level of each whole (untiled) image, for the
        ``forward`` calls that follow (one per tile, so every tile is told the same level);
        returns the estimates (``{"noise_sigma": level}`` per image, for ``--json``).
        The first look reads the image, and its colour, at full resolution and at half
        (:func:`first_looks`); where they say the noise is correlated between neighbours
        (a camera's, demosaiced), the level told is raised
        (:func:`level_for_correlated_noise`), after the second look when there is one.
        ``measured``: levels measured outside the image (a camera raw file's sensor data,
        :func:`restore_core.io.camera_raw.noise_level_to_tell`), NaN where there is none;
        where there is one it is told instead of either look's estimate."""
        self.measured_levels = measured if self.estimates_sigma else None
        self.looks = None
        if not self.estimates_sigma:
            self.estimated_levels = None
            return None
        if measured is not None and not torch.isnan(measured).any():
            self.estimated_levels = measured.to(y.device)
            return self._reported_levels()
        self.looks = first_looks(y)
        # The crop pass of the second look is told the fine look, as its calibration was measured.
        first = self.looks.fine if self._looks_twice else level_for_correlated_noise(self.looks.fine, self.looks)
        self.estimated_levels = _prefer_measured(first, measured)
        return self._reported_levels()

    @property
    def _looks_twice(self) -> bool:
        return self.second_look and bool(self.config.noise_calibration)

    def _reported_levels(self, first_look: torch.Tensor | None = None) -> list[dict[str, float]]:
        weights = correlated_noise_weight(self.looks).tolist() if self.looks is not None else [0.0] * len(self.estimated_levels)
        reports = []
        for i, level in enumerate(self.estimated_levels.tolist()):
            if self.measured_levels is not None and not math.isnan(float(self.measured_levels[i])):
                reports.append({"noise_sigma": round(level, 2), "noise_sigma_from_raw": round(level, 2)})
                continue
            report = {"noise_sigma": round(level, 2)}
            if first_look is not None:
                report["noise_sigma_first_look"] = round(float(first_look[i]), 2)
            if weights[i] > 0:  # the level was raised for correlated noise
                report["noise_sigma_coarse_look"] = round(float(self.looks.coarse[i]), 2)
            reports.append(report)
        return reports

    @property
    def needs_first_pass(self) -> bool:
        """Whether the engine should run a first pass on a crop and hand it to
        :meth:`condition_on_first_pass` before restoring (``--sigma auto`` with a
        calibration table, for images whose level was not measured)."""
        measured_all = self.measured_levels is not None and not torch.isnan(self.measured_levels).any()
        return self.estimates_sigma and self._looks_twice and not measured_all

    def condition_on_first_pass(self, y: torch.Tensor, restored: torch.Tensor) -> list[dict[str, float]]:
        """The second look of ``--sigma auto``: ``restored`` is this model's output for
        ``y`` (a crop of each image, told the first look's level); the level it removed,
        through the checkpoint's calibration table (:func:`residual_noise_level`), raised
        where the first looks found the noise correlated
        (:func:`level_for_correlated_noise`), is what the ``forward`` calls that follow are told."""
        first = self.estimated_levels
        second = residual_noise_level(y, restored, self.config.noise_calibration)
        if self.looks is not None:
            second = level_for_correlated_noise(second.to(self.looks.fine), self.looks)
        # An image too small for the first look (NaN: unknown) stays unknown.
        second = second if first is None else torch.where(torch.isnan(first), first, second.to(first.dtype))
        self.estimated_levels = _prefer_measured(second, self.measured_levels)
        return self._reported_levels(first_look=first if first is not None else torch.full((len(y),), float("nan")))

    def set_recompose_radius(self, radius: int) -> None:
        """Switch the scattering-model recomposition on with this guided-filter radius
        (the config's other values, or the defaults), or off with 0."""
        if radius < 0:
            raise ValueError(f"the radius must be >= 0 (0 = off), got {radius}")
        if radius == 0:
            self.recompose = None
        else:
            self.recompose = dataclasses.replace(self.recompose or RecomposeConfig(), radius=int(radius))

    def forward(self, y: torch.Tensor, noise_level: torch.Tensor | None = None) -> torch.Tensor:
        """``noise_level``: per-image levels (B,), NaN where unknown; default: ``self.sigma`` for all."""
        x = y * 2 - 1
        if self.info_accum is not None:
            x = self.info_accum(x)
        if self.noise_level_embedding is not None:
            if noise_level is None and self.estimates_sigma:
                whole = self.estimated_levels
                noise_level = whole if whole is not None and len(whole) == y.shape[0] else estimate_noise_level(y)
            if noise_level is None:
                noise_level = y.new_full((y.shape[0],), float("nan") if self.sigma is None else self.sigma)
            x = x.add_(self.noise_level_embedding(noise_level).to(x.dtype))  # x is this call's own tensor
        full_resolution = x
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        skips.pop()  # the innermost output feeds the decoder directly
        for decoder in self.decoders:
            x = decoder(x)
            if skips:
                x = torch.cat([x, skips.pop()], dim=1)
        if not self.config.residual:
            out = (torch.tanh(x) + 1) / 2
            return self.finish(y, out) if self.finish_in_forward else out
        out = y + x / 2
        heads = ([self.refine] if self.refine is not None else []) + list(self.refine_more)
        if heads and not torch.is_grad_enabled():
            # Inference: one tensor holds [full_resolution, out * 2 - 1] for every head, its
            # last channels rewritten per head, instead of a new concatenation each (the same numbers).
            # The features are needed no more once copied: released, so that the heads'
            # peak of memory holds them once (a 12 MP photograph: 2.4 GB less).
            features = full_resolution.shape[1]
            head_input = _new_like(full_resolution, features + out.shape[1])
            head_input[:, :features].copy_(full_resolution)
            del full_resolution
            for head in heads:
                head_input[:, features:].copy_(out * 2 - 1)
                out = out + head(head_input) / 2
        else:
            for head in heads:
                out = out + head(torch.cat([full_resolution, out * 2 - 1], dim=1)) / 2
        return self.finish(y, out) if self.finish_in_forward else out

    def finish(self, y: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The whole-image step after the network: the scattering-model recomposition
        when configured, else nothing. The engine runs tiles with ``finish_in_forward``
        off and calls this once on the whole image, so tiling cannot cut the guided
        filter's windows."""
        return recompose(y, out, self.recompose) if self.recompose is not None else out


def _prefer_measured(estimated: torch.Tensor, measured: torch.Tensor | None) -> torch.Tensor:
    """Per image, the ``measured`` level where there is one (not NaN), else the ``estimated``."""
    if measured is None:
        return estimated
    measured = measured.to(estimated.device, estimated.dtype)
    return torch.where(torch.isnan(measured), estimated, measured)


@dataclass(frozen=True)
class PatchGANConfig:
    channels: int = 3  # per image; D sees concat[input, output]
    base_filters: int = 64
    norm: str = "batch"

    def __post_init__(self) -> None:
        require_at_least(self, 1, "channels", "base_filters")


class PatchDiscriminator(nn.Module):
    """pix2pix's 5-layer PatchGAN: C64(s2) C128(s2) C256(s2) C512(s1) C1(s1), 4x4 kernels,
    LeakyReLU 0.2; a 70x70 receptive field per output score. Conditioned on the input."""

    def __init__(self, config: PatchGANConfig = PatchGANConfig()) -> None:
        super().__init__()
        f = config.base_filters
        self.net = nn.Sequential(
            nn.Conv2d(2 * config.channels, f, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(f, 2 * f, 4, stride=2, padding=1), _norm(config.norm, 2 * f), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * f, 4 * f, 4, stride=2, padding=1), _norm(config.norm, 4 * f), nn.LeakyReLU(0.2),
            nn.Conv2d(4 * f, 8 * f, 4, stride=1, padding=1), _norm(config.norm, 8 * f), nn.LeakyReLU(0.2),
            nn.Conv2d(8 * f, 1, 4, stride=1, padding=1),
        )

    def forward(self, degraded: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([degraded * 2 - 1, candidate * 2 - 1], dim=1))

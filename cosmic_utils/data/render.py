"""Render 5-band ugriz galaxy cutouts from catalogue photometry.

The published partitions hold SDSS image cutouts we cannot redistribute; the bundled catalogue
holds real SDSS galaxies' photometry. This module turns each catalogue row into a plausible
SDSS-like cutout whose total flux in every band is that row's catalogue magnitude and whose
noise gives about the catalogue's photometric error, so a model fed the images sees the same
information (and the same noise level) as the catalogue carries. docs/data.md explains every
choice with numbers; in short:

Galaxy model (drawn per row, from the r magnitude and g-r colour only, never the redshift,
which is not even an argument):

- bulge + disk: an exponential disk and a de Vaucouleurs (Sersic n=4) bulge sharing one
  centre and position angle. Bulge-to-total in r grows with g-r (red galaxies are
  bulge-dominated) with scatter, and is larger in redder bands (bulges are redder).
- half-light radius from a simple apparent magnitude-size relation chosen for the SDSS Main
  Galaxy Sample (about 2" at r = 17):
  ``log10(r50 / arcsec) = 0.30 - 0.16 (r - 17) + N(0, 0.15)`` clipped to 0.4..8"; the bulge's
  radius is half the disk's. Disk axis ratio from a random inclination of a thick disk
  (intrinsic 0.15), bulge axis ratio uniform 0.6..1, position angle uniform, centre offset
  uniform within +-0.5 px of the stamp centre.
- each profile is a mixture of Gaussians (MoG) fitted once to the Sersic profile (4 Gaussians
  for the exponential truncated at 4 r_e, 8 for de Vaucouleurs truncated at 8 r_e with the four
  innermost merged by moment matching, as they are far below the PSF), rescaled so half the
  light lies within r_e. Amplitudes sum to one, so the model's total flux is exactly the
  catalogue flux ``10**(-0.4 (m - 22.5))`` nanomaggies.

Why a mixture of Gaussians: a Gaussian convolved with a Gaussian PSF is a Gaussian with the
covariances added, so PSF convolution is exact and free; integrating over a square pixel is
approximated by adding the box's variance (1/12 px^2) - accurate to well under 1 % because
the PSF is at least ~1 px wide. The log of each component is a quadratic polynomial in pixel
coordinates, so a chunk of galaxies x bands is evaluated as one small matrix product with a
fixed 6 x S^2 basis (x^2, xy, y^2, x, y, 1) followed by ``exp``; no FFTs, no subsampling. The
product is done by ``np.einsum`` rather than BLAS, whose own threads oversubscribe the cores.

PSF: a double Gaussian (core 90 %, wing 10 % at twice the core's sigma, as SDSS's psField
fits), core FWHM in r drawn log-normally around 1.4" (0.12 scatter, clipped to 0.9..2.5"),
scaled per band as lambda^-0.2 (Kolmogorov seeing), so broader in u (x1.12) than z (x0.93).
Every galaxy Gaussian is convolved with the core; for the wing the smallest ones are merged by
moment matching (15 Gaussians per band in all, see ``_WING_MIXTURES``).

Noise: the image is sky-subtracted flux plus Gaussian noise of variance
``c_b * (sky_b + model)`` per pixel (photon noise of sky and galaxy; ``c_b`` is nanomaggies per
photo-electron, i.e. 1 / (gain x counts per nanomaggy)). Per-band sky from the SDSS dark sky
(22.1, 21.8, 20.9, 20.2, 18.9 mag/arcsec^2 in u..z). With ``mag_err`` given, ``c_b`` is set per
row so that the flux summed in a circular aperture of radius
``clip(2 * sqrt(r50^2 + (FWHM_r/2)^2), 4 px, out_size/2 - 1)`` about the stamp centre scatters by
exactly the catalogue's flux error ``F * err * ln(10) / 2.5``; without ``mag_err`` typical SDSS
calibration values are used. :func:`aperture_noise_check` measures that scatter.

Determinism: each row's randomness comes from its own counter-based stream
``Philox(key=f(seed), counter=row_offset + row)``, parameters first, then noise, so the
result does not depend on chunking, threading, or how the rows are split over calls (pass
``row_offset``). Same seed -> identical output; rendering at ``size=64`` and cropping to
32 (the published cutouts were 64 px cropped to 32) draws a different noise field.
Speed: rows are rendered in chunks (bounded memory) on a small thread pool (numpy releases
the GIL in matmul / exp); ``cosmic data bench`` prints the rate.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from cosmic_utils.config import BANDS

RENDERER_VERSION: str = "mog-bulge-disk-1"
#: SDSS pixel scale, arcsec / pixel.
PIXEL_SCALE: float = 0.396
#: Effective wavelengths of u g r i z (nm), for the seeing scaling.
BAND_WAVELENGTH_NM: tuple[float, ...] = (355.1, 468.6, 616.6, 748.0, 893.2)

# Mixture-of-Gaussians approximations of unit-flux Sersic profiles (radius in units of r_e):
# amplitudes sum to 1, variances in r_e^2. Fitted by least squares to the truncated profiles
# (exp: soft truncation 3..4 r_e; de Vaucouleurs: 7..8 r_e, its 4 innermost Gaussians merged),
# then all variances scaled (x1.033 exp, x1.375 dev) so that exactly half of the mixture's
# flux lies within r_e: r_e stays the true half-light radius of what is rendered. docs/data.md.
EXP_AMP: tuple[float, ...] = (0.005997, 0.071745, 0.363180, 0.559078)
EXP_VAR: tuple[float, ...] = (0.0120907, 0.089123, 0.3969712, 1.4569669)
DEV_AMP: tuple[float, ...] = (0.044465, 0.086590, 0.186852, 0.314256, 0.367837)
DEV_VAR: tuple[float, ...] = (2.6445758e-03, 2.0127144e-02, 1.1573952e-01, 7.2738901e-01, 6.2324343)


def _merge(amps: tuple[float, ...], variances: tuple[float, ...], groups: tuple[tuple[int, ...], ...]) -> tuple[tuple[float, float], ...]:
    """Moment-matched merge of mixture components: (sum of amplitudes, amplitude-weighted variance)."""
    out = []
    for group in groups:
        a = sum(amps[i] for i in group)
        out.append((a, sum(amps[i] * variances[i] for i in group) / a))
    return tuple(out)


_MIXTURES = {"exp": EXP_AMP, "dev": DEV_AMP}
_VARIANCES = {"exp": EXP_VAR, "dev": DEV_VAR}
#: The PSF wing (10 % of the light, twice the core's width) smooths away the difference between
#: the smallest components, so for the wing they are merged (moment matching: flux and second
#: moments unchanged): 6 Gaussians instead of 9 per band. Against the unmerged mixture on 500
#: validation galaxies the largest pixel difference is 0.7 % of the peak (median 0.002 %), at
#: most 0.6 sigma of the noise. Total per band: 9 core + 6 wing = 15 Gaussians.
_WING_MIXTURES = {
    "exp": _merge(EXP_AMP, EXP_VAR, ((0, 1), (2,), (3,))),
    "dev": _merge(DEV_AMP, DEV_VAR, ((0, 1, 2), (3,), (4,))),
}


@dataclass(frozen=True)
class RenderConfig:
    """Every physical choice of the renderer, with its default (see docs/data.md)."""

    # size-magnitude relation (r band): log10 r50["] = size_zero - size_slope * (r - 17) + N(0, size_scatter)
    size_zero: float = 0.30
    size_slope: float = 0.16
    size_scatter_dex: float = 0.15
    size_min_arcsec: float = 0.4
    size_max_arcsec: float = 8.0
    bulge_size_ratio: float = 0.5
    # bulge fraction in r: 0.05 + 0.5 * clip((g-r - 0.55)/0.4, 0, 1) + N(0, 0.12), clipped 0..0.9
    bt_base: float = 0.05
    bt_colour_gain: float = 0.5
    bt_scatter: float = 0.12
    bt_band_factor: tuple[float, ...] = (0.55, 0.8, 1.0, 1.1, 1.15)
    disk_thickness: float = 0.15
    min_axis_ratio: float = 0.15
    bulge_q_min: float = 0.6
    # PSF: core FWHM in r, log-normal scatter, clip; wing fraction and width
    seeing_fwhm_r: float = 1.4
    seeing_scatter: float = 0.12
    seeing_min: float = 0.9
    seeing_max: float = 2.5
    psf_wing_fraction: float = 0.1
    psf_wing_ratio: float = 2.0
    # sky brightness (AB mag / arcsec^2) and default nanomaggies per photo-electron, u..z
    sky_mag_arcsec2: tuple[float, ...] = (22.1, 21.8, 20.9, 20.2, 18.9)
    nmgy_per_electron: tuple[float, ...] = (6.1e-3, 9.6e-4, 1.06e-3, 1.36e-3, 5.9e-3)
    # noise calibration aperture: radius = aperture_scale * sqrt(r50^2 + (FWHM_r/2)^2)
    aperture_scale: float = 2.0
    aperture_min_px: float = 4.0
    mag_err_floor: float = 1e-3
    centre_jitter_px: float = 0.5

    def seeing_band_scale(self) -> np.ndarray:
        lam = np.asarray(BAND_WAVELENGTH_NM)
        return (lam[2] / lam) ** 0.2

    def sky_nmgy_per_px(self) -> np.ndarray:
        """Sky level per pixel in nanomaggies, u..z."""
        return 10 ** (-0.4 * (np.asarray(self.sky_mag_arcsec2) - 22.5)) * PIXEL_SCALE**2


DEFAULT_CONFIG = RenderConfig()


@dataclass
class GalaxyParams:
    """Per-row parameters the renderer draws (arrays over rows; lengths in pixels unless named)."""

    r50_arcsec: np.ndarray  # [N] disk half-light radius (semi-major)
    bulge_fraction: np.ndarray  # [N, 5]
    q_disk: np.ndarray  # [N]
    q_bulge: np.ndarray  # [N]
    position_angle: np.ndarray  # [N] radians
    dx: np.ndarray  # [N] centre offset, px
    dy: np.ndarray  # [N]
    psf_fwhm_arcsec: np.ndarray  # [N, 5] core FWHM
    aperture_radius_px: np.ndarray  # [N]
    flux_nmgy: np.ndarray  # [N, 5]
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def mag_to_nmgy(mag: np.ndarray) -> np.ndarray:
    """AB magnitude -> flux in nanomaggies (22.5 mag = 1 nanomaggy)."""
    return 10.0 ** (-0.4 * (np.asarray(mag, dtype=np.float64) - 22.5))


def nmgy_to_mag(flux: np.ndarray) -> np.ndarray:
    """Flux in nanomaggies -> AB magnitude (NaN for non-positive flux)."""
    flux = np.asarray(flux, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux > 0, 22.5 - 2.5 * np.log10(np.where(flux > 0, flux, 1.0)), np.nan)


def _key(seed: int) -> np.ndarray:
    """A well-mixed 128-bit Philox key from any integer seed."""
    return np.random.SeedSequence(int(seed)).generate_state(2, dtype=np.uint64)


def _row_rng(key: np.ndarray, row: int) -> np.random.Generator:
    # counter word 2 = row: every row has its own disjoint stream of 2**64 blocks.
    return np.random.Generator(np.random.Philox(key=key, counter=[0, 0, row, 0]))


_EXP_FLOOR = np.float32(-87.0)
_N_NORMAL = 3  # size scatter, seeing scatter, bulge-fraction scatter
_N_UNIFORM = 5  # cos(inclination), bulge q, position angle, dx, dy


def _check_inputs(magnitude: np.ndarray, mag_err: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    mag = np.asarray(magnitude, dtype=np.float64)
    if mag.ndim != 2 or mag.shape[1] != len(BANDS):
        raise ValueError(f"magnitude must have shape [N, 5] (u,g,r,i,z), got {list(mag.shape)}")
    if not np.isfinite(mag).all():
        raise ValueError("magnitude has non-finite values")
    err = None
    if mag_err is not None:
        err = np.asarray(mag_err, dtype=np.float64)
        if err.shape != mag.shape:
            raise ValueError(f"mag_err must have the shape of magnitude {list(mag.shape)}, got {list(err.shape)}")
        if not np.isfinite(err).all() or (err < 0).any():
            raise ValueError("mag_err has negative or non-finite values")
    return mag, err


def _params_from_draws(
    mag: np.ndarray, normals: np.ndarray, uniforms: np.ndarray, out_size: int, cfg: RenderConfig
) -> GalaxyParams:
    r = mag[:, 2]
    log_r50 = cfg.size_zero - cfg.size_slope * (r - 17.0) + cfg.size_scatter_dex * normals[:, 0]
    r50 = np.clip(10.0**log_r50, cfg.size_min_arcsec, cfg.size_max_arcsec)
    fwhm_r = np.clip(cfg.seeing_fwhm_r * np.exp(cfg.seeing_scatter * normals[:, 1]), cfg.seeing_min, cfg.seeing_max)
    fwhm = fwhm_r[:, None] * cfg.seeing_band_scale()[None, :]
    gr = mag[:, 1] - mag[:, 2]
    redness = np.clip((gr - 0.55) / 0.4, 0.0, 1.0)
    bt_r = np.clip(cfg.bt_base + cfg.bt_colour_gain * redness + cfg.bt_scatter * normals[:, 2], 0.0, 0.9)
    bt = np.clip(bt_r[:, None] * np.asarray(cfg.bt_band_factor)[None, :], 0.0, 0.95)
    cos_i = uniforms[:, 0]
    q0 = cfg.disk_thickness
    q_disk = np.maximum(np.sqrt(cos_i**2 * (1 - q0**2) + q0**2), cfg.min_axis_ratio)
    q_bulge = cfg.bulge_q_min + (1 - cfg.bulge_q_min) * uniforms[:, 1]
    pa = np.pi * uniforms[:, 2]
    dx = (2 * uniforms[:, 3] - 1) * cfg.centre_jitter_px
    dy = (2 * uniforms[:, 4] - 1) * cfg.centre_jitter_px
    r50_conv_px = np.sqrt(r50**2 + (fwhm_r / 2) ** 2) / PIXEL_SCALE
    ap = np.clip(cfg.aperture_scale * r50_conv_px, cfg.aperture_min_px, out_size / 2 - 1)
    return GalaxyParams(r50, bt, q_disk, q_bulge, pa, dx, dy, fwhm, ap, mag_to_nmgy(mag))


def draw_galaxy_params(
    magnitude: np.ndarray, seed: int = 0, row_offset: int = 0, out_size: int = 32,
    config: RenderConfig = DEFAULT_CONFIG,
) -> GalaxyParams:
    """The structural parameters :func:`render_cutouts` draws for these rows (same streams)."""
    mag, _ = _check_inputs(magnitude, None)
    key = _key(seed)
    n = mag.shape[0]
    normals = np.empty((n, _N_NORMAL))
    uniforms = np.empty((n, _N_UNIFORM))
    for i in range(n):
        rng = _row_rng(key, row_offset + i)
        normals[i] = rng.standard_normal(_N_NORMAL)
        uniforms[i] = rng.random(_N_UNIFORM)
    return _params_from_draws(mag, normals, uniforms, out_size, config)


def _basis(size: int) -> np.ndarray:
    """[6, size*size] float32: x^2, xy, y^2, x, y, 1 at pixel centres, origin at pixel size//2."""
    c = np.arange(size, dtype=np.float64) - size // 2
    y, x = np.meshgrid(c, c, indexing="ij")
    return np.stack([x * x, x * y, y * y, x, y, np.ones_like(x)]).reshape(6, -1).astype(np.float32)


def _aperture_masks(size: int, radius: np.ndarray) -> np.ndarray:
    """[N, size, size] bool masks of circles of ``radius`` px about pixel (size//2, size//2)."""
    c = np.arange(size, dtype=np.float64) - size // 2
    r2 = c[None, :] ** 2 + c[:, None] ** 2
    return r2[None, :, :] <= (radius[:, None, None] ** 2)


def _model_chunk(p: GalaxyParams, size: int, basis: np.ndarray, cfg: RenderConfig) -> np.ndarray:
    """Noiseless PSF-convolved model, float32 [n, 5, size, size] in nanomaggies per pixel."""
    n = p.r50_arcsec.shape[0]
    nb = len(BANDS)
    sin, cos = np.sin(p.position_angle), np.cos(p.position_angle)
    comps: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # amp, cxx, cxy, cyy ([n,5] each)
    sig_core = p.psf_fwhm_arcsec / (2 * math.sqrt(2 * math.log(2))) / PIXEL_SCALE  # [n,5] px
    core_var, wing_var = sig_core**2, (cfg.psf_wing_ratio * sig_core) ** 2
    w_core, w_wing = 1 - cfg.psf_wing_fraction, cfg.psf_wing_fraction
    for frac, r_e_arcsec, q, mixture in (
        (1 - p.bulge_fraction, p.r50_arcsec, p.q_disk, "exp"),
        (p.bulge_fraction, p.r50_arcsec * cfg.bulge_size_ratio, p.q_bulge, "dev"),
    ):
        r_e = np.maximum(r_e_arcsec, 0.3) / PIXEL_SCALE
        mxx = (cos**2 + q**2 * sin**2) * r_e**2
        myy = (sin**2 + q**2 * cos**2) * r_e**2
        mxy = (1 - q**2) * sin * cos * r_e**2
        core = zip(_MIXTURES[mixture], _VARIANCES[mixture], strict=True)
        wing = _WING_MIXTURES[mixture]
        for (a_k, v_k), w_j, s2 in [(c, w_core, core_var) for c in core] + [(c, w_wing, wing_var) for c in wing]:
            extra = s2 + 1.0 / 12.0  # PSF + pixel box, [n,5]
            amp = p.flux_nmgy * frac * (a_k * w_j)
            comps.append((amp, (v_k * mxx)[:, None] + extra, np.broadcast_to((v_k * mxy)[:, None], (n, nb)),
                          (v_k * myy)[:, None] + extra))
    model = np.zeros((n * nb, size * size), dtype=np.float32)
    tmp = np.empty_like(model)
    dx = np.broadcast_to(p.dx[:, None], (n, nb))
    dy = np.broadcast_to(p.dy[:, None], (n, nb))
    coeff = np.empty((n, nb, 6), dtype=np.float64)
    for amp, cxx, cxy, cyy in comps:
        det = cxx * cyy - cxy * cxy
        a, b, c = cyy / det, -cxy / det, cxx / det  # precision matrix
        log_norm = np.log(np.maximum(amp, 1e-30) / (2 * np.pi * np.sqrt(det)))
        coeff[..., 0] = -0.5 * a
        coeff[..., 1] = -b
        coeff[..., 2] = -0.5 * c
        coeff[..., 3] = a * dx + b * dy
        coeff[..., 4] = b * dx + c * dy
        coeff[..., 5] = log_norm - 0.5 * (a * dx * dx + 2 * b * dx * dy + c * dy * dy)
        # einsum without BLAS: OpenBLAS would start its own threads for this product and, inside
        # our thread pool on a busy machine, its spin-waiting made rendering 4-6x slower.
        np.einsum("gk,kp->gp", coeff.reshape(n * nb, 6).astype(np.float32), basis, out=tmp, optimize=False)
        # exp() of values below -87.3 gives float32 subnormals, which run ~10x slower on x86;
        # clamping costs one cheap pass and changes pixels by < 2e-38 nanomaggies.
        np.maximum(tmp, _EXP_FLOOR, out=tmp)
        np.exp(tmp, out=tmp)
        model += tmp
    return model.reshape(n, nb, size, size)


def _render_chunk(
    mag: np.ndarray, err: np.ndarray | None, key: np.ndarray, row0: int, size: int, out_size: int,
    noise: bool, basis: np.ndarray, cfg: RenderConfig, out: np.ndarray,
) -> None:
    n = mag.shape[0]
    nb = len(BANDS)
    normals = np.empty((n, _N_NORMAL))
    uniforms = np.empty((n, _N_UNIFORM))
    field_noise = np.empty((n, nb, size, size), dtype=np.float32) if noise else None
    for i in range(n):
        rng = _row_rng(key, row0 + i)
        normals[i] = rng.standard_normal(_N_NORMAL)
        uniforms[i] = rng.random(_N_UNIFORM)
        if field_noise is not None:
            rng.standard_normal(dtype=np.float32, out=field_noise[i])
    p = _params_from_draws(mag, normals, uniforms, out_size, cfg)
    model = _model_chunk(p, size, basis, cfg)
    lo = (size - out_size) // 2
    model = model[:, :, lo : lo + out_size, lo : lo + out_size]
    if field_noise is None:
        out[:] = model
        return
    field_noise = field_noise[:, :, lo : lo + out_size, lo : lo + out_size]
    sky = cfg.sky_nmgy_per_px()  # [5]
    if err is None:
        c = np.broadcast_to(np.asarray(cfg.nmgy_per_electron)[None, :], (n, nb))
    else:
        sigma_f = p.flux_nmgy * np.maximum(err, cfg.mag_err_floor) * (math.log(10) / 2.5)
        mask = _aperture_masks(out_size, p.aperture_radius_px)  # [n, S, S]
        n_pix = mask.sum(axis=(1, 2))  # [n]
        f_ap = np.einsum("nbyx,nyx->nb", model, mask.astype(np.float32), dtype=np.float64)
        c = sigma_f**2 / (sky[None, :] * n_pix[:, None] + f_ap)
    var = (sky[None, :, None, None] + np.maximum(model, 0.0)) * c[:, :, None, None].astype(np.float32)
    np.sqrt(var, out=var)
    var *= field_noise
    out[:] = model + var


def render_cutouts(
    magnitude: np.ndarray,
    mag_err: np.ndarray | None = None,
    seed: int = 0,
    *,
    size: int = 32,
    out_size: int | None = None,
    noise: bool = True,
    row_offset: int = 0,
    chunk_rows: int = 128,
    threads: int | None = None,
    config: RenderConfig = DEFAULT_CONFIG,
) -> np.ndarray:
    """Render float32 ``[N, 5, out_size, out_size]`` cutouts (nanomaggies / pixel, sky-subtracted).

    ``magnitude``: AB u,g,r,i,z ``[N, 5]``; ``mag_err``: their 1-sigma errors (sets the noise
    per row so aperture photometry scatters by about these errors; None: typical SDSS noise).
    ``size``: rendered stamp (32 or 64 px, any even size works); ``out_size``: centre crop
    (default ``size``; the published data are 64 px cut to 32). ``noise=False`` returns the
    noiseless model. ``row_offset``: global index of the first row, so a dataset rendered in
    pieces equals one rendered at once. The redshift is deliberately not an argument.
    """
    mag, err = _check_inputs(magnitude, mag_err)
    out_size = size if out_size is None else int(out_size)
    if size <= 0 or out_size <= 0 or out_size > size or (size - out_size) % 2:
        raise ValueError(f"bad sizes: size={size}, out_size={out_size} (need out_size <= size, same parity)")
    n = mag.shape[0]
    out = np.empty((n, len(BANDS), out_size, out_size), dtype=np.float32)
    if n == 0:
        return out
    key = _key(seed)
    basis = _basis(size)
    starts = list(range(0, n, max(1, int(chunk_rows))))

    def job(start: int) -> None:
        stop = min(start + chunk_rows, n)
        _render_chunk(mag[start:stop], None if err is None else err[start:stop], key, row_offset + start,
                      size, out_size, noise, basis, config, out[start:stop])

    workers = threads if threads is not None else min(4, os.cpu_count() or 1)
    if workers <= 1 or len(starts) == 1:
        for s in starts:
            job(s)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(job, starts))
    return out


def aperture_flux(image: np.ndarray, radius_px: np.ndarray | float) -> np.ndarray:
    """Flux summed in a circle of ``radius_px`` about the stamp centre: ``[N, 5, S, S] -> [N, 5]``."""
    image = np.asarray(image)
    n, _, s, _ = image.shape
    radius = np.broadcast_to(np.asarray(radius_px, dtype=np.float64), (n,))
    mask = _aperture_masks(s, radius).astype(np.float64)
    return np.einsum("nbyx,nyx->nb", image, mask, dtype=np.float64)


def aperture_noise_check(
    magnitude: np.ndarray, mag_err: np.ndarray, seed: int = 0, config: RenderConfig = DEFAULT_CONFIG
) -> np.ndarray:
    """Per band, the ratio of the measured aperture-flux noise to the catalogue flux error.

    Renders every row with and without noise (same streams), takes the flux in the
    calibration aperture of each row, divides the difference by the catalogue flux error
    ``F * err * ln(10)/2.5`` and returns the standard deviation of that ratio per band
    (``[5]``; about 1 when the rendered noise matches the catalogue errors).
    """
    mag, err = _check_inputs(magnitude, mag_err)
    noisy = render_cutouts(mag, err, seed, config=config)
    clean = render_cutouts(mag, err, seed, noise=False, config=config)
    params = draw_galaxy_params(mag, seed, config=config)
    diff = aperture_flux(noisy - clean, params.aperture_radius_px)
    sigma_f = params.flux_nmgy * np.maximum(err, config.mag_err_floor) * (math.log(10) / 2.5)
    return np.std(diff / sigma_f, axis=0)

"""Render 5-band ugriz galaxy cutouts from catalogue photometry (bulge + disk, PSF, sky, noise).

Each catalogue row becomes an SDSS-like cutout whose total flux per band is the row's magnitude
and whose aperture-flux noise matches the row's catalogue error. Every per-galaxy property is
drawn from the photometry (r magnitude, g-r colour) and the seed only, never from the redshift,
which is not even an argument. Profiles are mixtures of Gaussians (PSF convolution is exact);
each row has its own Philox stream (output independent of chunking and threads).
Reasoning and numbers: docs/data.md "The renderer".
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

# Mixture-of-Gaussians fits of unit-flux truncated Sersic profiles (amplitudes sum to 1, variances
# in r_e^2, scaled so half the light lies within r_e; docs/data.md "Galaxy model").
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
#: For the broad PSF wing the smallest components are merged (6 instead of 9 Gaussians per band;
#: accuracy measured in docs/data.md "PSF").
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


def _draws(key: np.ndarray, row0: int, n: int, noise_shape: tuple[int, ...] | None = None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Each row's stream in order: its normals, its uniforms, then (given ``noise_shape``) its noise field."""
    normals = np.empty((n, _N_NORMAL))
    uniforms = np.empty((n, _N_UNIFORM))
    noise = None if noise_shape is None else np.empty((n, *noise_shape), dtype=np.float32)
    for i in range(n):
        rng = _row_rng(key, row0 + i)
        normals[i] = rng.standard_normal(_N_NORMAL)
        uniforms[i] = rng.random(_N_UNIFORM)
        if noise is not None:
            rng.standard_normal(dtype=np.float32, out=noise[i])
    return normals, uniforms, noise


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


def _params_from_draws(mag: np.ndarray, normals: np.ndarray, uniforms: np.ndarray, out_size: int,
                       cfg: RenderConfig) -> GalaxyParams:
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


def draw_galaxy_params(magnitude: np.ndarray, seed: int = 0, row_offset: int = 0, out_size: int = 32,
                       config: RenderConfig = DEFAULT_CONFIG) -> GalaxyParams:
    """The structural parameters :func:`render_cutouts` draws for these rows (same streams)."""
    mag, _ = _check_inputs(magnitude, None)
    normals, uniforms, _ = _draws(_key(seed), row_offset, mag.shape[0])
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


def _render_chunk(mag: np.ndarray, err: np.ndarray | None, key: np.ndarray, row0: int, size: int, out_size: int,
                  noise: bool, basis: np.ndarray, cfg: RenderConfig, out: np.ndarray) -> None:
    n = mag.shape[0]
    nb = len(BANDS)
    normals, uniforms, field_noise = _draws(key, row0, n, (nb, size, size) if noise else None)
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


def render_cutouts(magnitude: np.ndarray, mag_err: np.ndarray | None = None, seed: int = 0, *, size: int = 32,
                   out_size: int | None = None, noise: bool = True, row_offset: int = 0, chunk_rows: int = 128,
                   threads: int | None = None, config: RenderConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Render float32 ``[N, 5, out_size, out_size]`` cutouts (nanomaggies / pixel, sky-subtracted) of AB u..z
    ``magnitude`` ``[N, 5]``; ``mag_err`` sets each row's noise (None: typical SDSS noise); ``out_size`` crops the
    centre of the ``size`` stamp; ``row_offset`` (global index of the first row) makes pieces equal one whole
    render. The redshift is deliberately not an argument."""
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


def aperture_noise_check(magnitude: np.ndarray, mag_err: np.ndarray, seed: int = 0,
                         config: RenderConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Per band ``[5]``: std of (noisy - noiseless aperture flux) / catalogue flux error (about 1 when calibrated)."""
    mag, err = _check_inputs(magnitude, mag_err)
    noisy = render_cutouts(mag, err, seed, config=config)
    clean = render_cutouts(mag, err, seed, noise=False, config=config)
    params = draw_galaxy_params(mag, seed, config=config)
    diff = aperture_flux(noisy - clean, params.aperture_radius_px)
    sigma_f = params.flux_nmgy * np.maximum(err, config.mag_err_floor) * (math.log(10) / 2.5)
    return np.std(diff / sigma_f, axis=0)

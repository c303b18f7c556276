"""The renderer: no redshift in, determinism, flux and noise against the catalogue."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

from cosmic_utils.data import catalog, render


@pytest.fixture(scope="module")
def rows() -> tuple[np.ndarray, np.ndarray]:
    df = catalog.valid_catalog().iloc[:400]
    return catalog.magnitudes(df), catalog.magnitude_errors(df)


def test_signature_has_no_redshift() -> None:
    for fn in (render.render_cutouts, render.draw_galaxy_params):
        names = [n.lower() for n in inspect.signature(fn).parameters]
        assert not any("redshift" in n or n in ("z", "zs", "label", "labels") for n in names), names
    # the only per-row inputs are photometry
    params = list(inspect.signature(render.render_cutouts).parameters)
    assert params[:3] == ["magnitude", "mag_err", "seed"]


def test_shape_dtype_and_values(rows: tuple[np.ndarray, np.ndarray]) -> None:
    mag, err = rows
    img = render.render_cutouts(mag[:50], err[:50], seed=0)
    assert img.shape == (50, 5, 32, 32) and img.dtype == np.float32 and np.isfinite(img).all()
    # the galaxy is at the centre: the brightest pixel of the r band is near (16, 16)
    clean = render.render_cutouts(mag[:50], None, seed=0, noise=False)
    peak = np.array([np.unravel_index(np.argmax(c[2]), (32, 32)) for c in clean])
    assert np.all(np.abs(peak - 16) <= 1)
    assert render.render_cutouts(mag[:0], None, seed=0).shape == (0, 5, 32, 32)
    with pytest.raises(ValueError, match=r"\[N, 5\]"):
        render.render_cutouts(mag[:, :4], None)
    with pytest.raises(ValueError, match="mag_err"):
        render.render_cutouts(mag, err[:3])


def test_deterministic_and_seed_dependent(rows: tuple[np.ndarray, np.ndarray]) -> None:
    mag, err = rows
    a = render.render_cutouts(mag[:60], err[:60], seed=11)
    b = render.render_cutouts(mag[:60], err[:60], seed=11)
    c = render.render_cutouts(mag[:60], err[:60], seed=12)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_independent_of_chunking_threads_and_splits(rows: tuple[np.ndarray, np.ndarray]) -> None:
    mag, err = rows
    full = render.render_cutouts(mag[:90], err[:90], seed=3, chunk_rows=128, threads=1)
    other = render.render_cutouts(mag[:90], err[:90], seed=3, chunk_rows=17, threads=2)
    split = np.concatenate([
        render.render_cutouts(mag[:40], err[:40], seed=3),
        render.render_cutouts(mag[40:90], err[40:90], seed=3, row_offset=40),
    ])
    assert np.array_equal(full, other) and np.array_equal(full, split)


def test_crop_from_64_matches_32_model(rows: tuple[np.ndarray, np.ndarray]) -> None:
    mag, _ = rows
    m32 = render.render_cutouts(mag[:20], None, seed=1, noise=False)
    m64 = render.render_cutouts(mag[:20], None, seed=1, size=64, noise=False)
    cropped = render.render_cutouts(mag[:20], None, seed=1, size=64, out_size=32, noise=False)
    assert cropped.shape == (20, 5, 32, 32)
    assert np.allclose(cropped, m32, rtol=1e-5, atol=1e-6)
    assert np.allclose(m64[:, :, 16:48, 16:48], m32, rtol=1e-5, atol=1e-6)
    noisy = render.render_cutouts(mag[:20], None, seed=1, size=64, out_size=32)
    assert noisy.shape == (20, 5, 32, 32)


def test_total_flux_matches_catalogue(rows: tuple[np.ndarray, np.ndarray]) -> None:
    mag, _ = rows
    flux = render.mag_to_nmgy(mag)
    big = render.render_cutouts(mag, None, seed=2, size=128, noise=False).sum(axis=(2, 3))
    ratio = big / flux
    assert np.all(np.abs(np.median(ratio, axis=0) - 1) < 0.005), np.median(ratio, axis=0)
    assert ratio.min() > 0.95 and ratio.max() < 1.005
    # in the 32 px stamp most galaxies keep nearly all their light
    small = render.render_cutouts(mag, None, seed=2, noise=False).sum(axis=(2, 3)) / flux
    assert np.all(np.median(small, axis=0) > 0.97) and small.max() <= 1.0 + 1e-4
    # noise is zero-mean: the noisy total scatters around the model total
    noisy = render.render_cutouts(mag, None, seed=2, size=128).sum(axis=(2, 3))
    assert np.all(np.abs(np.median(noisy / big, axis=0) - 1) < 0.02)


def test_noise_matches_catalogue_errors() -> None:
    df = catalog.valid_catalog().iloc[400:1400]
    ratio = render.aperture_noise_check(catalog.magnitudes(df), catalog.magnitude_errors(df), seed=4)
    # 1,000 rows: the std of a ratio that should be 1 is known to ~2.3 %; allow 4 sigma
    assert np.all(np.abs(ratio - 1) < 0.1), ratio


def test_noise_scales_with_errors(rows: tuple[np.ndarray, np.ndarray]) -> None:
    mag, err = rows
    clean = render.render_cutouts(mag, err, seed=5, noise=False)
    small = render.render_cutouts(mag, err, seed=5) - clean
    large = render.render_cutouts(mag, err * 4, seed=5) - clean
    ratio = large.std() / small.std()
    assert 3.5 < ratio < 4.5


def test_sizes_follow_r_magnitude_only(rows: tuple[np.ndarray, np.ndarray]) -> None:
    mag, _ = rows
    bright = np.tile([[17.0, 15.5, 14.5, 14.1, 13.8]], (400, 1))
    faint = np.tile([[20.0, 18.5, 17.7, 17.3, 17.0]], (400, 1))
    pb, pf = render.draw_galaxy_params(bright, seed=0), render.draw_galaxy_params(faint, seed=0)
    assert np.median(pb.r50_arcsec) > 1.5 * np.median(pf.r50_arcsec)
    assert 0.1 < np.std(np.log10(pf.r50_arcsec)) < 0.2  # the scatter of the relation
    assert np.all(pf.psf_fwhm_arcsec[:, 0] > pf.psf_fwhm_arcsec[:, 4])  # broader in u than z
    assert 1.2 < np.median(pf.psf_fwhm_arcsec[:, 2]) < 1.6


def test_mixtures_reproduce_sersic_profiles() -> None:
    def enclosed_mog(radius: float, amps: tuple[float, ...], variances: tuple[float, ...]) -> float:
        return sum(a * (1 - math.exp(-radius**2 / (2 * v))) for a, v in zip(amps, variances, strict=True))

    def enclosed_sersic(radius: float, n: int) -> float:
        b = {1: 1.6783469900166612, 4: 7.669249443603071}[n]
        r = np.linspace(0, radius, 100001)
        total = 2 * math.pi * n * math.exp(b) / b ** (2 * n) * math.gamma(2 * n)
        return float(np.trapezoid(2 * math.pi * r * np.exp(-b * (r ** (1 / n) - 1)), r) / total)

    assert sum(render.EXP_AMP) == pytest.approx(1, abs=1e-5) and sum(render.DEV_AMP) == pytest.approx(1, abs=1e-5)
    assert enclosed_mog(1.0, render.EXP_AMP, render.EXP_VAR) == pytest.approx(0.5, abs=1e-4)
    assert enclosed_mog(1.0, render.DEV_AMP, render.DEV_VAR) == pytest.approx(0.5, abs=1e-4)
    for radius in (0.5, 2.0):
        assert enclosed_mog(radius, render.EXP_AMP, render.EXP_VAR) == pytest.approx(enclosed_sersic(radius, 1), abs=0.02)
        assert enclosed_mog(radius, render.DEV_AMP, render.DEV_VAR) == pytest.approx(enclosed_sersic(radius, 4), abs=0.05)


def test_magnitude_helpers() -> None:
    assert render.mag_to_nmgy(np.array([22.5]))[0] == pytest.approx(1.0)
    assert render.nmgy_to_mag(render.mag_to_nmgy(np.array([17.3])))[0] == pytest.approx(17.3)
    assert np.isnan(render.nmgy_to_mag(np.array([-1.0]))[0])

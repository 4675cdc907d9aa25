"""The mini data-release pipeline's tasks (``pipelines/drp.yaml``).

- step1, per detector: `IsrTask` (bias subtraction, variance plane),
  `CalibrateTask` (background, detection, centroids, aperture fluxes,
  astrometric and photometric calibration against the reference catalog);
- step2, per visit: `ConsolidateVisitTask` (source table and visit summary);
- step3, per tract/patch: `MakeCoaddTask` (warp and inverse-variance
  coadd per band), `DetectObjectsTask` (multi-band detection and
  photometry), `TruthMatchTask` (completeness and photometric accuracy
  against the generator's truth);
- step4: `ForcedPhotTask` (photometry of every object on every calexp)
  and `RepeatabilityTask` (per-band photometric repeatability).

Flux units after calibration are nJy (AB magnitude 31.4 = 1 nJy).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
from astropy.wcs import WCS
from scipy import ndimage

from ..images import Exposure
from ..pipeline import Input, Output, PrerequisiteInput, Task, TaskConfig
from ._measure import aperture_flux, background, detect, match_sky, robust_sigma

__all__ = [
    "CalibrateTask",
    "ConsolidateVisitTask",
    "DetectObjectsTask",
    "ForcedPhotTask",
    "IsrTask",
    "MakeCoaddTask",
    "RepeatabilityTask",
    "TruthMatchTask",
]

NJY_ZP = 31.4
VD = ("instrument", "visit", "detector")
ED = ("instrument", "exposure", "detector")
PATCH = ("skymap", "tract", "patch")


def _mag(flux_njy: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(flux_njy > 0, NJY_ZP - 2.5 * np.log10(flux_njy), np.nan)


def _variance(exp: Exposure) -> np.ndarray:
    return np.asarray(exp.variance)


def _pixel_scale(wcs: WCS) -> float:
    """Arcseconds per pixel."""
    return float(math.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix))) * 3600)


# --- step 1 -----------------------------------------------------------------------------------------------------


class IsrConfig(TaskConfig):
    gain: float = 1.0
    """Electrons per count."""
    default_read_noise: float = 5.0
    """Used when the raw header has no RDNOISE."""


class IsrTask(Task):
    """Instrument signature removal: subtract the master bias, build the variance plane."""

    dimensions = ED
    config_class = IsrConfig
    raw = Input("raw", ED, "ExposureF", doc="Raw image with its header WCS.")
    bias = PrerequisiteInput(
        "bias", ("instrument", "detector"), "ExposureF", doc="Master bias valid at the exposure time."
    )
    post_isr = Output("postISRCCD", ED, "ExposureF")

    def run(self, raw: Exposure, bias: Exposure) -> dict[str, Any]:
        config: Any = self.config
        if raw.image.shape != bias.image.shape:
            raise ValueError(f"raw image {raw.image.shape} and bias {bias.image.shape} differ in shape.")
        image = (raw.image - bias.image) * config.gain
        read_noise = float(raw.metadata.get("RDNOISE", config.default_read_noise)) * config.gain
        variance = np.clip(image, 0, None) + read_noise**2
        self.measure("bias_level", float(np.median(bias.image)), "count")
        metadata = {**raw.metadata, "ISR": "bias"}
        return {"post_isr": Exposure(image, None, variance.astype(np.float32), metadata, raw.wcs)}


class CalibrateConfig(TaskConfig):
    detection_threshold: float = 5.0
    """Detection threshold in units of the smoothed image's noise."""
    background_box: int = 64
    psf_fwhm_guess: float = 0.9
    """Arcseconds; the smoothing kernel for detection."""
    aperture_fwhm: float = 2.0
    """Aperture radius in units of the measured PSF FWHM."""
    match_radius: float = 4.0
    """Arcseconds; first-pass match radius to the reference catalog (larger than the pointing error)."""
    min_snr_calibration: float = 20.0


class CalibrateTask(Task):
    """Background, detection and measurement, then astrometric and photometric calibration to the reference catalog."""

    dimensions = VD
    config_class = CalibrateConfig
    exposures = Input(
        "postISRCCD", ED, "ExposureF", multiple=True, doc="The visit's exposures (snaps are summed)."
    )
    ref_cat = PrerequisiteInput("ref_cat", ("htm7",), "ArrowTable", multiple=True)
    calexp = Output("calexp", VD, "ExposureF")
    sources = Output("src", VD, "ArrowTable")
    summary = Output("calexpSummary", VD, "StructuredDataDict")

    def run(self, exposures: list[Exposure], ref_cat: list[pa.Table], data_id: Any = None) -> dict[str, Any]:
        config: Any = self.config
        exp = exposures[0]
        image = np.sum([e.image for e in exposures], axis=0)
        variance = np.sum([_variance(e) for e in exposures], axis=0)
        exptime = float(sum(float(e.metadata.get("EXPTIME", 1.0)) for e in exposures))
        bg = background(image, config.background_box)
        image = image - bg
        wcs = exp.wcs.deepcopy()
        scale = _pixel_scale(wcs)
        guess_sigma = config.psf_fwhm_guess / 2.3548 / scale
        first = detect(image, variance, guess_sigma, config.detection_threshold, 3 * guess_sigma * 2.3548 / 2)
        if len(first) < 5:
            raise ValueError(
                f"only {len(first)} sources detected on {dict(data_id or {})}; cannot calibrate."
            )
        fwhm_pix = _psf_fwhm(image, first)
        sigma = fwhm_pix / 2.3548
        found = detect(image, variance, sigma, config.detection_threshold, config.aperture_fwhm * fwhm_pix)

        # Astrometry: a shift of the header WCS, fitted to the reference stars in two passes.
        refs = pa.concat_tables(ref_cat) if ref_cat else None
        if refs is None or refs.num_rows == 0:
            raise ValueError("the reference catalog has no stars over this detector.")
        ref_ra, ref_dec = np.asarray(refs["ra"]), np.asarray(refs["dec"])
        shift = np.zeros(2)
        radius = config.match_radius
        for _ in range(3):
            rx, ry = wcs.all_world2pix(ref_ra, ref_dec, 0)
            ra, dec = wcs.all_pix2world(found.x, found.y, 0)
            i_src, i_ref, _sep = match_sky(ra, dec, ref_ra, ref_dec, radius)
            if i_src.size < 3:
                raise ValueError(
                    f'only {i_src.size} reference stars matched within {radius}"; check the WCS.'
                )
            dx = np.median(found.x[i_src] - rx[i_ref])
            dy = np.median(found.y[i_src] - ry[i_ref])
            wcs.wcs.crpix = [wcs.wcs.crpix[0] + dx, wcs.wcs.crpix[1] + dy]
            shift += (dx, dy)
            radius = 1.0
        ra, dec = wcs.all_pix2world(found.x, found.y, 0)
        i_src, i_ref, sep = match_sky(ra, dec, ref_ra, ref_dec, 1.0)
        bright = found.flux[i_src] / found.flux_err[i_src] > config.min_snr_calibration
        scatter_mas = float(np.sqrt(np.mean(sep[bright] ** 2)) * 1000) if bright.any() else float("nan")

        # Photometry: zero point from the matched reference stars (3-sigma clipped median).
        band = str(exp.metadata.get("FILTER", "")).rsplit("-", 1)[-1]
        ref_mag = np.asarray(refs[f"mag_{band}"])[i_ref][bright]
        inst = -2.5 * np.log10(found.flux[i_src][bright] / exptime)
        zps = ref_mag - inst
        zp, zp_err = _clipped_mean(zps)
        to_njy = 10 ** (0.4 * (NJY_ZP - zp)) / exptime
        flux = found.flux * to_njy
        flux_err = found.flux_err * to_njy
        n = len(found)
        visit = int(data_id["visit"]) if data_id is not None else 0
        detector = int(data_id["detector"]) if data_id is not None else 0
        table = pa.table(
            {
                "sourceId": (visit * 1000 + detector) * 100000 + np.arange(n, dtype=np.int64),
                "visit": np.full(n, visit, dtype=np.int64),
                "detector": np.full(n, detector, dtype=np.int32),
                "band": [band] * n,
                "x": found.x,
                "y": found.y,
                "ra": ra,
                "dec": dec,
                "apFlux": flux,
                "apFluxErr": flux_err,
                "mag": _mag(flux),
                "magErr": 1.0857 * flux_err / np.abs(flux),
                "snr": found.flux / found.flux_err,
            }
        )
        self.measure("astrometric_scatter", scatter_mas, "mas", n_stars=int(bright.sum()))
        self.measure("zeropoint", zp, "mag", error=zp_err, exptime=exptime)
        self.measure("psf_fwhm", fwhm_pix * scale, "arcsec")
        self.measure("n_sources", n, "")
        metadata = {
            **exp.metadata,
            "MAGZERO": zp,
            "MAGZERR": zp_err,
            "EXPTIME": exptime,
            "BGMEAN": float(np.mean(bg)),
            "FWHM": fwhm_pix * scale,
        }
        summary = {
            "visit": visit,
            "detector": detector,
            "band": band,
            "zeropoint": zp,
            "zeropoint_err": zp_err,
            "astrometric_scatter_mas": scatter_mas,
            "wcs_shift_pixels": [float(shift[0]), float(shift[1])],
            "psf_fwhm_arcsec": fwhm_pix * scale,
            "background": float(np.mean(bg)),
            "n_sources": n,
            "n_ref_matched": int(i_src.size),
        }
        calexp = Exposure(image.astype(np.float32), exp.mask, variance.astype(np.float32), metadata, wcs)
        return {"calexp": calexp, "sources": table, "summary": summary}


def _psf_fwhm(image: np.ndarray, found: Any) -> float:
    """The PSF FWHM (pixels) from second moments of the brightest isolated compact sources."""
    order = np.argsort(-found.significance)[:30]
    widths = []
    for k in order:
        x, y = found.x[k], found.y[k]
        ix, iy = round(x), round(y)
        r = 6
        if ix - r < 0 or iy - r < 0 or ix + r + 1 > image.shape[1] or iy + r + 1 > image.shape[0]:
            continue
        stamp = image[iy - r : iy + r + 1, ix - r : ix + r + 1].astype(float)
        gy, gx = np.mgrid[-r : r + 1, -r : r + 1]
        w = np.clip(stamp, 0, None)
        total = w.sum()
        if total <= 0:
            continue
        dx, dy = gx - (x - ix), gy - (y - iy)
        m2 = float((w * (dx**2 + dy**2)).sum() / total) / 2
        widths.append(2.3548 * math.sqrt(max(m2, 0.25)))
    if not widths:
        return 2.5
    # Stars are the narrowest sources; take the lower third's median.
    widths.sort()
    return float(np.median(widths[: max(3, len(widths) // 3)]))


def _clipped_mean(values: np.ndarray) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("no reference stars bright enough for the photometric calibration.")
    for _ in range(3):
        med, sig = np.median(v), max(robust_sigma(v), 1e-4)
        v = v[np.abs(v - med) < 3 * sig]
    return float(np.mean(v)), float(np.std(v) / math.sqrt(max(v.size - 1, 1)))


# --- step 2 --------------------------------------------------------------------------------------------------------


class ConsolidateVisitTask(Task):
    """All detectors' sources of a visit in one table, and a per-detector visit summary."""

    dimensions = ("instrument", "visit")
    sources = Input("src", VD, "ArrowTable", multiple=True)
    summaries = Input("calexpSummary", VD, "StructuredDataDict", multiple=True)
    source_table = Output("sourceTable_visit", ("instrument", "visit"), "ArrowTable")
    visit_summary = Output("visitSummary", ("instrument", "visit"), "ArrowTable")

    def run(self, sources: list[pa.Table], summaries: list[dict[str, Any]]) -> dict[str, Any]:
        table = pa.concat_tables(sources)
        rows = sorted(summaries, key=lambda s: s["detector"])
        summary = pa.table(
            {k: [r[k] for r in rows] for k in rows[0] if k != "wcs_shift_pixels"}
            | {
                "wcs_shift_x": [r["wcs_shift_pixels"][0] for r in rows],
                "wcs_shift_y": [r["wcs_shift_pixels"][1] for r in rows],
            }
        )
        zps = np.array([r["zeropoint"] for r in rows])
        self.measure("zeropoint_spread", float(np.ptp(zps)) * 1000, "mmag")
        self.measure("n_sources", table.num_rows, "")
        return {"source_table": table, "visit_summary": summary}


# --- step 3 ---------------------------------------------------------------------------------------------------------


def _patch_wcs(sky_map: dict[str, Any], patch: int) -> tuple[WCS, int, int]:
    header = {k: _number(v) for k, v in sky_map["wcs"].items()}
    wcs = WCS(header)
    pw, ph = int(sky_map["patch_width"]), int(sky_map["patch_height"])
    x0, y0 = (patch % sky_map["patches_x"]) * pw, (patch // sky_map["patches_x"]) * ph
    wcs.wcs.crpix = [wcs.wcs.crpix[0] - x0, wcs.wcs.crpix[1] - y0]
    return wcs, pw, ph


def _number(text: str) -> Any:
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        return text


class MakeCoaddConfig(TaskConfig):
    interpolation_order: int = 1


class MakeCoaddTask(Task):
    """Warp every calexp overlapping a patch onto its pixel grid and average them, inverse-variance weighted (nJy)."""

    dimensions = ("skymap", "tract", "patch", "band")
    config_class = MakeCoaddConfig
    calexps = Input("calexp", VD, "ExposureF", multiple=True)
    sky_map = Input("skyMap", ("skymap",), "StructuredDataDict")
    coadd = Output("deepCoadd", ("skymap", "tract", "patch", "band"), "ExposureF")

    def run(self, calexps: list[Exposure], sky_map: dict[str, Any], data_id: Any = None) -> dict[str, Any]:
        config: Any = self.config
        patch = int(data_id["patch"]) if data_id is not None else 0
        wcs, pw, ph = _patch_wcs(sky_map, patch)
        gy, gx = np.mgrid[0:ph, 0:pw]
        ra, dec = wcs.all_pix2world(gx.ravel(), gy.ravel(), 0)
        num = np.zeros(ph * pw)
        den = np.zeros(ph * pw)
        n_inputs = np.zeros(ph * pw, dtype=np.int32)
        for exp in calexps:
            scale = 10 ** (0.4 * (NJY_ZP - float(exp.metadata["MAGZERO"]))) / float(exp.metadata["EXPTIME"])
            x, y = exp.wcs.all_world2pix(ra, dec, 0)
            ny, nx = exp.image.shape
            inside = (x >= 0) & (x <= nx - 1) & (y >= 0) & (y <= ny - 1)
            if not inside.any():
                continue
            coords = [y[inside], x[inside]]
            img = ndimage.map_coordinates(exp.image, coords, order=config.interpolation_order) * scale
            var = ndimage.map_coordinates(exp.variance, coords, order=1) * scale**2
            w = np.where(var > 0, 1.0 / np.where(var > 0, var, 1.0), 0.0)
            num[inside] += w * img
            den[inside] += w
            n_inputs[inside] += 1
        with np.errstate(invalid="ignore", divide="ignore"):
            image = np.where(den > 0, num / den, np.nan).reshape(ph, pw)
            variance = np.where(den > 0, 1.0 / den, np.inf).reshape(ph, pw)
        mask = (den == 0).reshape(ph, pw).astype(np.int32)  # bit 0: NO_DATA
        self.measure("coverage_fraction", float((den > 0).mean()), "")
        self.measure("n_inputs", len(calexps), "")
        metadata = {
            "MAGZERO": NJY_ZP,
            "BUNIT": "nJy",
            "NINPUTS": len(calexps),
            "MAXDEPTH": int(n_inputs.max()),
        }
        return {"coadd": Exposure(image.astype(np.float32), mask, variance.astype(np.float32), metadata, wcs)}


class DetectObjectsConfig(TaskConfig):
    detection_threshold: float = 5.0
    aperture_radius: float = 1.6
    """Arcseconds."""
    psf_fwhm: float = 1.0
    """Arcseconds; the smoothing kernel for detection on the coadd."""


class DetectObjectsTask(Task):
    """Detect on the sum of the band coadds (in units of their noise) and measure aperture fluxes in every band."""

    dimensions = PATCH
    config_class = DetectObjectsConfig
    coadds = Input("deepCoadd", ("skymap", "tract", "patch", "band"), "ExposureF", multiple=True)
    objects = Output("objectTable", PATCH, "ArrowTable")

    def run(self, coadds: list[Exposure], input_data_ids: Any = None, data_id: Any = None) -> dict[str, Any]:
        config: Any = self.config
        bands = (
            [str(d["band"]) for d in input_data_ids["coadds"]]
            if input_data_ids
            else [str(i) for i in range(len(coadds))]
        )
        wcs = coadds[0].wcs
        scale = _pixel_scale(wcs)
        detection = np.zeros(coadds[0].image.shape)
        for c in coadds:
            detection += np.nan_to_num(c.image / np.sqrt(_variance(c)), nan=0.0, posinf=0.0, neginf=0.0)
        unit = np.ones_like(detection)
        sigma = config.psf_fwhm / 2.3548 / scale
        radius = config.aperture_radius / scale
        found = detect(detection, unit, sigma, config.detection_threshold, radius)
        ra, dec = wcs.all_pix2world(found.x, found.y, 0)
        patch = int(data_id["patch"]) if data_id is not None else 0
        n = len(found)
        columns: dict[str, Any] = {
            "objectId": patch * 1_000_000 + np.arange(n, dtype=np.int64),
            "patch": np.full(n, patch, dtype=np.int32),
            "x": found.x,
            "y": found.y,
            "coord_ra": ra,
            "coord_dec": dec,
            "detect_significance": found.significance,
        }
        for band, c in zip(bands, coadds):
            image = np.nan_to_num(c.image, nan=0.0)
            var = np.where(np.isfinite(_variance(c)), _variance(c), 0.0)
            flux, err = aperture_flux(image, var, found.x, found.y, radius)
            columns[f"{band}_apFlux"] = flux
            columns[f"{band}_apFluxErr"] = err
            columns[f"{band}_mag"] = _mag(flux)
        self.measure("n_objects", n, "")
        return {"objects": pa.table(columns)}


class TruthMatchConfig(TaskConfig):
    match_radius: float = 1.0
    """Arcseconds."""
    completeness_mag: float = 23.0
    """Completeness is measured for truth objects brighter than this (in the first band)."""


class TruthMatchTask(Task):
    """Match detected objects to the generator's truth: completeness, photometric and astrometric accuracy."""

    dimensions = PATCH
    config_class = TruthMatchConfig
    objects = Input("objectTable", PATCH, "ArrowTable")
    truth = Input("truth_catalog", ("skymap", "tract"), "ArrowTable")
    coadds = Input("deepCoadd", ("skymap", "tract", "patch", "band"), "ExposureF", multiple=True)
    matched = Output("objectTruthMatch", PATCH, "ArrowTable")

    def run(
        self, objects: pa.Table, truth: pa.Table, coadds: list[Exposure], input_data_ids: Any = None
    ) -> dict[str, Any]:
        config: Any = self.config
        bands = [str(d["band"]) for d in input_data_ids["coadds"]] if input_data_ids else []
        # Truth inside this patch's covered area.
        wcs = coadds[0].wcs
        ny, nx = coadds[0].image.shape
        tx, ty = wcs.all_world2pix(np.asarray(truth["ra"]), np.asarray(truth["dec"]), 0)
        covered = np.asarray(coadds[0].mask) == 0
        inside = (tx >= 8) & (tx < nx - 8) & (ty >= 8) & (ty < ny - 8)
        ix, iy = np.clip(tx.astype(int), 0, nx - 1), np.clip(ty.astype(int), 0, ny - 1)
        inside &= covered[iy, ix]
        t = truth.filter(pa.array(inside))
        i_t, i_o, sep = match_sky(
            np.asarray(t["ra"]),
            np.asarray(t["dec"]),
            np.asarray(objects["coord_ra"]),
            np.asarray(objects["coord_dec"]),
            config.match_radius,
        )
        band0 = bands[0] if bands else "r"
        tmag = np.asarray(t[f"mag_{band0}"])
        bright = tmag < config.completeness_mag
        found = np.zeros(t.num_rows, dtype=bool)
        found[i_t] = True
        completeness = float(found[bright].mean()) if bright.any() else float("nan")
        self.measure(
            "completeness",
            completeness,
            "",
            mag_limit=config.completeness_mag,
            band=band0,
            n_truth=int(bright.sum()),
        )
        stars = np.asarray(t["is_star"])[i_t]
        for band in bands:
            dm = np.asarray(objects[f"{band}_mag"])[i_o] - np.asarray(t[f"mag_{band}"])[i_t]
            sel = stars & (np.asarray(t[f"mag_{band}"])[i_t] < 21.5) & np.isfinite(dm)
            if sel.any():
                self.measure(
                    f"photometric_offset_{band}", float(np.median(dm[sel])) * 1000, "mmag", n=int(sel.sum())
                )
        if stars.any():
            self.measure("astrometric_offset_truth", float(np.median(sep[stars])) * 1000, "mas")
        table = pa.table(
            {
                "truthId": np.asarray(t["id"])[i_t],
                "objectId": np.asarray(objects["objectId"])[i_o],
                "separation": sep,
                "is_star": stars,
            }
        )
        return {"matched": table}


# --- step 4 ------------------------------------------------------------------------------------------------------------


class ForcedPhotConfig(TaskConfig):
    aperture_radius: float = 1.6
    """Arcseconds."""


class ForcedPhotTask(Task):
    """Aperture photometry of every object at its coadd position on each calexp (nJy)."""

    dimensions = VD
    config_class = ForcedPhotConfig
    calexp = Input("calexp", VD, "ExposureF")
    objects = Input("objectTable", PATCH, "ArrowTable", multiple=True)
    forced = Output("forcedSource", VD, "ArrowTable")

    def run(self, calexp: Exposure, objects: list[pa.Table], data_id: Any = None) -> dict[str, Any]:
        config: Any = self.config
        table = pa.concat_tables(objects)
        x, y = calexp.wcs.all_world2pix(np.asarray(table["coord_ra"]), np.asarray(table["coord_dec"]), 0)
        radius = config.aperture_radius / _pixel_scale(calexp.wcs)
        flux, err = aperture_flux(calexp.image, _variance(calexp), x, y, radius)
        ok = np.isfinite(flux)
        scale = 10 ** (0.4 * (NJY_ZP - float(calexp.metadata["MAGZERO"]))) / float(calexp.metadata["EXPTIME"])
        band = str(calexp.metadata.get("FILTER", "")).rsplit("-", 1)[-1]
        n = int(ok.sum())
        out = pa.table(
            {
                "objectId": np.asarray(table["objectId"])[ok],
                "visit": np.full(n, int(data_id["visit"]) if data_id is not None else 0, dtype=np.int64),
                "detector": np.full(
                    n, int(data_id["detector"]) if data_id is not None else 0, dtype=np.int32
                ),
                "band": [band] * n,
                "psfFlux": flux[ok] * scale,
                "psfFluxErr": err[ok] * scale,
            }
        )
        self.measure("n_forced", n, "")
        return {"forced": out}


class RepeatabilityConfig(TaskConfig):
    min_snr: float = 50.0
    min_visits: int = 2


class RepeatabilityTask(Task):
    """Per-band photometric repeatability (RMS over visits of bright objects' magnitudes), as Rubin's PA1."""

    dimensions = ("skymap", "tract")
    config_class = RepeatabilityConfig
    forced = Input("forcedSource", VD, "ArrowTable", multiple=True)
    result = Output("photometricRepeatability", ("skymap", "tract"), "StructuredDataDict")

    def run(self, forced: list[pa.Table]) -> dict[str, Any]:
        config: Any = self.config
        table = pa.concat_tables(forced)
        out: dict[str, Any] = {}
        obj = np.asarray(table["objectId"])
        band = np.asarray(table["band"])
        flux = np.asarray(table["psfFlux"])
        err = np.asarray(table["psfFluxErr"])
        for b in sorted(set(band.tolist())):
            sel = (band == b) & (flux / err > config.min_snr)
            rms = []
            for o in np.unique(obj[sel]):
                m = _mag(flux[sel][obj[sel] == o])
                if m.size >= config.min_visits:
                    rms.append(np.std(m, ddof=1))
            if rms:
                value = float(np.median(rms)) * 1000
                out[b] = {"repeatability_mmag": value, "n_objects": len(rms)}
                self.measure(f"photometric_repeatability_{b}", value, "mmag", n_objects=len(rms))
        return {"result": out}

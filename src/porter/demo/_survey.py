"""A small but honest synthetic survey: an instrument, a truth sky, raw images, calibrations, a reference catalog.

The generator writes into a repository what a telescope and a calibration
team would have delivered:

- dimension records: the instrument ``SynthCam`` with a mosaic of detectors,
  its filters, one exposure per visit (with ``visit_definition``), each
  visit's and visit-detector's sky region and time span, and a skymap with
  one tract cut into patches;
- a truth catalog of stars and galaxies with magnitudes per band
  (``truth_catalog``, kept for checking results; no task of step 1 reads it);
- raw FITS images (``raw``): bias level and a fixed column pattern per
  detector, sky, sources rendered with each visit's seeing and transparency,
  Poisson and read noise, and a header WCS that is off by the telescope's
  pointing error;
- master biases (``bias``), certified in a CALIBRATION collection;
- a reference catalog (``ref_cat``, sharded by htm7): the bright part of the
  truth with catalogue-level position and magnitude noise, as Gaia would be;
- the skymap's geometry (``skyMap``).

Everything is drawn from one seeded generator, so a survey is reproducible.
The truth and the injected errors are recorded (``survey_truth`` in the
``SynthCam/truth`` run) so tests can check the pipeline's measurements.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from astropy.time import Time, TimeDelta
from astropy.wcs import WCS
from lsst.sphgeom import ConvexPolygon, HtmPixelization, LonLat, UnitVector3d

from ..dimensions import Timespan
from ..images import Exposure
from ..registry import CollectionType, DatasetType

if TYPE_CHECKING:
    from ..butler import DirectButler

__all__ = ["COLLECTIONS", "SurveySpec", "detector_wcs", "generate_survey", "sky_polygon"]

INSTRUMENT = "SynthCam"
SKYMAP = "synth_skymap"
COLLECTIONS = {
    "raw": f"{INSTRUMENT}/raw/all",
    "calib": f"{INSTRUMENT}/calib",
    "calib_run": f"{INSTRUMENT}/calib/bias",
    "refcats": "refcats",
    "skymaps": "skymaps",
    "truth": f"{INSTRUMENT}/truth",
    "defaults": f"{INSTRUMENT}/defaults",
}
ZP_REFERENCE = 28.0
"""Magnitude of a source giving 1 count per second at nominal transparency."""


@dataclass(frozen=True)
class SurveySpec:
    """The knobs of a synthetic survey (defaults: a few minutes of processing on a laptop)."""

    detectors_x: int = 2
    detectors_y: int = 2
    detector_size: int = 256
    """Pixels on a side."""
    gap: int = 12
    pixel_scale: float = 0.4
    """Arcseconds per pixel."""
    bands: tuple[str, ...] = ("g", "r", "i")
    visits_per_band: int = 3
    ra: float = 150.0
    dec: float = 2.2
    dither: float = 25.0
    """Maximum pointing offset between visits, arcseconds."""
    pointing_error: float = 1.5
    """Standard deviation of the header WCS's error, arcseconds per axis."""
    n_stars: int = 600
    n_galaxies: int = 400
    exposure_time: float = 30.0
    read_noise: float = 5.0
    bias_level: float = 1000.0
    sky_counts: float = 300.0
    """Sky per pixel per exposure (counts)."""
    transparency_scatter: float = 0.04
    """Visit-to-visit zero-point scatter (mag)."""
    seeing: tuple[float, float] = (0.7, 1.1)
    """Range of PSF FWHM, arcseconds."""
    ref_mag_limit: float = 22.5
    ref_position_noise: float = 0.010
    """Reference catalog position error, arcseconds (Gaia-like)."""
    ref_mag_noise: float = 0.01
    patches_x: int = 2
    patches_y: int = 2
    seed: int = 20261122
    start: str = "2026-03-01T03:00:00"

    @property
    def n_visits(self) -> int:
        return len(self.bands) * self.visits_per_band

    @property
    def detector_ids(self) -> list[int]:
        return list(range(self.detectors_x * self.detectors_y))

    def focal_plane_size(self) -> tuple[int, int]:
        return (
            self.detectors_x * self.detector_size + (self.detectors_x - 1) * self.gap,
            self.detectors_y * self.detector_size + (self.detectors_y - 1) * self.gap,
        )

    def detector_origin(self, detector: int) -> tuple[float, float]:
        """Focal-plane pixel position (relative to the boresight) of a detector's pixel (0, 0)."""
        i, j = detector % self.detectors_x, detector // self.detectors_x
        w, h = self.focal_plane_size()
        return (i * (self.detector_size + self.gap) - w / 2, j * (self.detector_size + self.gap) - h / 2)


@dataclass
class Visit:
    """One visit's truth: pointing, conditions and the error of its header WCS."""

    id: int
    band: str
    ra: float
    dec: float
    fwhm: float
    zeropoint: float
    """Magnitude of a source giving 1 count per second in this visit."""
    sky: float
    wcs_error: tuple[float, float]
    """(ΔRA cos δ, ΔDec) of the header WCS pointing, arcseconds."""
    begin: str = ""
    day_obs: int = 0


@dataclass
class SurveyTruth:
    """What the generator put in, for checking what the pipeline gets out."""

    spec: SurveySpec
    visits: list[Visit] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"spec": {**asdict(self.spec)}, "visits": [asdict(v) for v in self.visits]}


# --- geometry -----------------------------------------------------------------------------------------


def detector_wcs(spec: SurveySpec, detector: int, ra: float, dec: float) -> WCS:
    """A TAN WCS for one detector of a visit pointed at (ra, dec)."""
    ox, oy = spec.detector_origin(detector)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [-ox + 1.0, -oy + 1.0]
    s = spec.pixel_scale / 3600.0
    wcs.wcs.cd = [[-s, 0.0], [0.0, s]]
    return wcs


def sky_polygon(wcs: WCS, width: float, height: float) -> ConvexPolygon:
    """The sky region of a ``width`` by ``height`` pixel image with this WCS."""
    corners = np.array([[-0.5, -0.5], [width - 0.5, -0.5], [width - 0.5, height - 0.5], [-0.5, height - 0.5]])
    world = wcs.all_pix2world(corners, 0)
    return ConvexPolygon([UnitVector3d(LonLat.fromDegrees(float(r), float(d))) for r, d in world])


def tract_wcs(spec: SurveySpec) -> tuple[WCS, int, int]:
    """The tract's WCS and the size (pixels) of one patch: the survey footprint plus margins."""
    w, h = spec.focal_plane_size()
    margin = 2 * spec.dither / spec.pixel_scale + 20
    patch_w = math.ceil((w + margin) / spec.patches_x)
    patch_h = math.ceil((h + margin) / spec.patches_y)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [spec.ra, spec.dec]
    wcs.wcs.crpix = [spec.patches_x * patch_w / 2 + 0.5, spec.patches_y * patch_h / 2 + 0.5]
    s = spec.pixel_scale / 3600.0
    wcs.wcs.cd = [[-s, 0.0], [0.0, s]]
    return wcs, patch_w, patch_h


def patch_geometry(spec: SurveySpec, patch: int) -> tuple[int, int, int, int]:
    """(x0, y0, width, height) of a patch in tract pixels."""
    _, pw, ph = tract_wcs(spec)
    return (patch % spec.patches_x) * pw, (patch // spec.patches_x) * ph, pw, ph


# --- the sky ----------------------------------------------------------------------------------------------


def truth_catalog(spec: SurveySpec, rng: np.random.Generator) -> pa.Table:
    """Stars and galaxies over the footprint, with magnitudes per band and galaxy sizes."""
    wcs, pw, ph = tract_wcs(spec)
    n = spec.n_stars + spec.n_galaxies
    x = rng.uniform(0, spec.patches_x * pw, n)
    y = rng.uniform(0, spec.patches_y * ph, n)
    ra, dec = wcs.all_pix2world(x, y, 0)
    is_star = np.arange(n) < spec.n_stars
    # Number counts rising towards faint magnitudes (log N ∝ 0.15 m for stars, 0.3 m for galaxies).
    u = rng.uniform(0, 1, n)
    lo, hi = np.where(is_star, 17.5, 19.0), np.where(is_star, 24.5, 24.5)
    a = np.where(is_star, 0.15, 0.3) * math.log(10)  # stars' counts rise more slowly than galaxies'
    mag_r = np.log(np.exp(a * lo) + u * (np.exp(a * hi) - np.exp(a * lo))) / a
    color = np.where(is_star, rng.uniform(0.2, 1.4, n), rng.uniform(0.3, 1.0, n))
    mags = {"g": mag_r + color, "r": mag_r, "i": mag_r - 0.45 * color, "z": mag_r - 0.7 * color}
    size = np.where(is_star, 0.0, rng.uniform(0.3, 0.9, n))  # Gaussian sigma of the galaxy light, arcsec
    columns: dict[str, Any] = {
        "id": np.arange(1, n + 1, dtype=np.int64),
        "ra": ra,
        "dec": dec,
        "is_star": is_star,
        "size": size,
    }
    for band in spec.bands:
        columns[f"mag_{band}"] = mags.get(band, mag_r)
    return pa.table(columns)


def reference_catalog(spec: SurveySpec, truth: pa.Table, rng: np.random.Generator) -> pa.Table:
    """The bright stars of the truth, with Gaia-like position and photometric noise."""
    t = truth.filter(pa.compute.and_(truth["is_star"], pa.compute.less(truth[f"mag_{spec.bands[0]}"], 99)))
    keep = np.asarray(t["mag_r" if "r" in spec.bands else f"mag_{spec.bands[0]}"]) < spec.ref_mag_limit
    t = t.filter(pa.array(keep))
    n = t.num_rows
    dec = np.asarray(t["dec"])
    noise = spec.ref_position_noise / 3600.0
    columns: dict[str, Any] = {
        "id": np.asarray(t["id"]),
        "ra": np.asarray(t["ra"]) + rng.normal(0, noise, n) / np.cos(np.radians(dec)),
        "dec": dec + rng.normal(0, noise, n),
        "coord_err": np.full(n, spec.ref_position_noise),
    }
    for band in spec.bands:
        columns[f"mag_{band}"] = np.asarray(t[f"mag_{band}"]) + rng.normal(0, spec.ref_mag_noise, n)
        columns[f"mag_{band}_err"] = np.full(n, spec.ref_mag_noise)
    return pa.table(columns)


def plan_visits(spec: SurveySpec, rng: np.random.Generator) -> list[Visit]:
    start = Time(spec.start, scale="tai")
    visits = []
    for k in range(spec.n_visits):
        band = spec.bands[k // spec.visits_per_band]
        dra, ddec = rng.uniform(-spec.dither, spec.dither, 2) / 3600.0
        begin = start + TimeDelta(k * 120.0, format="sec")
        visits.append(
            Visit(
                id=1000 + k,
                band=band,
                ra=float(spec.ra + dra / math.cos(math.radians(spec.dec))),
                dec=float(spec.dec + ddec),
                fwhm=float(rng.uniform(*spec.seeing)),
                zeropoint=ZP_REFERENCE + float(rng.normal(0, spec.transparency_scatter)),
                sky=spec.sky_counts * float(rng.uniform(0.8, 1.25)),
                wcs_error=(
                    float(rng.normal(0, spec.pointing_error)),
                    float(rng.normal(0, spec.pointing_error)),
                ),
                begin=begin.isot,
                day_obs=int((begin - TimeDelta(12 * 3600, format="sec")).strftime("%Y%m%d")),
            )
        )
    return visits


def bias_pattern(spec: SurveySpec, detector: int) -> np.ndarray:
    """A detector's fixed bias structure: a level and column-to-column offsets."""
    rng = np.random.default_rng(spec.seed * 1000 + detector)
    columns = rng.normal(0, 4.0, spec.detector_size)
    level = spec.bias_level + rng.normal(0, 30)
    return np.broadcast_to(level + columns, (spec.detector_size, spec.detector_size)).astype(np.float32)


def render(
    spec: SurveySpec, visit: Visit, detector: int, truth: pa.Table, rng: np.random.Generator
) -> np.ndarray:
    """Noise-free source counts plus sky on one detector of one visit (true WCS)."""
    size = spec.detector_size
    image = np.full((size, size), visit.sky, dtype=np.float64)
    wcs = detector_wcs(spec, detector, visit.ra, visit.dec)
    x, y = wcs.all_world2pix(np.asarray(truth["ra"]), np.asarray(truth["dec"]), 0)
    mags = np.asarray(truth[f"mag_{visit.band}"])
    sizes = np.asarray(truth["size"])
    psf_sigma = visit.fwhm / 2.3548 / spec.pixel_scale
    inside = (x > -15) & (x < size + 15) & (y > -15) & (y < size + 15)
    for xi, yi, m, s in zip(x[inside], y[inside], mags[inside], sizes[inside]):
        sigma = math.hypot(psf_sigma, s / spec.pixel_scale)
        r = math.ceil(5 * sigma)
        x0, x1 = max(int(xi) - r, 0), min(int(xi) + r + 1, size)
        y0, y1 = max(int(yi) - r, 0), min(int(yi) + r + 1, size)
        if x0 >= x1 or y0 >= y1:
            continue
        counts = spec.exposure_time * 10 ** (-0.4 * (m - visit.zeropoint))
        # Full stamp normalised to the source's total flux, then clipped to the detector.
        fx0, fy0 = int(xi) - r, int(yi) - r
        gy, gx = np.mgrid[fy0 : fy0 + 2 * r + 1, fx0 : fx0 + 2 * r + 1]
        stamp = np.exp(-((gx - xi) ** 2 + (gy - yi) ** 2) / (2 * sigma**2))
        stamp *= counts / stamp.sum()
        image[y0:y1, x0:x1] += stamp[y0 - fy0 : y1 - fy0, x0 - fx0 : x1 - fx0]
    return image


# --- writing it all ------------------------------------------------------------------------------------


def generate_survey(
    butler: DirectButler,
    spec: SurveySpec | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> SurveyTruth:
    """Write a synthetic survey into ``butler``'s repository (dimension records, raws, calibrations …)."""
    spec = spec or SurveySpec()
    rng = np.random.default_rng(spec.seed)
    say = progress or (lambda _what, _i, _n: None)
    truth = truth_catalog(spec, rng)
    refcat = reference_catalog(spec, truth, rng)
    visits = plan_visits(spec, rng)
    record = SurveyTruth(spec, visits)
    _insert_records(butler, spec, visits)
    _register_types(butler)
    for name in ("raw", "calib_run", "refcats", "skymaps", "truth"):
        butler.registry.collections.register(COLLECTIONS[name], CollectionType.RUN)
    butler.registry.collections.register(COLLECTIONS["calib"], CollectionType.CALIBRATION)

    tract_w, patch_w, patch_h = tract_wcs(spec)
    sky_map = {
        "name": SKYMAP,
        "tract": 0,
        "wcs": {k: str(v) for k, v in tract_w.to_header().items()},
        "patches_x": spec.patches_x,
        "patches_y": spec.patches_y,
        "patch_width": patch_w,
        "patch_height": patch_h,
    }
    butler.put(sky_map, "skyMap", skymap=SKYMAP, run=COLLECTIONS["skymaps"])
    butler.put(truth, "truth_catalog", skymap=SKYMAP, tract=0, run=COLLECTIONS["truth"])
    butler.put(record.to_dict(), "survey_truth", instrument=INSTRUMENT, run=COLLECTIONS["truth"])
    _write_refcat(butler, refcat)

    bias_refs = []
    for det in spec.detector_ids:
        pattern = bias_pattern(spec, det)
        noise = rng.normal(0, spec.read_noise / math.sqrt(25), pattern.shape).astype(np.float32)
        bias = Exposure(pattern + noise, metadata={"OBSTYPE": "bias", "DETECTOR": det, "NCOMBINE": 25})
        bias_refs.append(
            butler.put(bias, "bias", instrument=INSTRUMENT, detector=det, run=COLLECTIONS["calib_run"])
        )
    butler.registry.certify(
        COLLECTIONS["calib"], bias_refs, Timespan(Time("2026-01-01T00:00:00", scale="tai"), None)
    )

    total = len(visits) * len(spec.detector_ids)
    done = 0
    for v in visits:
        for det in spec.detector_ids:
            model = render(spec, v, det, truth, rng)
            counts = rng.poisson(model).astype(np.float32)
            counts += rng.normal(0, spec.read_noise, counts.shape).astype(np.float32)
            counts += bias_pattern(spec, det)
            cos = math.cos(math.radians(v.dec))
            header_wcs = detector_wcs(
                spec, det, v.ra + v.wcs_error[0] / 3600.0 / cos, v.dec + v.wcs_error[1] / 3600.0
            )
            meta = {
                "EXPTIME": spec.exposure_time,
                "FILTER": f"{INSTRUMENT}-{v.band}",
                "DATE-OBS": v.begin,
                "DETECTOR": det,
                "EXPID": v.id,
                "GAIN": 1.0,
                "RDNOISE": spec.read_noise,
            }
            butler.put(
                Exposure(counts, metadata=meta, wcs=header_wcs),
                "raw",
                instrument=INSTRUMENT,
                exposure=v.id,
                detector=det,
                run=COLLECTIONS["raw"],
            )
            done += 1
            say("raw images", done, total)
    butler.collections.redefine_chain(
        COLLECTIONS["defaults"],
        [COLLECTIONS["raw"], COLLECTIONS["calib"], COLLECTIONS["refcats"], COLLECTIONS["skymaps"]],
    )
    return record


def _register_types(butler: DirectButler) -> None:
    u = butler.dimensions
    for name, dims, sc, calib in (
        ("raw", ["instrument", "exposure", "detector"], "ExposureF", False),
        ("bias", ["instrument", "detector"], "ExposureF", True),
        ("ref_cat", ["htm7"], "ArrowTable", False),
        ("skyMap", ["skymap"], "StructuredDataDict", False),
        ("truth_catalog", ["skymap", "tract"], "ArrowTable", False),
        ("survey_truth", ["instrument"], "StructuredDataDict", False),
    ):
        butler.registry.register_dataset_type(DatasetType(name, dims, sc, universe=u, is_calibration=calib))


def _write_refcat(butler: DirectButler, refcat: pa.Table) -> None:
    htm = HtmPixelization(7)
    ra, dec = np.asarray(refcat["ra"]), np.asarray(refcat["dec"])
    pixels = np.array(
        [htm.index(UnitVector3d(LonLat.fromDegrees(float(r), float(d)))) for r, d in zip(ra, dec)]
    )
    for p in np.unique(pixels):
        butler.put(refcat.filter(pa.array(pixels == p)), "ref_cat", htm7=int(p), run=COLLECTIONS["refcats"])


def _insert_records(butler: DirectButler, spec: SurveySpec, visits: list[Visit]) -> None:
    insert = butler.insert_dimension_records
    insert(
        "instrument",
        [
            {
                "name": INSTRUMENT,
                "visit_max": 10**6,
                "exposure_max": 10**6,
                "detector_max": 1000,
                "class_name": "porter.demo.SynthCam",
            }
        ],
    )
    insert("band", [{"name": b} for b in spec.bands])
    insert(
        "physical_filter",
        [{"instrument": INSTRUMENT, "name": f"{INSTRUMENT}-{b}", "band": b} for b in spec.bands],
    )
    insert(
        "detector",
        [
            {
                "instrument": INSTRUMENT,
                "id": d,
                "full_name": f"R00_S{d // spec.detectors_x}{d % spec.detectors_x}",
                "raft": "R00",
                "name_in_raft": f"S{d // spec.detectors_x}{d % spec.detectors_x}",
                "purpose": "SCIENCE",
            }
            for d in spec.detector_ids
        ],
    )
    insert("day_obs", [{"instrument": INSTRUMENT, "id": d} for d in sorted({v.day_obs for v in visits})])
    insert("group", [{"instrument": INSTRUMENT, "name": f"g{v.id}"} for v in visits])
    exposures, vis, defs, regions = [], [], [], []
    for v in visits:
        begin = Time(v.begin, format="isot", scale="tai")
        span = Timespan(begin, begin + TimeDelta(spec.exposure_time, format="sec"))
        common = {"instrument": INSTRUMENT, "physical_filter": f"{INSTRUMENT}-{v.band}", "day_obs": v.day_obs}
        exposures.append(
            {
                **common,
                "id": v.id,
                "obs_id": f"SC_{v.id}",
                "group": f"g{v.id}",
                "exposure_time": spec.exposure_time,
                "observation_type": "science",
                "tracking_ra": v.ra,
                "tracking_dec": v.dec,
                "sky_angle": 0.0,
                "timespan": span,
            }
        )
        w, h = spec.focal_plane_size()
        whole = detector_wcs(spec, 0, v.ra, v.dec)
        whole.wcs.crpix = [w / 2 + 1.0, h / 2 + 1.0]
        vis.append(
            {
                **common,
                "id": v.id,
                "name": f"SC_{v.id}",
                "exposure_time": spec.exposure_time,
                "region": sky_polygon(whole, w, h),
                "timespan": span,
            }
        )
        defs.append({"instrument": INSTRUMENT, "exposure": v.id, "visit": v.id})
        for det in spec.detector_ids:
            wcs = detector_wcs(spec, det, v.ra, v.dec)
            regions.append(
                {
                    "instrument": INSTRUMENT,
                    "visit": v.id,
                    "detector": det,
                    "region": sky_polygon(wcs, spec.detector_size, spec.detector_size),
                }
            )
    insert("exposure", exposures)
    insert("visit", vis)
    insert("visit_definition", defs)
    insert("visit_detector_region", regions)
    tract_w, pw, ph = tract_wcs(spec)
    digest = hashlib.sha1(repr(asdict(spec)).encode()).digest() + bytes(20)
    insert(
        "skymap",
        [
            {
                "name": SKYMAP,
                "hash": digest[:40],
                "tract_max": 1,
                "patch_nx_max": spec.patches_x,
                "patch_ny_max": spec.patches_y,
            }
        ],
    )
    insert(
        "tract",
        [
            {
                "skymap": SKYMAP,
                "id": 0,
                "region": sky_polygon(tract_w, spec.patches_x * pw, spec.patches_y * ph),
            }
        ],
    )
    patches = []
    for p in range(spec.patches_x * spec.patches_y):
        x0, y0, w_, h_ = patch_geometry(spec, p)
        sub = tract_w.deepcopy()
        sub.wcs.crpix = [tract_w.wcs.crpix[0] - x0, tract_w.wcs.crpix[1] - y0]
        patches.append(
            {
                "skymap": SKYMAP,
                "tract": 0,
                "id": p,
                "cell_x": p % spec.patches_x,
                "cell_y": p // spec.patches_x,
                "region": sky_polygon(sub, w_, h_),
            }
        )
    insert("patch", patches)

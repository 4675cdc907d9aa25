"""The synthetic survey and the mini data-release pipeline that processes it (``porter demo-survey``)."""

from pathlib import Path

from ._survey import COLLECTIONS, INSTRUMENT, SKYMAP, SurveySpec, SurveyTruth, generate_survey

VERIFY_METRICS = Path(__file__).resolve().parent / "verify_metrics"
"""The mini DRP's metrics package (lsst/verify's layout): metrics, specs and alert channels."""

__all__ = [
    "COLLECTIONS",
    "INSTRUMENT",
    "SKYMAP",
    "VERIFY_METRICS",
    "SurveySpec",
    "SurveyTruth",
    "generate_survey",
]

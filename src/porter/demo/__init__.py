"""The synthetic survey and the mini data-release pipeline that processes it (``porter demo-survey``)."""

from ._quality import VERIFY_METRICS, nightly_quality
from ._survey import COLLECTIONS, INSTRUMENT, SKYMAP, SurveySpec, SurveyTruth, generate_survey

__all__ = [
    "COLLECTIONS",
    "INSTRUMENT",
    "SKYMAP",
    "VERIFY_METRICS",
    "SurveySpec",
    "SurveyTruth",
    "generate_survey",
    "nightly_quality",
]

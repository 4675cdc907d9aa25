"""The synthetic survey and the mini data-release pipeline that processes it (``porter demo-survey``)."""

from ._survey import COLLECTIONS, INSTRUMENT, SKYMAP, SurveySpec, SurveyTruth, generate_survey

__all__ = ["COLLECTIONS", "INSTRUMENT", "SKYMAP", "SurveySpec", "SurveyTruth", "generate_survey"]

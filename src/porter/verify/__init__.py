"""Quality metrics: lsst/verify's metric, specification and Job formats, read and checked.

This first slice of issue 16 holds the *declarations* and their evaluation primitive:

- `MetricSet` / `Metric`: ``metrics/<package>.yaml`` (lsst/verify's format) plus porter's
  optional keys: ``direction``, ``dimensions``, ``baseline``, ``alert``;
- `SpecificationSet` / `Specification`: multi-document spec files with partials and ``base``
  inheritance resolved by lsst/verify's merge rules, errors naming file, line and documents;
  `Specification.check` compares a measurement with units converted;
- `read_job` / `write_job`: lsst/verify Job JSON files (measurements, blobs, meta), validated;
- `lint`: everything above over a metrics package, for ``porter verify lint``.

Storing measurements, baselines, change-points and alerts come in later slices.
"""

from ._alert_rules import Silence, Transition, replay
from ._alerts import Alert, AlertBook, Notification, UnknownAlertError
from ._changepoints import (
    ChangePoint,
    change_points,
    change_points_many,
    detect,
    detect_many,
    group_series,
    noise_sigma,
)
from ._channels import (
    AlertConfig,
    DeliveryReport,
    Notifier,
    RetryPolicy,
    SmtpServer,
    channel_problems,
    email_message,
    slack_message,
)
from ._job import (
    Blob,
    Datum,
    Job,
    JobMeasurement,
    MeasurementRecord,
    job_from_dict,
    read_job,
    validate_job,
    write_job,
)
from ._lint import LintReport, alert_problems, lint
from ._merge import merge_documents
from ._outcome import DataIdValue, Outcome, Provenance, data_id_from_key, data_id_key
from ._metrics import (
    LEVELS,
    AlertPolicy,
    Baseline,
    Level,
    Metric,
    MetricReference,
    MetricSet,
    SourceLocation,
    UnknownMetricError,
    read_metrics_file,
)
from ._problems import (
    DeclarationError,
    JobFormatError,
    MeasurementValueError,
    Problem,
    UnitMismatchError,
    VerifyError,
)
from ._specs import (
    OPERATORS,
    Specification,
    SpecificationSet,
    Threshold,
    UnknownSpecificationError,
    check_against_metrics,
    infer_level,
    normalize_partial_name,
    normalize_spec_name,
)
from ._units import conversion_factor, parse_unit

__all__ = [
    "ChangePoint",
    "change_points",
    "change_points_many",
    "detect",
    "detect_many",
    "group_series",
    "noise_sigma",
    "Alert",
    "AlertBook",
    "AlertConfig",
    "DeliveryReport",
    "Notification",
    "Notifier",
    "RetryPolicy",
    "Silence",
    "SmtpServer",
    "Transition",
    "UnknownAlertError",
    "channel_problems",
    "email_message",
    "replay",
    "slack_message",
    "data_id_key",
    "data_id_from_key",
    "Provenance",
    "Outcome",
    "DataIdValue",
    "LEVELS",
    "OPERATORS",
    "AlertPolicy",
    "Baseline",
    "Blob",
    "Datum",
    "DeclarationError",
    "Job",
    "JobFormatError",
    "JobMeasurement",
    "Level",
    "LintReport",
    "MeasurementRecord",
    "MeasurementValueError",
    "Metric",
    "MetricReference",
    "MetricSet",
    "Problem",
    "SourceLocation",
    "Specification",
    "SpecificationSet",
    "Threshold",
    "UnitMismatchError",
    "UnknownMetricError",
    "UnknownSpecificationError",
    "VerifyError",
    "alert_problems",
    "check_against_metrics",
    "conversion_factor",
    "infer_level",
    "job_from_dict",
    "lint",
    "merge_documents",
    "normalize_partial_name",
    "normalize_spec_name",
    "parse_unit",
    "read_job",
    "read_metrics_file",
    "validate_job",
    "write_job",
]

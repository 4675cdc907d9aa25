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
from ._arrival import AlertHook, load_package, open_store
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
from ._chart import trend_chart
from ._influx import LineProtocolError, encode_outcome, encode_outcomes, timestamp_ns
from ._ingest import (
    QuantumOutcome,
    import_job,
    job_measurements,
    job_provenance,
    job_run_name,
    pipeline_run_measurements,
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
from ._outbox import SINKS_ENV, SINKS_FILE, ForwardResult, Outbox, SinkConfig, SinkConfigError, load_sinks
from ._outcome import DataIdValue, Outcome, Provenance, data_id_from_key, data_id_key
from ._problems import (
    DeclarationError,
    JobFormatError,
    MeasurementValueError,
    Problem,
    UnitMismatchError,
    VerifyError,
)
from ._publish import (
    NotebookExecutionError,
    ReportExistsError,
    ReportParameterError,
    ReportToolsMissingError,
    check_notebook,
    parse_parameter,
    publish,
    report_dataset_type,
    report_provenance,
    require_report_tools,
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
from ._store import ArrivalHook, Batch, MetricStore, MetricSummary, NewMeasurement, RecordResult, Series
from ._units import conversion_factor, parse_unit

__all__ = [
    "LEVELS",
    "OPERATORS",
    "SINKS_ENV",
    "SINKS_FILE",
    "Alert",
    "AlertBook",
    "AlertConfig",
    "AlertHook",
    "AlertPolicy",
    "ArrivalHook",
    "Baseline",
    "Batch",
    "Blob",
    "ChangePoint",
    "DataIdValue",
    "Datum",
    "DeclarationError",
    "DeliveryReport",
    "ForwardResult",
    "Job",
    "JobFormatError",
    "JobMeasurement",
    "Level",
    "LineProtocolError",
    "LintReport",
    "MeasurementRecord",
    "MeasurementValueError",
    "Metric",
    "MetricReference",
    "MetricSet",
    "MetricStore",
    "MetricSummary",
    "NewMeasurement",
    "NotebookExecutionError",
    "Notification",
    "Notifier",
    "Outbox",
    "Outcome",
    "Problem",
    "Provenance",
    "QuantumOutcome",
    "RecordResult",
    "ReportExistsError",
    "ReportParameterError",
    "ReportToolsMissingError",
    "RetryPolicy",
    "Series",
    "Silence",
    "SinkConfig",
    "SinkConfigError",
    "SmtpServer",
    "SourceLocation",
    "Specification",
    "SpecificationSet",
    "Threshold",
    "Transition",
    "UnitMismatchError",
    "UnknownAlertError",
    "UnknownMetricError",
    "UnknownSpecificationError",
    "VerifyError",
    "alert_problems",
    "change_points",
    "change_points_many",
    "channel_problems",
    "check_against_metrics",
    "check_notebook",
    "conversion_factor",
    "data_id_from_key",
    "data_id_key",
    "detect",
    "detect_many",
    "email_message",
    "encode_outcome",
    "encode_outcomes",
    "group_series",
    "import_job",
    "infer_level",
    "job_from_dict",
    "job_measurements",
    "job_provenance",
    "job_run_name",
    "lint",
    "load_package",
    "load_sinks",
    "merge_documents",
    "noise_sigma",
    "normalize_partial_name",
    "normalize_spec_name",
    "open_store",
    "parse_parameter",
    "parse_unit",
    "pipeline_run_measurements",
    "publish",
    "read_job",
    "read_metrics_file",
    "replay",
    "report_dataset_type",
    "report_provenance",
    "require_report_tools",
    "slack_message",
    "timestamp_ns",
    "trend_chart",
    "validate_job",
    "write_job",
]

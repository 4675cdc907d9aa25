"""Shared fixtures: repositories on SQLite and PostgreSQL, files and S3, and daf_butler peers.

Every registry test that takes the ``backend`` fixture runs twice, against
SQLite and against the real PostgreSQL server on 127.0.0.1:5432.  Each
PostgreSQL repository lives in its own schema, dropped afterwards.  Every
datastore test that takes ``datastore_root`` runs against local files and
against an S3 emulator (moto's server) on 127.0.0.1.  Under ``CI=true`` an
unreachable PostgreSQL or a missing S3 emulator is a failure, never a skip.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy

sys.path.insert(0, str(Path(__file__).parent))

from peer import EXPORTS, make_daf_repo
from porter import Butler
from web_site import browser, demo_repository, site  # noqa: F401  (the dashboard's fixtures, for every test module)

PG_ADMIN_URL = os.environ.get("PORTER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DB = "porter_test"


def _pg_url() -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{PG_DB}"


@pytest.fixture(scope="session")
def pg_server() -> str:
    """URL of a PostgreSQL database for tests (created if needed)."""
    try:
        engine = sqlalchemy.create_engine(
            PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg2://"), isolation_level="AUTOCOMMIT"
        )
        with engine.connect() as conn:
            exists = conn.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DB,)).first()
            if not exists:
                try:
                    conn.exec_driver_sql(f"CREATE DATABASE {PG_DB}")
                except sqlalchemy.exc.DBAPIError:  # another xdist worker created it first
                    if (
                        conn.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DB,)).first()
                        is None
                    ):
                        raise
        engine.dispose()
    except Exception as exc:
        _unavailable(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}")
    return _pg_url()


def drop_schema(url: str, schema: str) -> None:
    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    engine.dispose()


TEST_BUCKET = "porter-test"


def _unavailable(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true requires these tests to run)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """An S3 emulator on 127.0.0.1 for this test process; its endpoint and credentials are in the environment."""
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        _unavailable(f"The S3 emulator is not installed ({exc}); pip install -e '.[test]'")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    settings = {
        "PORTER_S3_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "porter-test",
        "AWS_SECRET_ACCESS_KEY": "porter-test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    boto3.client("s3", endpoint_url=url).create_bucket(Bucket=TEST_BUCKET)
    yield url
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(params=["file", "s3"])
def datastore_root(request: pytest.FixtureRequest) -> str | None:
    """Where a test repository keeps its files: None (the repository directory) or a fresh S3 prefix."""
    if request.param == "s3":
        request.getfixturevalue("s3_server")
        return f"s3://{TEST_BUCKET}/{uuid.uuid4().hex[:12]}"
    return None


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        request.getfixturevalue("pg_server")
    return request.param


RepoFactory = Callable[..., Butler]


@pytest.fixture
def make_repo(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Iterator[RepoFactory]:
    """A function creating empty repositories on the test's backend."""
    created: list[tuple[Butler, str | None]] = []

    def factory(name: str = "repo", **kwargs: object) -> Butler:
        if backend == "postgresql":
            schema = f"t_{uuid.uuid4().hex[:12]}"
            butler = Butler.create(tmp_path / name, registry=_pg_url(), namespace=schema)
            created.append((butler, schema))
        else:
            butler = Butler.create(tmp_path / name)
            created.append((butler, None))
        if kwargs:
            reopened = Butler(tmp_path / name, **kwargs)  # type: ignore[arg-type]
            created.append((reopened, None))
            return reopened
        return butler

    yield factory
    for butler, schema in created:
        butler.close()
        if schema:
            drop_schema(_pg_url(), schema)


@pytest.fixture
def repo(make_repo: RepoFactory) -> Butler:
    return make_repo()


@pytest.fixture(scope="session")
def rc2_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite registry holding the real HSC RC2 dimension records (imported once per session)."""
    root = tmp_path_factory.mktemp("rc2") / "template"
    butler = load(Butler.create(root), "hsc-rc2-subset.yaml")
    butler.close()
    return root / "registry.sqlite3"


def rc2_repo(root: Path, datastore: str | None, template: Path, **kwargs: object) -> Butler:
    """A new SQLite repository at ``root`` with the RC2 dimension records (a copy of ``template``)."""
    Butler.create(root, datastore=datastore).close()
    (root / "registry.sqlite3").write_bytes(template.read_bytes())
    return Butler(root, **kwargs)  # type: ignore[arg-type]


def load(butler: Butler, *files: str) -> Butler:
    for f in files:
        butler.import_(EXPORTS / f)
    return butler


def pool_run(root: Path, pipeline: Path, run: str) -> tuple[list[str], dict[str, str]]:
    """The command and environment of ``porter pipeline run -j 2 --cluster-by detector`` over the survey's
    inputs into ``run``, for tests that start it as a process of its own (to kill it); the tests' own
    modules are on PYTHONPATH, since the pipelines' tasks live there."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [
        sys.executable,
        "-m",
        "porter.cli",
        "pipeline",
        "run",
        str(root),
        str(pipeline),
        "-i",
        ",".join(SURVEY_INPUTS),
    ]
    return [*cmd, "--output-run", run, "-j", "2", "--cluster-by", "detector"], env


@contextlib.contextmanager
def hsc_repository(root: Path, backend: str, datastore: str | None = None) -> Iterator[Butler]:
    """A repository on ``backend`` with the HSC RC2 subset's records and the ``src`` (ArrowTable) and
    ``summary`` (StructuredDataDict) dataset types, for tests that kill or starve writers of it; its
    PostgreSQL schema is dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}" if backend == "postgresql" else None
    if schema:
        butler = Butler.create(root, registry=_pg_url(), namespace=schema, datastore=datastore)
    else:
        butler = Butler.create(root, datastore=datastore)
    try:
        load(butler, "hsc-rc2-subset.yaml")
        butler.register_dataset_type("src", ["instrument", "visit", "detector"], "ArrowTable")
        butler.register_dataset_type("summary", ["instrument", "visit", "detector"], "StructuredDataDict")
        yield butler
    finally:
        butler.close()
        if schema:
            drop_schema(_pg_url(), schema)


@pytest.fixture(scope="session")
def daf_repos(tmp_path_factory: pytest.TempPathFactory) -> Callable[[tuple[str, ...]], object]:
    """daf_butler peer repositories, built once per set of export files."""
    cache: dict[tuple[str, ...], object] = {}

    def get(files: tuple[str, ...]) -> object:
        if files not in cache:
            root = tmp_path_factory.mktemp("daf")
            cache[files] = make_daf_repo(root / "repo", list(files))
        return cache[files]

    return get


# --- pipelines ------------------------------------------------------------------------------------------


SMALL_SURVEY = {"detectors_x": 2, "detectors_y": 2, "visits_per_band": 2, "bands": ("g", "r")}
"""A survey small enough to run the whole mini DRP in seconds: 4 visits x 4 detectors."""

DRP_YAML = Path(__file__).resolve().parent.parent / "src" / "porter" / "demo" / "pipelines" / "drp.yaml"
SURVEY_INPUTS = ["SynthCam/defaults", "SynthCam/truth"]


@pytest.fixture
def survey(make_repo: RepoFactory) -> tuple[Butler, object]:
    """A repository (SQLite or PostgreSQL) holding a small generated survey, and its truth."""
    from porter.demo import SurveySpec, generate_survey

    butler = make_repo("survey")
    truth = generate_survey(butler, SurveySpec(**SMALL_SURVEY))  # type: ignore[arg-type]
    return butler, truth

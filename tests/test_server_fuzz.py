"""Fuzzing the server's OpenAPI with schemathesis: no request, however malformed, is answered with a 5xx.

The schema is the live one (``/openapi.json`` of a real server on loopback),
so every endpoint the server declares is fuzzed, including ones added after
this test was written.  The repository holds the real HSC RC2 records, a
dataset type, datasets in a run and a chain, so that generated requests can
reach past validation into the registry and the datastore.

Every generated request is sent four times: with an admin token (read, write,
admin: it reaches every code path), with a read-only token that may read one
run only (the access filters), without a token, and with a token the server
never issued.  Each answer must be

* not a server error (5xx): schemathesis's ``not_a_server_error`` check;
* if an error (4xx), JSON ``{"error": …, "message": …}``, which is what the
  client turns back into a porter exception;
* without valid credentials, never a success on an endpoint that needs them.

Generation is bounded and reproducible (``derandomize``, a fixed number of
examples per operation, no example database) and does not depend on the
clock: no time budget, no deadline.  Each operation gets 25 positive and 25
negative (schema-violating) examples, about 3,700 requests in all, which
take about 20 seconds.

What the fuzz found (four 500s and FastAPI's own error bodies) is fixed; one
exact request each, at the end of the module, keeps it fixed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error

from conftest import load
from porter import Butler
from serving import Served, serving, token

RUN, OTHER_RUN, CHAIN = "HSC/runs/a", "HSC/runs/b", "HSC/defaults"

PUBLIC = {("GET", "/healthz"), ("GET", "/metrics"), ("GET", "/openapi.json")}
"""Operations anyone may call without credentials."""

EXAMPLES = 25
"""Generated requests per operation and generation mode (each is sent with every set of credentials)."""

REQUEST_TIMEOUT = 60.0
"""Seconds one request may take before the fuzz calls it a hang (a safety net, not part of what is tested)."""


class Fuzzed:
    """The served repository and the credentials every generated request is sent with."""

    def __init__(self, served: Served):
        self.served = served
        accounts = served.accounts
        for user in ("admin", "guest"):
            accounts.add_user(user, by="test")
        accounts.add_group("guests", by="test")
        accounts.add_member("guests", "guest", by="test")
        accounts.grant("guests", "read", RUN, by="test")
        self.credentials: dict[str, dict[str, str]] = {
            "admin": {"Authorization": f"Bearer {token(accounts, 'admin', 'read', 'write', 'admin')}"},
            "guest": {"Authorization": f"Bearer {token(accounts, 'guest', 'read')}"},
            "no token": {},
            "bad token": {"Authorization": "Bearer porter-this-token-was-never-issued"},
        }
        self.session = requests.Session()
        self.sent = 0


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    root: Path = tmp_path_factory.mktemp("fuzzed") / "repo"
    butler = Butler.create(root)
    try:
        load(butler, "hsc-rc2-subset.yaml")
        butler.register_dataset_type("summary", ["instrument", "visit"], "StructuredDataDict")
        visits = sorted(r.id for r in butler.query_dimension_records("visit", instrument="HSC"))[:4]
        for run, vs in ((RUN, visits[:3]), (OTHER_RUN, visits[2:])):
            for v in vs:
                butler.put({"visit": v, "run": run}, "summary", instrument="HSC", visit=v, run=run)
        butler.collections.redefine_chain(CHAIN, [OTHER_RUN, RUN])
    finally:
        butler.close()
    with serving(root) as served:
        world = Fuzzed(served)
        yield world
        world.session.close()


@pytest.fixture(scope="module")
def api(fuzzed: Fuzzed) -> Any:
    """The server's own OpenAPI document, as it serves it."""
    schema = schemathesis.openapi.from_url(f"{fuzzed.served.url}/openapi.json", timeout=REQUEST_TIMEOUT)
    schema.config.update(base_url=fuzzed.served.url)
    return schema


def _error_body_problem(response: requests.Response) -> str | None:
    """Why an error response is not porter's JSON error body, or None if it is."""
    try:
        body = response.json()
    except ValueError:
        return f"the body is not JSON: {response.text[:300]!r}"
    if not isinstance(body, dict) or not {"error", "message"} <= body.keys():
        return f"the body has no 'error' and 'message': {json.dumps(body)[:300]}"
    if not isinstance(body["error"], str) or not isinstance(body["message"], str):
        return f"'error' and 'message' are not strings: {json.dumps(body)[:300]}"
    return None


def _send(case: Any, fuzzed: Fuzzed) -> None:
    """Send ``case`` with each set of credentials and check every answer."""
    public = (case.method.upper(), case.operation.path) in PUBLIC
    for who, headers in fuzzed.credentials.items():
        response = case.call(session=fuzzed.session, headers=headers, timeout=REQUEST_TIMEOUT)
        fuzzed.sent += 1
        context = f"{who}: {case.method.upper()} {case.formatted_path} -> {response.status_code}"
        case.validate_response(response, checks=[not_a_server_error])
        if response.status_code >= 400:
            problem = _error_body_problem(response)
            assert problem is None, f"{context}: {problem}\n{case.as_curl_command(headers)}"
        if who in ("no token", "bad token") and not public:
            assert response.status_code >= 400, (
                f"{context}: answered without valid credentials\n{case.as_curl_command(headers)}"
            )


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_server_errors(mode: str, api: Any, fuzzed: Fuzzed) -> None:
    generation = schemathesis.GenerationMode(mode)
    failures: dict[str, str] = {}
    operations = 0
    for result in api.get_all_operations():
        operation = result.ok()
        operations += 1

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.filter_too_much,
                HealthCheck.data_too_large,
            ],
        )
        @given(case=operation.as_strategy(generation_mode=generation))
        def fuzz(case: Any) -> None:
            _send(case, fuzzed)

        try:
            fuzz()
        except Unsatisfiable:
            assert generation is schemathesis.GenerationMode.NEGATIVE, (
                f"{operation.label}: nothing to generate"
            )
            continue  # nothing in this operation's inputs can be made invalid (no body, only free strings)
        except (Exception, BaseExceptionGroup) as exc:  # every operation is fuzzed; every failure is reported
            failures[operation.label] = f"{type(exc).__name__}: {exc}"
    assert operations >= 20, f"the live schema has only {operations} operations"
    print(f"{mode}: {operations} operations, {fuzzed.sent} requests so far")
    assert not failures, "\n\n".join(f"{label}\n{text}" for label, text in failures.items())


# --- what the fuzz found, each fixed: one request each, so they stay fixed ------------------------------------


def _admin(fuzzed: Fuzzed) -> dict[str, str]:
    return fuzzed.credentials["admin"]


def test_data_ids_of_no_dimensions_is_a_clear_error(fuzzed: Fuzzed) -> None:
    # Was a 500: the query engine's AttributeError on an empty FROM (DirectButler.query_data_ids([]) too).
    r = fuzzed.session.post(
        f"{fuzzed.served.url}/api/v1/query/data-ids", json={"dimensions": []}, headers=_admin(fuzzed)
    )
    assert r.status_code == 422 and "at least one dimension" in r.json()["message"], r.text


def test_an_export_of_nothing_is_a_clear_error(fuzzed: Fuzzed) -> None:
    # Was a 500: export() with nothing named writes no file, and the server read the missing file.
    r = fuzzed.session.post(f"{fuzzed.served.url}/api/v1/export", json={}, headers=_admin(fuzzed))
    assert r.status_code == 422 and "Nothing to export" in r.json()["message"], r.text


@pytest.mark.parametrize("where", ["upload ticket", "download URL"])
def test_a_non_ascii_signature_is_refused(fuzzed: Fuzzed, where: str) -> None:
    # Was a 500: hmac.compare_digest(str, str) raises TypeError for non-ASCII text; now bytes are compared.
    url = fuzzed.served.url
    if where == "upload ticket":
        r = fuzzed.session.put(f"{url}/uploads/abc.%C3%A9", data=b"", headers=_admin(fuzzed))
    else:
        query = {"user": "admin", "expires": "9999999999", "signature": "\u00e9"}
        r = fuzzed.session.get(f"{url}/files/{'0' * 32}", params=query)
    assert r.status_code == 403, r.text


@pytest.mark.parametrize("where", ["body not JSON", "no route"])
def test_fastapis_own_refusals_in_porters_error_format(fuzzed: Fuzzed, where: str) -> None:
    # Were {"detail": …}: FastAPI's 400 for a body that is not JSON, Starlette's 404 for a path no route matches
    # (a collection name with a newline: {name:path} does not match "\n").
    url = fuzzed.served.url
    if where == "body not JSON":
        r = fuzzed.session.post(
            f"{url}/api/v1/collections",
            data=b"\xff",
            headers={**_admin(fuzzed), "Content-Type": "application/json"},
        )
    else:
        r = fuzzed.session.post(
            f"{url}/api/v1/collections/%0A/chain",
            json={"action": "redefine", "children": []},
            headers=_admin(fuzzed),
        )
    assert r.status_code >= 400 and _error_body_problem(r) is None, r.text

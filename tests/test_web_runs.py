"""The dashboard's Runs pages: progress as RunState has it, failures grouped, live counts, provenance graphs.

Against the demo survey served by a real uvicorn (the `site` fixture): the
mini DRP's run u/demo/drp (four steps) and its nightly runs; a run with a
failing task and a run held mid-way at a gate file (tests/pipeline_tasks.py)
are made in the served repository by the test itself, with porter.pipeline.
Report notebooks are published for the DRP's run with `publish_reports`, as a
pipeline's ``reports:`` section has them published (one of them raises).
"""

from __future__ import annotations

import contextlib
import html
import itertools
import json
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest

from porter.butler import DirectButler
from porter.pipeline import (
    ExecutionOptions,
    InProcessExecutor,
    Pipeline,
    ReportDef,
    RunState,
    build_quantum_graph,
    dataset_provenance,
    execute_graph,
    publish_reports,
    report_outcomes,
    report_run,
)
from porter.verify import MetricStore
from serving import token
from web_site import Site, screenshot, signed_in

STATUSES = ("succeeded", "failed", "blocked", "running", "pending")
BROKEN = "u/demo/broken"
LIVE = "u/demo/live"


@contextlib.contextmanager
def _client(site: Site, user: str) -> Iterator[httpx.Client]:
    """An HTTP client signed in as ``user``."""
    with httpx.Client(follow_redirects=False, timeout=120) as client:
        answer = client.post(site.ui("/login"), data={"token": site.tokens[user], "next": "/ui/"})
        assert answer.status_code == 303, answer.text
        yield client


def _counts(html: str) -> dict[str, int]:
    """The counts a page shows, by their ``data-count`` key (``task:LABEL:STATUS``, ``step:…``, ``total::…``)."""
    return {k: int(v) for k, v in re.findall(r'data-count="([^"]*)"[^>]*>(\d+)<', html)}


def _section(html: str, run: str) -> str:
    """The part of /ui/runs about ``run``."""
    start = html.index(f'data-run="{run}"')
    end = html.find('data-testid="run"', start)
    return html[start : end if end != -1 else len(html)]


def _expected(report: Any) -> dict[str, int]:
    out = {f"total::{s}": report.totals().get(s, 0) for s in STATUSES}
    for label, counter in report.tasks.items():
        out |= {f"task:{label}:{s}": counter.get(s, 0) for s in STATUSES}
    return out


def _stats_pipeline(config: str) -> Pipeline:
    return Pipeline.from_yaml(
        "instrument: SynthCam\ntasks:\n  stats:\n    class: pipeline_tasks.ImageStatsTask\n"
        f"    config: {config}\n  visitStats: pipeline_tasks.VisitStatsTask\n"
    )


def _broken_run(repo: Path) -> None:
    """A run of the served repository in which every detector-2 quantum fails and its visit's gather is blocked."""
    butler = DirectButler(repo, writeable=True)
    try:
        graph = build_quantum_graph(
            butler,
            _stats_pipeline("{fail_detector: 2}"),
            collections=["SynthCam/defaults"],
            run=BROKEN,
            where="band = 'g'",
        )
        execute_graph(butler, graph, InProcessExecutor(), options=ExecutionOptions(retries=0))
    finally:
        butler.close()


def _open_butler(site: Site) -> DirectButler:
    return DirectButler(site.repo, writeable=False)


def test_runs_list_counts_are_run_states(site: Site) -> None:
    butler = _open_butler(site)
    try:
        runs = RunState(butler.registry.db).runs()
        reports = {r: report_run(butler, r) for r in runs}
    finally:
        butler.close()
    assert "u/demo/drp" in runs and len(runs) > 1
    with _client(site, "reader") as reader:
        page = reader.get(site.ui("/runs"))
    assert page.status_code == 200, page.text
    listed = re.findall(r'data-testid="run" data-run="([^"]+)"', page.text)
    assert sorted(listed) == sorted(runs)
    for run, report in reports.items():
        shown = _counts(_section(page.text, run))
        assert {k: shown[k] for k in _expected(report)} == _expected(report), run
    # The DRP's tasks are grouped under the steps they were submitted in, each step's counts its tasks' sums.
    drp = _section(page.text, "u/demo/drp")
    shown = _counts(drp)
    assert [s for s in re.findall(r'data-step="([^"]+)"', drp)] == ["step1", "step2", "step3", "step4"]
    assert shown["step:step1:succeeded"] == shown["task:isr:succeeded"] + shown["task:calibrate:succeeded"]
    assert shown["total::succeeded"] == sum(reports["u/demo/drp"].totals().values())


def test_failures_grouped_with_example_data_ids(site: Site) -> None:
    _broken_run(site.repo)
    butler = _open_butler(site)
    try:
        report = report_run(butler, BROKEN)
    finally:
        butler.close()
    assert report.totals()["failed"] > 0 and report.totals()["blocked"] > 0
    [error] = report.errors
    with _client(site, "reader") as reader:
        page = reader.get(site.ui(f"/runs/{BROKEN}"))
        listing = reader.get(site.ui("/runs"))
    assert page.status_code == 200, page.text
    assert _counts(page.text) | _expected(report) == _counts(page.text)
    groups = page.text.split('data-testid="failure-group"')[1:]
    assert len(groups) == 1
    group = groups[0]
    assert "ValueError: detector 2 is broken (test failure)" in group
    assert f">{error['count']}<" in group
    examples = re.findall(r'<li class="dataid">([^<]+)</li>', group)
    assert len(examples) == len(error["examples"]) == 3
    for text, data_id in zip(examples, error["examples"], strict=True):
        assert {f"{k}={v}" for k, v in data_id.items()} == set(text.split(", "))
    assert f"porter pipeline restart REPO {BROKEN}" in page.text
    assert 'data-live="no"' in page.text  # a finished run: no live stream
    # The list shows the same group under the run.
    section = _section(listing.text, BROKEN)
    assert "detector 2 is broken" in section and section.count('class="dataid"') == 3


def test_event_stream_follows_a_running_run_then_ends(site: Site, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    butler = DirectButler(site.repo, writeable=True)
    graph = build_quantum_graph(
        butler,
        _stats_pipeline(f"{{gate: '{gate}', gate_detector: 1}}"),
        collections=["SynthCam/defaults"],
        run=LIVE,
        where="band = 'g'",
    )
    failure: list[BaseException] = []

    def execute() -> None:
        try:
            execute_graph(butler, graph, InProcessExecutor(), options=ExecutionOptions(retries=0))
        except BaseException as exc:  # pragma: no cover - reported by the assertion below
            failure.append(exc)

    worker = threading.Thread(target=execute, name="live-run")
    worker.start()
    try:
        # The first detector-1 quantum waits at the gate: the run is executing, part done, part pending.
        while not list(tmp_path.glob("gate.*")):
            assert worker.is_alive(), failure
            threading.Event().wait(0.02)
        with _client(site, "reader") as reader:
            page = reader.get(site.ui(f"/runs/{LIVE}"))
            assert page.status_code == 200
            assert 'data-live="yes"' in page.text and f'data-events="/ui/runs/{LIVE}/events"' in page.text
            assert _counts(page.text)["total::running"] >= 1  # a cluster of quanta starts together
            events: list[tuple[str, dict[str, Any]]] = []
            with reader.stream("GET", site.ui(f"/runs/{LIVE}/events")) as stream:
                assert stream.status_code == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
                name = ""
                for line in stream.iter_lines():
                    if line.startswith("event: "):
                        name = line.removeprefix("event: ")
                    elif line.startswith("data: "):
                        events.append((name, json.loads(line.removeprefix("data: "))))
                        if len(events) == 1:
                            gate.touch()  # let the run go on once the stream has shown it mid-way
    finally:
        gate.touch()
        worker.join()
        butler.close()
    assert not failure
    names = [n for n, _ in events]
    assert names[-1] == "end" and set(names[:-1]) == {"counts"}
    first, last = events[0][1], events[-1][1]
    assert first["state"] == "running" and first["totals"]["running"] >= 1 and first["totals"]["pending"] > 0
    assert last["reason"] == "finished" and last["state"] == "succeeded"
    assert last["totals"]["succeeded"] == len(graph)
    assert len({json.dumps(d["totals"], sort_keys=True) for _, d in events}) >= 2
    reopened = _open_butler(site)
    try:
        report = report_run(reopened, LIVE)
    finally:
        reopened.close()
    assert last["totals"] == {s: report.totals().get(s, 0) for s in STATUSES}
    assert last["tasks"] == {t: {s: c.get(s, 0) for s in STATUSES} for t, c in report.tasks.items()}


def _walk(node: Any) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def visit(n: Any) -> None:
        if n.dataset_id not in seen:
            seen[n.dataset_id] = n
            for i in n.inputs:
                visit(i)

    visit(node)
    return seen


def test_provenance_graph_reaches_the_raws(site: Site) -> None:
    butler = _open_butler(site)
    try:
        ref = butler.query_datasets("forcedSource", "u/demo/drp")[0]
        nodes = _walk(dataset_provenance(butler, str(ref.id)))
    finally:
        butler.close()
    raws = {str(uuid.UUID(k)) for k, n in nodes.items() if n.dataset_type == "raw"}
    assert raws
    with _client(site, "reader") as reader:
        page = reader.get(site.ui(f"/provenance/{ref.id}"))
    assert page.status_code == 200, page.text
    svg = page.text.split('data-testid="provenance-graph"', 1)[1].split("</svg>", 1)[0]
    linked = set(re.findall(r'<a href="/ui/repository/datasets/([0-9a-f-]+)"', svg))
    assert str(ref.id) in linked and linked & raws  # the graph goes from the dataset back to raws
    assert {"forcedPhot", "detectObjects", "makeCoadd", "calibrate", "isr"} <= set(
        re.findall(r'data-kind="quantum"[^>]*>\s*<title>quantum of (\w+)', svg)
    )
    # every dataset of the provenance is listed (and linked) under the graph
    table = page.text.split('data-testid="provenance-datasets"', 1)[1]
    assert set(re.findall(r'href="/ui/repository/datasets/([0-9a-f-]+)"', table)) == {
        str(uuid.UUID(k)) for k in nodes
    }


def test_provenance_hides_what_the_viewer_may_not_read(site: Site) -> None:
    """A viewer who may read the DRP's run but not the raws sees them as hidden, without names."""
    accounts = site.app.state.porter.accounts
    accounts.add_group("drp-only", by="test")
    accounts.grant("drp-only", "read", "u/demo/*", by="test")
    accounts.add_user("drp-reader", by="test")
    accounts.add_member("drp-only", "drp-reader", by="test")
    site.tokens["drp-reader"] = token(accounts, "drp-reader", "read")
    butler = _open_butler(site)
    try:
        ref = butler.query_datasets("calexp", "u/demo/drp")[0]
        nodes = _walk(dataset_provenance(butler, str(ref.id)))
    finally:
        butler.close()
    unreadable = {k: n for k, n in nodes.items() if not n.run.startswith("u/demo/")}
    assert any(n.dataset_type == "raw" for n in unreadable.values())
    with _client(site, "drp-reader") as viewer:
        page = viewer.get(site.ui(f"/provenance/{ref.id}"))
    assert page.status_code == 200, page.text
    assert 'class="node dataset hidden"' in page.text
    for key, node in unreadable.items():
        assert str(uuid.UUID(key)) not in page.text and node.run not in page.text
    assert ">raw<" not in page.text and ">bias<" not in page.text
    assert ">isr<" in page.text  # what the viewer may read is still drawn


@pytest.mark.parametrize("user", ["outsider"])
def test_runs_a_viewer_may_not_read_are_not_found(site: Site, user: str) -> None:
    butler = _open_butler(site)
    try:
        ref = butler.query_datasets("calexp", "u/demo/drp")[0]
    finally:
        butler.close()
    with _client(site, user) as client:
        listing = client.get(site.ui("/runs"))
        assert listing.status_code == 200 and "u/demo/drp" not in listing.text
        assert 'data-testid="no-runs"' in listing.text
        hidden = client.get(site.ui("/runs/u/demo/drp"))
        missing = client.get(site.ui("/runs/u/demo/nothing"))
        assert hidden.status_code == missing.status_code == 404
        assert hidden.text.replace("u/demo/drp", "X") == missing.text.replace("u/demo/nothing", "X")
        assert client.get(site.ui("/runs/u/demo/drp/events")).status_code == 404
        secret = client.get(site.ui(f"/provenance/{ref.id}"))
        nothing = client.get(site.ui(f"/provenance/{uuid.uuid4()}"))
        assert secret.status_code == nothing.status_code == 404
        assert "calexp" not in secret.text
        assert client.get(site.ui("/provenance/not-a-uuid")).status_code == 404
    with _client(site, "reader") as reader:  # a collection that no pipeline wrote is not a run
        assert reader.get(site.ui("/runs/SynthCam/raw/all")).status_code == 404
        assert reader.get(site.ui("/runs/SynthCam/defaults")).status_code == 404  # a chain without a run


def test_an_output_chain_leads_to_its_latest_run(site: Site) -> None:
    butler = DirectButler(site.repo, writeable=True)
    try:
        butler.collections.redefine_chain(
            "u/demo/chain", ["u/demo/drp/nightly/2", "u/demo/drp", "SynthCam/defaults"]
        )
    finally:
        butler.close()
    with _client(site, "reader") as reader:
        answer = reader.get(site.ui("/runs/u/demo/chain"))
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/runs/u/demo/drp/nightly/2"
    with _client(site, "outsider") as outsider:
        assert outsider.get(site.ui("/runs/u/demo/chain")).status_code == 404


def test_browser_run_page_live_and_provenance_graph(site: Site, browser: Any, tmp_path: Path) -> None:
    _broken_run(site.repo)
    butler = _open_butler(site)
    try:
        ref = butler.query_datasets("forcedSource", "u/demo/drp")[0]
        drp = report_run(butler, "u/demo/drp")
    finally:
        butler.close()
    page = signed_in(browser, site, "reader")
    try:
        page.goto(site.ui("/runs/u/demo/drp"))
        assert page.locator('[data-testid="total-succeeded"]').inner_text() == str(drp.totals()["succeeded"])
        assert page.locator("tr.step").count() == 4
        screenshot(page, "run-page")
        page.goto(site.ui(f"/runs/{BROKEN}"))
        assert page.locator('[data-testid="failure-group"]').count() == 1
        screenshot(page, "run-page-failures")
        page.goto(site.ui("/runs"))
        screenshot(page, "runs")
        page.goto(site.ui(f"/provenance/{ref.id}"))
        graph = page.locator('[data-testid="provenance-graph"]')
        assert graph.locator('a[data-kind="dataset"]').count() > 5
        assert graph.locator("a.source").count() > 0  # raws and calibrations, on the left
        width = int(graph.get_attribute("width") or 0)
        page.set_viewport_size(
            {"width": max(1300, width + 100), "height": 900}
        )  # the whole graph in the picture
        screenshot(page, "provenance-graph")
        graph.locator("a.root").click()
        page.wait_for_url(f"**/ui/repository/datasets/{ref.id}")
    finally:
        page.close()
    # The page follows a running run with the event stream (runs.js), and says when it has finished.
    gate = tmp_path / "gate"
    runner = DirectButler(site.repo, writeable=True)
    graph_ = build_quantum_graph(
        runner,
        _stats_pipeline(f"{{gate: '{gate}', gate_detector: 1}}"),
        collections=["SynthCam/defaults"],
        run=LIVE,
        where="band = 'g'",
    )
    worker = threading.Thread(
        target=execute_graph,
        args=(runner, graph_, InProcessExecutor()),
        kwargs={"options": ExecutionOptions(retries=0)},
    )
    worker.start()
    page = signed_in(browser, site, "reader")
    try:
        while not list(tmp_path.glob("gate.*")):
            assert worker.is_alive()
            threading.Event().wait(0.02)
        page.goto(site.ui(f"/runs/{LIVE}"))
        page.wait_for_selector("#live:has-text('Live: counts updated')")
        screenshot(page, "run-page-live")
        gate.touch()
        page.wait_for_selector('#live[data-live="ended"]', timeout=120_000)
        assert page.locator('[data-testid="total-succeeded"]').inner_text() == str(len(graph_))
        assert page.locator('[data-testid="total-running"]').inner_text() == "0"
        finished = report_run(runner, LIVE)  # times follow the run too
        assert float(page.locator('[data-time="stats:cpu"]').inner_text()) == round(finished.cpu["stats"], 1)
        assert page.locator("[data-state]").first.inner_text() == "succeeded"
        screenshot(page, "run-page-live-ended")
    finally:
        gate.touch()
        worker.join()
        runner.close()
        page.close()


DRP = "u/demo/drp"
COUNTING = """\
from porter.butler import DirectButler

butler = DirectButler(repo, writeable=False)
n = len(butler.query_datasets("calexp", collections=run, explain=False))
print(f"REPORT run={run} calexps={n}")
butler.close()
"""


def _notebook(path: Path, *cells: str) -> Path:
    """A notebook whose first code cell is tagged ``parameters`` (``repo`` and ``run`` are injected there)."""
    nb = nbformat.v4.new_notebook()
    first = nbformat.v4.new_code_cell("repo = ''\nrun = ''")
    first.metadata["tags"] = ["parameters"]
    nb.cells = [first, *(nbformat.v4.new_code_cell(c) for c in cells)]
    nbformat.write(nb, path)
    return path


def _publish_drp_reports(site: Site, tmp_path: Path) -> dict[str, Any]:
    """Publish a working and a failing notebook for the DRP's run, as a pipeline's reports: section does."""
    good = _notebook(tmp_path / "calexp_count.ipynb", COUNTING)
    bad = _notebook(tmp_path / "broken.ipynb", "x = 1", "raise ValueError('no sources in this run')")
    butler = DirectButler(site.repo, writeable=True)
    try:
        publish_reports(butler, DRP, [ReportDef(str(good), good), ReportDef(str(bad), bad)])
        return {o.dataset_type: o for o in report_outcomes(butler, DRP)}
    finally:
        butler.close()


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment))).strip()


def test_run_page_shows_its_reports_linked_and_its_metrics(site: Site, tmp_path: Path) -> None:
    outcomes = _publish_drp_reports(site, tmp_path)
    assert outcomes["verifyReport_calexp_count"].status == "published"
    assert outcomes["verifyReport_broken"].status == "failed"
    butler = _open_butler(site)
    try:
        summaries = {s.metric: s for s in MetricStore(butler.registry.db).summary(DRP)}
    finally:
        butler.close()
    assert summaries, "the demo stores the DRP run's metrics"
    dataset_id = str(uuid.UUID(outcomes["verifyReport_calexp_count"].dataset_id or ""))
    with _client(site, "reader") as reader:
        page = reader.get(site.ui(f"/runs/{DRP}"))
        assert page.status_code == 200, page.text
        section = page.text.split('data-testid="reports"', 1)[1].split("</section>", 1)[0]
        rows = dict(re.findall(r'<tr data-testid="report" data-report="([^"]+)"(.*?)</tr>', section, re.S))
        assert sorted(rows) == ["verifyReport_broken", "verifyReport_calexp_count"]
        # The published report links to its dataset's page, which shows it and offers the file.
        published = rows["verifyReport_calexp_count"]
        assert 'data-status="published"' in published and "calexp_count.ipynb" in published
        [link] = re.findall(r'<a href="([^"]+)" data-testid="report-link">', published)
        assert link == f"/ui/repository/datasets/{dataset_id}"
        dataset = reader.get(f"{site.url}{link}")
        assert dataset.status_code == 200 and dataset_id in dataset.text
        assert "verifyReport_calexp_count" in dataset.text
        download = re.search(r'<a href="([^"]+)" download data-testid="download"', dataset.text)
        assert download, "the report's dataset page offers the file"
        # the download is counted against the reader's bytes of the day, then redirected to its signed URL
        report = reader.get(f"{site.url}{html.unescape(download.group(1))}", follow_redirects=True)
        assert report.status_code == 200 and f"REPORT run={DRP}" in html.unescape(report.text)
        # The failed one says why, and how to publish it again.
        failed = rows["verifyReport_broken"]
        assert 'data-status="failed"' in failed and 'data-testid="report-link"' not in failed
        assert "ValueError: no sources in this run" in html.unescape(failed)
        assert f"porter pipeline restart REPO {DRP}" in _text(section)
        # The run's metrics, summarised as the metric store has them, each linked to its page.
        metrics = page.text.split('data-testid="run-metrics"', 1)[1].split("</section>", 1)[0]
        shown = dict(
            re.findall(r'<tr data-testid="run-metric" data-metric="([^"]+)">(.*?)</tr>', metrics, re.S)
        )
        assert sorted(shown) == sorted(summaries)
        for name, s in summaries.items():
            row = shown[name]
            assert f'href="/ui/metrics/{name}"' in row
            cells = re.findall(r'<td class="num">([^<]*)</td>', row)
            assert cells == [str(s.count), f"{s.min:.4g}", f"{s.mean:.4g}", f"{s.max:.4g}"], name
            for level, failed_count in s.failed.items():
                cell = _text(re.search(rf'<td data-level="{level}">(.*?)</td>', row, re.S).group(1))  # type: ignore[union-attr]
                assert (f"fail {failed_count} of {s.count}" in cell) == bool(failed_count), (
                    name,
                    level,
                    cell,
                )
        name = sorted(summaries)[0]
        assert reader.get(site.ui(f"/metrics/{name}")).status_code == 200
        # The list shows a badge per run with reports, from one query for all of them.
        listing = reader.get(site.ui("/runs")).text
        badge = _section(listing, DRP)
        assert "Reports: 1 published, 1 failed" in _text(badge)
        assert f'href="/ui/runs/{DRP}#reports"' in badge
        assert listing.count('data-testid="reports-badge"') == 1
        # A run with no report and no metric: said for reports, no metrics section.
        _broken_run(site.repo)
        other = reader.get(site.ui(f"/runs/{BROKEN}")).text
        assert 'data-testid="no-reports"' in other and 'data-testid="run-metrics"' not in other
    with _client(site, "outsider") as outsider:
        hidden = outsider.get(site.ui(f"/runs/{DRP}"))
        missing = outsider.get(site.ui("/runs/u/demo/nothing"))
        assert hidden.status_code == missing.status_code == 404
        assert "verifyReport" not in hidden.text and "no sources" not in hidden.text
        assert outsider.get(site.ui(f"/repository/datasets/{dataset_id}")).status_code == 404
        assert 'data-testid="reports-badge"' not in outsider.get(site.ui("/runs")).text


def test_browser_run_page_reports_and_metrics(site: Site, browser: Any, tmp_path: Path) -> None:
    outcomes = _publish_drp_reports(site, tmp_path)
    dataset_id = str(uuid.UUID(outcomes["verifyReport_calexp_count"].dataset_id or ""))
    page = signed_in(browser, site, "reader")
    try:
        page.goto(site.ui(f"/runs/{DRP}"))
        reports = page.locator('[data-testid="reports"]')
        assert reports.locator("h2").inner_text() == "Reports"
        assert (
            "ValueError: no sources in this run"
            in reports.locator('[data-testid="report-error"]').inner_text()
        )
        metrics = page.locator('[data-testid="run-metrics"]')
        assert metrics.locator('tr[data-testid="run-metric"]').count() > 0
        # headings in order: the page's h1, then h2 sections, no level skipped
        levels = page.eval_on_selector_all("main h1, main h2, main h3", "hs => hs.map(h => h.tagName)")
        assert levels[0] == "H1" and all(int(b[1]) - int(a[1]) <= 1 for a, b in itertools.pairwise(levels))
        whole = screenshot(page, "run-page-reports-metrics")
        reports.screenshot(path=str(whole.with_name("run-page-reports.png")))
        metrics.screenshot(path=str(whole.with_name("run-page-metrics.png")))
        # the report's link is reachable with the keyboard and leads to its dataset's page
        link = reports.locator('[data-testid="report-link"]')
        link.focus()
        page.keyboard.press("Enter")
        page.wait_for_url(f"**/ui/repository/datasets/{dataset_id}")
        assert page.locator('[data-testid="dataset-id"]').inner_text() == dataset_id
        assert page.locator('[data-testid="download"]').count() == 1
        page.goto(site.ui("/runs"))
        badge = page.locator(f'[data-run="{DRP}"] [data-testid="reports-badge"]')
        assert badge.inner_text() == "Reports: 1 published, 1 failed"
        page.locator(f'[data-run="{DRP}"]').screenshot(path=str(whole.with_name("runs-reports-badge.png")))
        badge.click()
        page.wait_for_url(f"**/ui/runs/{DRP}#reports")
    finally:
        page.close()

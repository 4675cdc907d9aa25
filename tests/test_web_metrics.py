"""The dashboard's metrics pages over the demo survey's real metric store, served by a real server.

The demo stores the DRP run's metrics and seven nightly truth-matching runs: completeness drops at
night 4 (a configuration change; alerts fire; a change-point between nights 3 and 4) and recovers at
night 7.  Tests that need an open alert record a degraded night 8 through ``porter.verify`` itself.
The release page's ``?as_of=N`` reaches the metric pages: they are read as of that audit entry's time.
"""

from __future__ import annotations

import contextlib
import html
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from porter.butler import DirectButler
from porter.demo import VERIFY_METRICS
from porter.release import Release, load_plan
from porter.verify import AlertBook, MetricStore, NewMeasurement, Provenance, open_store
from web_site import Site, screenshot, signed_in

COMPLETENESS = "truthMatch.completeness"
NIGHTLY = "u/demo/drp/nightly"


@contextlib.contextmanager
def _client(site: Site, user: str | None) -> Iterator[httpx.Client]:
    """An HTTP client with ``user``'s session cookie (None: not signed in)."""
    with httpx.Client(follow_redirects=False, timeout=60) as client:
        if user is not None:
            answer = client.post(site.ui("/login"), data={"token": site.tokens[user], "next": "/ui/"})
            assert answer.status_code == 303, answer.text
        yield client


@contextlib.contextmanager
def _butler(site: Site) -> Iterator[DirectButler]:
    butler = DirectButler(site.repo, writeable=True)
    try:
        yield butler
    finally:
        butler.close()


def _record_night(site: Site, run: str, value: float, config_hash: str = "broken") -> None:
    """Record completeness for every patch in ``run`` (after every stored run), through the alert rules."""
    with _butler(site) as butler:
        store, _hook = open_store(butler.registry.db, VERIFY_METRICS)
        last = max(p.time for p in store.runs())
        data_ids = store.series(COMPLETENESS).data_ids
        store.record(
            [NewMeasurement(COMPLETENESS, value, "", d) for d in data_ids],
            Provenance(run=run, time=last + 60, task="truthMatch", config_hash=config_hash),
        )


def _chart(page: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', page, re.S)
    assert found, "the metric page has no chart data"
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def _rows(page: str, testid: str) -> list[str]:
    return re.findall(rf'<tr[^>]*data-testid="{testid}"[^>]*>.*?</tr>', page, re.S)


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", fragment))).strip()


def test_metric_list_shows_every_metric_against_its_levels(site: Site) -> None:
    with _butler(site) as butler:
        store = MetricStore(butler.registry.db)
        names = store.metric_names()
        latest = store.latest_runs()
        summary = {s.metric: s for s in store.summary(latest[COMPLETENESS])}[COMPLETENESS]
    with _client(site, "reader") as reader:
        page = reader.get(site.ui("/metrics"))
    assert page.status_code == 200, page.text
    rows = {re.search(r'data-metric="([^"]+)"', r).group(1): r for r in _rows(page.text, "metric")}  # type: ignore[union-attr]
    assert sorted(rows) == names
    row = rows[COMPLETENESS]
    assert f"/ui/metrics/{COMPLETENESS}" in row
    assert f"{summary.mean:.4g}" in _text(row)  # the latest run's mean, night 7 (recovered)
    assert latest[COMPLETENESS] == f"{NIGHTLY}/7" and f"{NIGHTLY}/7" in row
    minimum = re.search(r'<td data-level="minimum">(.*?)</td>', row, re.S)
    assert minimum and _text(minimum.group(1)) == ">= 0.85 pass"
    # night 7 has patches below stretch (0.97): counted, not hidden
    stretch = re.search(r'<td data-level="stretch">(.*?)</td>', row, re.S)
    assert summary.failed["stretch"] == 3
    assert stretch and _text(stretch.group(1)) == f">= 0.97 fail 3 of {summary.count}"
    # a metric without a declared level for it: stated, not invented
    psf = rows["calibrate.psf_fwhm"]
    assert "no spec" in psf
    # the demo's alerts all resolved at night 7: none open
    assert _text(re.search(r'data-testid="alert-count">(.*?)</td>', row, re.S).group(1)) == "0"  # type: ignore[union-attr]


def test_trend_page_draws_the_spec_levels_in_the_metrics_unit(site: Site) -> None:
    metric = (
        "truthMatch.astrometric_offset_truth"  # its minimum is declared in arcsec, the metric is in marcsec
    )
    with _butler(site) as butler:
        series = MetricStore(butler.registry.db).series(metric)
    with _client(site, "reader") as reader:
        page = reader.get(site.ui(f"/metrics/{metric}"))
    assert page.status_code == 200, page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    levels = dict(re.findall(r'data-level="(\w+)" data-value="([^"]+)"', page.text))
    assert {k: round(float(v), 6) for k, v in levels.items()} == {
        "minimum": 20.0,
        "design": 12.0,
        "stretch": 8.0,
    }
    assert "&lt;= 20 marcsec" in page.text
    chart = _chart(page.text)
    assert chart["unit"] == "marcsec"
    assert [(lv["level"], round(lv["value"], 6)) for lv in chart["levels"]] == [
        ("minimum", 20.0),
        ("design", 12.0),
        ("stretch", 8.0),
    ]
    assert chart["runs"] == series.runs
    # one line per patch (four data IDs), the same numbers as the table the page has without JavaScript
    assert len(chart["lines"]) == len(series.data_ids) == 4
    rows = _rows(page.text, "value-row")
    assert len(rows) == len(series.runs)
    first = [v for line in chart["lines"] for v in line["values"][:1]]
    assert all(f"{v:.4g}" in rows[0] for v in first)

    # one data ID: its own series, its pass/fail per level as checked on arrival
    patch = series.data_ids[2]
    wanted = ", ".join(f"{k}={v}" for k, v in sorted(patch.items()))
    with _client(site, "reader") as reader:
        answer = reader.get(site.ui(f"/metrics/{metric}"), params={"data_id": wanted})
        bad = reader.get(site.ui(f"/metrics/{metric}"), params={"data_id": "patch=99"})
    assert answer.status_code == 200
    picked = _chart(answer.text)
    assert [line["label"] for line in picked["lines"]] == [wanted]
    assert f'<option value="{wanted}" selected>' in answer.text
    assert bad.status_code == 400 and "patch=99" in bad.text


def test_change_point_names_the_runs_and_the_config_change(site: Site) -> None:
    with _butler(site) as butler:
        store = MetricStore(butler.registry.db)
        before, after = store.provenance(f"{NIGHTLY}/3"), store.provenance(f"{NIGHTLY}/4")
    assert before and after and before.config_hash != after.config_hash
    with _client(site, "reader") as reader:
        page = reader.get(site.ui(f"/metrics/{COMPLETENESS}"))
    assert page.status_code == 200
    changes = re.findall(r'<article class="change" data-testid="change"(.*?)</article>', page.text, re.S)
    at_night_4 = [c for c in changes if f'data-before="{NIGHTLY}/3" data-after="{NIGHTLY}/4"' in c]
    assert len(at_night_4) == 1, changes
    changed = [_text(r) for r in re.findall(r'<tr data-testid="changed">(.*?)</tr>', at_night_4[0], re.S)]
    assert changed == [f"config_hash {before.config_hash} {after.config_hash}"]
    assert "patch=2" in at_night_4[0]  # the patch that fell below minimum is among the shifts
    chart = _chart(page.text)
    assert [c["index"] for c in chart["changes"]] == [chart["runs"].index(f"{NIGHTLY}/4")]
    # the alert that fired at night 4 and resolved at night 7 is listed with the earlier alerts
    assert "resolved in <code>u/demo/drp/nightly/7</code>" in page.text


def test_acknowledging_an_alert_through_the_form(site: Site) -> None:
    _record_night(site, f"{NIGHTLY}/8", 0.5)
    with _butler(site) as butler:
        open_alerts = AlertBook(butler.registry.db).alerts(metric=COMPLETENESS)
    assert open_alerts, "a completeness of 0.5 fires the minimum-level alert"
    alert = open_alerts[0]
    target = site.ui(f"/metrics/alerts/{alert.alert_id}/acknowledge")

    def acknowledged() -> str | None:
        with _butler(site) as butler:
            return AlertBook(butler.registry.db).get(alert.alert_id).acknowledged_by

    with _client(site, "reader") as reader:
        listing = reader.get(site.ui("/metrics"))
        row = next(r for r in _rows(listing.text, "metric") if f'data-metric="{COMPLETENESS}"' in r)
        assert f"{len(open_alerts)} open" in _text(row)
        page = reader.get(site.ui("/metrics/alerts"))
        assert f'id="alert-{alert.alert_id}"' in page.text
        assert 'data-testid="ack-form"' not in page.text  # a read-only token is offered no action
        reader_csrf = re.search(r'name="csrf" value="([^"]*)"', page.text)
        refused = reader.post(
            target, data={"reason": "known", "csrf": reader_csrf.group(1) if reader_csrf else ""}
        )
        assert refused.status_code == 403
        assert acknowledged() is None

    with _client(site, "release-manager") as manager:
        page = manager.get(site.ui(f"/metrics/{COMPLETENESS}"))
        assert page.status_code == 200
        form = re.search(
            rf'<form method="post" action="/ui/metrics/alerts/{alert.alert_id}/acknowledge".*?</form>',
            page.text,
            re.S,
        )
        assert form, "a write token is offered the acknowledge form"
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.group(0)).group(1)  # type: ignore[union-attr]
        assert 'name="reason" required' in form.group(0)
        no_csrf = manager.post(target, data={"reason": "known regression"})
        wrong_csrf = manager.post(target, data={"reason": "known regression", "csrf": "0" * 40})
        no_reason = manager.post(target, data={"reason": "  ", "csrf": csrf})
        for answer in (no_csrf, wrong_csrf, no_reason):
            assert answer.status_code == 403
            assert 'data-testid="problem"' in answer.text
        assert acknowledged() is None
        done = manager.post(
            target, data={"reason": "match radius fix is on its way", "csrf": csrf, "back": "metric"}
        )
        assert done.status_code == 303
        assert done.headers["location"] == f"/ui/metrics/{COMPLETENESS}#alert-{alert.alert_id}"
        assert acknowledged() == "release-manager"
        after = manager.get(site.ui(f"/metrics/{COMPLETENESS}"))
        ack = re.search(rf'id="alert-{alert.alert_id}".*?</tr>', after.text, re.S)
        assert ack and "by release-manager: match radius fix is on its way" in _text(ack.group(0))
        assert "open" in _text(ack.group(0)) or "firing" in _text(ack.group(0))
    with _butler(site) as butler:
        assert (
            AlertBook(butler.registry.db).get(alert.alert_id).ack_reason == "match radius fix is on its way"
        )


def test_measurements_of_unreadable_runs_are_invisible(site: Site) -> None:
    # a later completeness run in an embargoed collection only the embargo team may read
    _record_night(site, "embargo/DR2/run", 0.123, config_hash="embargoed")
    with _client(site, "reader") as reader:
        listing = reader.get(site.ui("/metrics")).text
        page = reader.get(site.ui(f"/metrics/{COMPLETENESS}")).text
        alerts = reader.get(site.ui("/metrics/alerts")).text
    assert "embargo/DR2/run" not in listing and "0.123" not in listing
    assert "embargo/DR2/run" not in page and "0.123" not in page and "embargoed" not in page
    assert "embargo/DR2/run" not in alerts
    with _client(site, "embargo-lead") as lead:
        seen = lead.get(site.ui(f"/metrics/{COMPLETENESS}")).text
    assert "embargo/DR2/run" in seen and "0.123" in seen

    with _client(site, "outsider") as outsider:
        listing_page = outsider.get(site.ui("/metrics"))
        assert listing_page.status_code == 200
        assert 'data-testid="no-metrics"' in listing_page.text and COMPLETENESS not in listing_page.text
        direct = outsider.get(site.ui(f"/metrics/{COMPLETENESS}"))
        missing = outsider.get(site.ui("/metrics/truthMatch.no_such_metric"))
        assert direct.status_code == missing.status_code == 404
        assert direct.text.replace(COMPLETENESS, "X") == missing.text.replace(
            "truthMatch.no_such_metric", "X"
        )
        assert "embargo/DR2/run" not in outsider.get(site.ui("/metrics/alerts")).text
    with _butler(site) as butler:
        alert = AlertBook(butler.registry.db).alerts(metric=COMPLETENESS)[0]
    with _client(site, "outsider") as outsider:
        assert (
            outsider.post(
                site.ui(f"/metrics/alerts/{alert.alert_id}/acknowledge"), data={"reason": "x"}
            ).status_code
            == 404
        )


def test_release_over_release_and_the_release_pages_section(site: Site) -> None:
    with _butler(site) as butler:
        store = MetricStore(butler.registry.db)
        store.mark_release(f"{NIGHTLY}/3", "DEMO0")
        store.mark_release(f"{NIGHTLY}/5", "DEMO1")
        summaries = {
            run: {s.metric: s for s in store.summary(run)}[COMPLETENESS]
            for run in (f"{NIGHTLY}/3", f"{NIGHTLY}/5")
        }
    with _client(site, "reader") as reader:
        page = reader.get(site.ui(f"/metrics/{COMPLETENESS}")).text
        release = reader.get(site.ui("/releases/NIGHTLY"))
    rows = [_text(r) for r in _rows(page, "release-row")]
    old, new = summaries[f"{NIGHTLY}/3"].mean, summaries[f"{NIGHTLY}/5"].mean
    assert len(rows) == 2 and rows[0].startswith("DEMO0") and rows[1].startswith("DEMO1")
    assert f"{old:.4g}" in rows[0] and f"{new - old:+.4g}" in rows[1]
    assert [r["release"] for r in _chart(page)["releases"]] == ["DEMO0", "DEMO1"]

    assert release.status_code == 200
    section = re.search(r'<section id="metrics".*?</section>', release.text, re.S)
    assert section, "the NIGHTLY release gates on metrics: its page has the metrics section"
    gated = dict(
        re.findall(r'data-testid="release-metric" data-metric="([^"]+)">(.*?)</tr>', section.group(0), re.S)
    )
    assert sorted(gated) == [
        "truthMatch.astrometric_offset_truth",
        COMPLETENESS,
    ]  # the metrics tagged nightly
    row = _text(gated[COMPLETENESS])
    assert ">= 0.85 pass" in row and f"{NIGHTLY}/7" in row
    assert "DEMO0" in row and "DEMO1" in row


def test_metric_page_in_a_browser_draws_the_chart(site: Site, browser: Any) -> None:
    _record_night(site, f"{NIGHTLY}/8", 0.5)  # an open alert to acknowledge from the page
    page = signed_in(browser, site, "release-manager")
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(site.ui(f"/metrics/{COMPLETENESS}"))
    page.wait_for_selector("#chart canvas")
    box = page.locator("#chart canvas").first.bounding_box()
    assert box and box["width"] > 300 and box["height"] > 200
    legend = page.locator("#chart .u-legend").inner_text()
    assert "patch=2" in legend
    assert problems == []  # no CSP refusals, no script errors
    path = screenshot(page, "metric-trend")
    assert Path(path).stat().st_size > 0

    # acknowledge the open alert with the keyboard-reachable form on the page
    form = page.locator('[data-testid="ack-form"]').first
    form.locator('input[name="reason"]').fill("a fix is on its way")
    form.locator("button").click()
    page.wait_for_load_state()
    assert "by release-manager: a fix is on its way" in page.locator("#alerts").inner_text()

    # a metric with more data IDs than lines: mean and range per run
    page.goto(site.ui("/metrics/calibrate.astrometric_scatter"))
    page.wait_for_selector("#chart canvas")
    assert "mean" in page.locator("#chart .u-legend").inner_text()
    screenshot(page, "metric-many-data-ids")
    page.goto(site.ui("/metrics"))
    screenshot(page, "metrics-list")
    page.goto(site.ui("/releases/NIGHTLY"))
    assert page.locator('[data-testid="release-metrics"]').is_visible()
    page.locator('[data-testid="release-metrics"]').screenshot(
        path=str(Path(path).with_name("release-metrics.png"))
    )
    assert problems == []
    page.close()


def _record_at(site: Site, run: str, value: float, when: float) -> None:
    """Record completeness for every patch in ``run`` at time ``when``, through the alert rules."""
    with _butler(site) as butler:
        store, _hook = open_store(butler.registry.db, VERIFY_METRICS)
        data_ids = store.series(COMPLETENESS).data_ids
        store.record(
            [NewMeasurement(COMPLETENESS, value, "", d) for d in data_ids],
            Provenance(run=run, time=when, task="truthMatch", config_hash=f"night-{value}"),
        )


def _nightly_history(site: Site) -> dict[str, Any]:
    """Night 8 fails (alerts fire), then audit entry N of NIGHTLY, then an alert is acknowledged (entry N+1)
    and night 9 recovers (the alerts resolve): what the release and its metrics were at entry N is not now."""
    with _butler(site) as butler:
        last = max(p.time for p in MetricStore(butler.registry.db).runs())
        for night in (8, 9):  # runs of the nightly chain the release gates, newest first
            butler.collections.register(f"{NIGHTLY}/{night}", "RUN")
        butler.collections.redefine_chain(f"{NIGHTLY}/latest", [f"{NIGHTLY}/9", f"{NIGHTLY}/8"])
    _record_at(site, f"{NIGHTLY}/8", 0.5, max(last + 0.001, time.time()))  # after every stored run, before N
    with _butler(site) as butler:
        fired = AlertBook(butler.registry.db).alerts(metric=COMPLETENESS)
        assert fired and all(a.status == "firing" for a in fired), "completeness 0.5 fails minimum (for: 1)"
        path = site.repo / "releases" / "NIGHTLY.yaml"
        release = Release(load_plan(path), path, butler)
        release.add_finding("minor", "quality", "night 8 lost most matches", by="release-manager")
        entry = release.events()[-1]
        release.acknowledge("quality", fired[0].alert_id, "release-manager", "match radius fix on its way")
        acked = release.events()[-1].seq
    _record_at(site, f"{NIGHTLY}/9", 0.99, entry.at + 60)  # recorded after the entry
    with _butler(site) as butler:
        now = AlertBook(butler.registry.db).alerts(status=None, metric=COMPLETENESS)
    assert {a.alert_id: a.status for a in now if a.alert_id in {f.alert_id for f in fired}} == dict.fromkeys(
        (f.alert_id for f in fired), "resolved"
    )
    return {"as_of": entry.seq, "at": entry.at, "acked": acked, "alerts": fired, "ack_id": fired[0].alert_id}


def test_metric_tiles_as_of_an_audit_entry(site: Site) -> None:
    history = _nightly_history(site)
    n, alerts, ack_id = history["as_of"], history["alerts"], history["ack_id"]
    query = f"?release=NIGHTLY&amp;as_of={n}"
    with _client(site, "release-manager") as manager:
        # The release page as of entry N: its metrics section as it stood then, its links carrying the entry.
        then = manager.get(site.ui(f"/releases/NIGHTLY?as_of={n}"))
        now = manager.get(site.ui("/releases/NIGHTLY"))
        assert then.status_code == now.status_code == 200
        section = re.search(r'<section id="metrics".*?</section>', then.text, re.S).group(0)  # type: ignore[union-attr]
        assert 'data-testid="metrics-as-of"' in section and f"audit entry #{n}" in section
        row = re.search(rf'data-metric="{COMPLETENESS}">(.*?)</tr>', section, re.S).group(1)  # type: ignore[union-attr]
        assert f'href="/ui/metrics/{COMPLETENESS}{query}"' in row
        assert f'href="/ui/metrics/{COMPLETENESS}{query}#alerts"' in row
        assert f"{NIGHTLY}/8" in row and f"{NIGHTLY}/9" not in row  # night 9 was recorded after the entry
        assert f"{len(alerts)} open" in _text(row) and "acknowledged" not in _text(row)
        present = re.search(r'<section id="metrics".*?</section>', now.text, re.S)
        found = re.search(
            rf'data-metric="{COMPLETENESS}">(.*?)</tr>', present.group(0) if present else "", re.S
        )
        assert found
        current = found.group(1)
        assert f"{NIGHTLY}/9" in current and "open" not in _text(current)
        assert "as_of=" not in current

        # The metric page the tile links to, as of entry N: no night 9, the alerts open, none acknowledged.
        page = manager.get(site.ui(f"/metrics/{COMPLETENESS}?release=NIGHTLY&as_of={n}"))
        assert page.status_code == 200, page.text
        assert 'data-testid="as-of"' in page.text and f"audit entry #{n}" in page.text
        runs = [r for r in re.findall(r'data-testid="value-row" data-run="([^"]+)"', page.text)]
        assert f"{NIGHTLY}/8" in runs and f"{NIGHTLY}/9" not in runs
        assert _chart(page.text)["runs"] == runs
        rows = {
            int(a): r
            for a, r in re.findall(
                r'<tr id="alert-\d+" data-testid="alert" data-alert="(\d+)">(.*?)</tr>', page.text, re.S
            )
        }
        assert set(rows) >= {a.alert_id for a in alerts}
        for alert in alerts:
            text = _text(rows[alert.alert_id])
            assert "firing" in text and "resolved" not in text, text
            assert f"last {NIGHTLY}/8" in text and "0.5" in text
        assert "match radius fix" not in _text(rows[ack_id]) and "no" in _text(rows[ack_id]).split()
        assert 'data-testid="ack-form"' not in page.text  # a past view offers no action, even to a writer
        assert f'name="as_of" value="{n}"' in page.text  # the data-ID choice stays in the past view
        # One entry later the acknowledgement is there; the alert is still open.
        later = manager.get(site.ui(f"/metrics/{COMPLETENESS}?release=NIGHTLY&as_of={history['acked']}"))
        acked = re.search(rf'<tr id="alert-{ack_id}".*?</tr>', later.text, re.S)
        assert acked and "by release-manager: match radius fix on its way" in _text(acked.group(0))
        assert "firing" in _text(acked.group(0))
        # Now: night 9 is there and the alerts have resolved.
        today = manager.get(site.ui(f"/metrics/{COMPLETENESS}")).text
        assert f'data-run="{NIGHTLY}/9"' in today and 'data-testid="as-of"' not in today
        assert f"resolved in <code>{NIGHTLY}/9</code>" in today

        # Malformed or unknown entries: the clear page of the release pages, never a crash.
        for bad, words in (
            ("release=NIGHTLY&as_of=abc", "is not an audit-log entry"),
            ("release=NIGHTLY&as_of=0", "is not an audit-log entry"),
            ("release=NIGHTLY&as_of=99999", "has no audit entry 99999"),
            (f"as_of={n}", "say which release"),
        ):
            answer = manager.get(site.ui(f"/metrics/{COMPLETENESS}?{bad}"))
            assert answer.status_code == 400, bad
            assert answer.headers["content-type"].startswith("text/html")
            problem = re.search(r'data-testid="problem">(.*?)</p>', answer.text, re.S)
            assert problem and words in html.unescape(problem.group(1)), (bad, answer.text)
        assert manager.get(site.ui("/releases/NIGHTLY?as_of=x1")).status_code == 400
        unknown = manager.get(site.ui(f"/metrics/{COMPLETENESS}?release=NOPE&as_of=1"))
        assert unknown.status_code == 404
    with _client(site, "outsider") as outsider:
        hidden = outsider.get(site.ui(f"/metrics/{COMPLETENESS}?release=NIGHTLY&as_of={n}"))
        missing = outsider.get(site.ui(f"/metrics/{COMPLETENESS}?release=NOPE&as_of={n}"))
        assert hidden.status_code == missing.status_code == 404
        assert hidden.text.replace("NIGHTLY", "X") == missing.text.replace("NOPE", "X")
        assert outsider.get(site.ui(f"/releases/NIGHTLY?as_of={n}")).status_code == 404


def test_browser_metric_tile_as_of(site: Site, browser: Any) -> None:
    history = _nightly_history(site)
    n = history["as_of"]
    page = signed_in(browser, site, "release-manager")
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        page.goto(site.ui(f"/releases/NIGHTLY?as_of={n}"))
        section = page.locator('[data-testid="release-metrics"]')
        assert f"audit entry #{n}" in section.locator('[data-testid="metrics-as-of"]').inner_text()
        section.screenshot(path=str(screenshot(page, "release-as-of").with_name("release-metrics-as-of.png")))
        section.locator(f'tr[data-metric="{COMPLETENESS}"] [data-testid="metric-link"]').click()
        page.wait_for_url(f"**/ui/metrics/{COMPLETENESS}?release=NIGHTLY&as_of={n}")
        page.wait_for_selector("#chart canvas")
        assert page.locator('[data-testid="as-of"]').is_visible()
        assert page.locator('[data-testid="ack-form"]').count() == 0
        assert page.locator("#alerts > table [data-testid=alert]").count() == len(history["alerts"])
        screenshot(page, "metric-as-of")
        # choosing a data ID keeps the past view
        page.select_option("#data-id", index=1)
        page.locator('[data-testid="data-id-form"] button').click()
        page.wait_for_load_state()
        assert f"as_of={n}" in page.url and page.locator('[data-testid="as-of"]').is_visible()
        assert f'"{NIGHTLY}/9"' not in page.locator("#chart-data").text_content()
        page.locator('[data-testid="as-of"] a').click()  # back to the present
        page.wait_for_load_state()
        assert "as_of" not in page.url and page.locator('[data-testid="ack-form"]').count() == 0
        assert problems == []
    finally:
        page.close()

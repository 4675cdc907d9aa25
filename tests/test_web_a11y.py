"""The dashboard's accessibility: every kind of page audited by axe-core against WCAG 2 A and AA, and a
keyboard walk of a release's pages (the skip link, the main content, the action forms, a visible focus).

axe-core is vendored in tests/assets (its README there names the version and source): nothing is fetched
at run time.  `page.add_script_tag` puts it into each page as an inline script, which the dashboard's
Content-Security-Policy (``default-src 'self'``) refuses, so the audits' browser contexts are made with
``bypass_csp=True``; the keyboard walk runs under the policy as served.

The served demo is staged so that the pages hold what a person meets on a working day: a release whose
checks fail (waive, confirm and sign-off forms, samples long enough to scroll, an open finding), a
completeness map with missing cells, an open metric alert.  Each page is audited as the release manager
(who is offered the forms) and as a read-only reader, on a desktop-sized window and at 320 CSS pixels
wide (a 1280 px window zoomed to 400 %, WCAG 1.4.10).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from web_site import Site, plan_like_demo1, screenshot

AXE = Path(__file__).resolve().parent / "assets" / "axe.min.js"
"""axe-core, vendored (tests/assets/README.md)."""

WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
"""The axe rules run: those of WCAG 2.0, 2.1 and 2.2 at levels A and AA."""

VIEWPORTS = {"wide": {"width": 1300, "height": 900}, "narrow": {"width": 320, "height": 800}}

STAGED = "A11Y"
"""A release planned as DEMO1, over its own copy of the catalogs with duplicated objectIds: its checks fail."""

IMAGES = "/releases/DEMO1/checkpoints/images/items"
COMPLETENESS = "truthMatch.completeness"


@dataclass
class Staged:
    """The served demo, staged: the site, and the datasets whose pages are audited."""

    site: Site
    calexp: str
    catalog: str
    summary: str
    forced_source: str


def _stage(site: Site) -> Staged:
    """A failing release with an open finding, a completeness map with gaps, an open metric alert."""
    from porter.butler import DirectButler
    from porter.demo import VERIFY_METRICS
    from porter.release import Release, load_plan
    from porter.verify import NewMeasurement, Provenance, open_store

    plans = site.repo / "releases"
    plan_like_demo1(site, STAGED, duplicated=30)  # a full sample of offending rows: it scrolls

    butler = DirectButler(site.repo, writeable=True)
    try:
        release = Release(load_plan(plans / f"{STAGED}.yaml"), plans / f"{STAGED}.yaml", butler)
        release.check("catalogs", by="pipelines-lead")
        release.add_finding("major", "catalogs", "Object has duplicated objectIds", by="release-manager")

        gone = [
            *butler.query_datasets(
                "deepCoadd",
                collections=["u/demo/drp"],
                skymap="synth_skymap",
                where="patch = 1 AND band = 'r'",
            ),
            *butler.query_datasets(
                "calexp",
                collections=["u/demo/drp"],
                instrument="SynthCam",
                where="visit = 1003 AND detector = 2",
            ),
        ]
        assert len(gone) == 2
        butler.prune_datasets(gone, purge=True, unstore=True)
        Release(load_plan(plans / "DEMO1.yaml"), plans / "DEMO1.yaml", butler).check("images")

        store, _hook = open_store(butler.registry.db, VERIFY_METRICS)
        last = max(p.time for p in store.runs())
        store.record(
            [NewMeasurement(COMPLETENESS, 0.5, "", d) for d in store.series(COMPLETENESS).data_ids],
            Provenance(run="u/demo/drp/nightly/8", time=last + 60, task="truthMatch", config_hash="broken"),
        )

        def first(dataset_type: str) -> str:
            return str(butler.query_datasets(dataset_type, collections=["u/demo/drp"], limit=1)[0].id)

        return Staged(
            site, first("calexp"), first("objectTable"), first("calexpSummary"), first("forcedSource")
        )
    finally:
        butler.close()


@pytest.fixture
def staged(site: Site) -> Staged:
    return _stage(site)


def _pages(staged: Staged) -> list[tuple[str, str, int]]:
    """Every kind of dashboard page: (name, path under /ui, HTTP status)."""
    return [
        ("releases", "/", 200),
        ("release", f"/releases/{STAGED}", 200),
        ("release-signed", "/releases/DEMO1", 200),
        ("release-as-of", f"/releases/{STAGED}?as_of=1", 200),
        ("release-metrics", "/releases/NIGHTLY", 200),
        ("checkpoint", f"/releases/{STAGED}/checkpoints/catalogs", 200),
        ("checkpoint-reopened", "/releases/DEMO1/checkpoints/images", 200),
        ("completeness-sky", f"{IMAGES}/coadds/completeness", 200),
        ("completeness-grid", f"{IMAGES}/calexps/completeness", 200),
        ("completeness-missing", f"{IMAGES}/coadds/completeness/missing?type=deepCoadd", 200),
        ("metrics", "/metrics", 200),
        ("metric", f"/metrics/{COMPLETENESS}", 200),
        ("metric-alerts", "/metrics/alerts", 200),
        ("runs", "/runs", 200),
        ("run", "/runs/u/demo/drp", 200),
        ("provenance", f"/provenance/{staged.forced_source}", 200),
        ("repository", "/repository", 200),
        ("collection", "/repository/collections/u/demo/drp?type=calexp", 200),
        ("dataset-image", f"/repository/datasets/{staged.calexp}", 200),
        ("dataset-table", f"/repository/datasets/{staged.catalog}", 200),
        ("dataset-text", f"/repository/datasets/{staged.summary}", 200),
        ("error", "/releases/NO-SUCH", 404),
    ]


def _context(browser: Any) -> Any:
    """A browser context that lets the audit's inline script in despite the dashboard's CSP."""
    return browser.new_context(bypass_csp=True, viewport=VIEWPORTS["wide"])


def _sign_in(context: Any, site: Site, user: str) -> Page:
    """A page of ``context`` signed in as ``user`` through the sign-in form."""
    page: Page = context.new_page()
    page.goto(site.ui("/login"))
    page.fill("#token", site.tokens[user])
    with page.expect_navigation():
        page.click("main button[type=submit]")
    expect(page.get_by_test_id("user")).to_have_text(user)
    return page


_DUPLICATE_IDS = """() => {
  const seen = new Map();
  for (const el of document.querySelectorAll('[id]')) seen.set(el.id, (seen.get(el.id) || 0) + 1);
  return [...seen].filter(([, n]) => n > 1).map(([id, n]) => `${id} (${n} times)`);
}"""


def _axe(page: Page) -> list[dict[str, Any]]:
    """axe-core's WCAG 2 A/AA violations on the page as it stands."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE))
    result: dict[str, Any] = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})",
        WCAG_AA,
    )
    return list(result["violations"])


def _describe(where: str, violation: dict[str, Any]) -> str:
    """One violation: its rule, what it asks, and the elements at fault with what to fix on each."""
    lines = [
        f"  {where}: {violation['id']} ({violation['impact']}): {violation['help']} ({violation['helpUrl']})"
    ]
    for node in violation["nodes"][:8]:
        target = " >> ".join(t if isinstance(t, str) else " ".join(t) for t in node["target"])
        fix = " ".join(node.get("failureSummary", "").split())
        lines.append(f"      {target}\n        {node['html'][:200]}\n        {fix[:400]}")
    if len(violation["nodes"]) > 8:
        lines.append(f"      … and {len(violation['nodes']) - 8} more elements")
    return "\n".join(lines)


class Audit:
    """The violations of the pages of one walk, reported all at once at its end."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def page(self, page: Page, name: str, viewport: str = "wide") -> None:
        where = f"{name} [{viewport}] {page.url}"
        for violation in _axe(page):
            self.found.append(_describe(where, violation))
        duplicates = page.evaluate(_DUPLICATE_IDS)  # labels and ARIA references would point at the first
        if duplicates:
            self.found.append(f"  {where}: duplicate ids: {', '.join(duplicates)}")

    def check(self) -> None:
        assert not self.found, "axe-core (WCAG 2 A/AA) found:\n" + "\n".join(self.found)


@pytest.mark.parametrize("user", ["release-manager", "reader"])
def test_every_page_passes_axe(staged: Staged, browser: Any, user: str) -> None:
    site = staged.site
    context = _context(browser)
    try:
        page = _sign_in(context, site, user)
        audit = Audit()
        for viewport, size in VIEWPORTS.items():
            page.set_viewport_size(size)
            for name, path, status in _pages(staged):
                answer = page.goto(site.ui(path))
                assert answer is not None and answer.status == status, (name, path)
                audit.page(page, name, viewport)

            # The map's missing data IDs, shown beside the map by completeness.js.
            page.goto(site.ui(f"{IMAGES}/coadds/completeness"))
            page.locator("[data-testid=map-r] a.cell").first.click()
            expect(page.get_by_test_id("missing-panel").get_by_test_id("missing-row").first).to_be_visible()
            audit.page(page, "completeness-panel", viewport)
            if user == "release-manager":  # the finding form, opened
                page.goto(site.ui(f"/releases/{STAGED}"))
                page.get_by_text("Record a finding").click()
                expect(page.locator("#f-text")).to_be_visible()
                audit.page(page, "release-finding-form", viewport)
        audit.check()
    finally:
        context.close()


def test_sign_in_pages_pass_axe(staged: Staged, browser: Any) -> None:
    site = staged.site
    context = _context(browser)
    try:
        page = context.new_page()
        audit = Audit()
        for viewport, size in VIEWPORTS.items():
            page.set_viewport_size(size)
            page.goto(site.ui("/login"))
            audit.page(page, "login", viewport)
            page.fill("#token", "not-a-token")
            with page.expect_navigation() as navigation:
                page.click("main button[type=submit]")
            assert navigation.value is not None and navigation.value.status == 401
            expect(page.get_by_test_id("problem")).to_be_visible()
            audit.page(page, "login-refused", viewport)
        audit.check()
    finally:
        context.close()


# --- the keyboard ----------------------------------------------------------------------------------------

_FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body || el === document.documentElement) return null;
  const style = getComputedStyle(el);
  const box = el.getBoundingClientRect();
  const shape = el instanceof SVGElement ? el.querySelector('polygon, rect') : null;
  return {
    tag: el.tagName.toLowerCase(),
    id: el.id,
    name: el.getAttribute('name') || '',
    text: (el.getAttribute('aria-label') || el.textContent || '').trim().replace(/\\s+/g, ' ').slice(0, 80),
    label: el.labels && el.labels.length ? el.labels[0].textContent.trim() : '',
    inMain: !!el.closest('main'),
    focusVisible: el.matches(':focus-visible'),
    outline: style.outlineStyle,
    outlineWidth: parseFloat(style.outlineWidth) || 0,
    shapeStroke: shape ? parseFloat(getComputedStyle(shape).strokeWidth) || 0 : 0,
    shown: box.width > 0 && box.height > 0 && box.right > 0 && box.left < innerWidth,
  };
}"""

Focused = dict[str, Any]


def _tab(page: Page) -> Focused | None:
    """Press Tab: what has the focus then (None: nothing on the page, the focus went past its end)."""
    page.keyboard.press("Tab")
    focused: Focused | None = page.evaluate(_FOCUSED)
    return focused


def _assert_focus_visible(focused: Focused) -> None:
    """The focused element shows it: it matches :focus-visible and draws an outline of 2 px or more (a link
    of an SVG map, whose outline the cells drawn after it would cover: a stroke of 3 px or more on its shape,
    wider than an unfocused cell's)."""
    assert focused["focusVisible"], f"does not match :focus-visible after Tab: {focused}"
    outlined = focused["outline"] not in ("none", "hidden") and focused["outlineWidth"] >= 2
    assert outlined or focused["shapeStroke"] >= 3, f"no visible focus outline: {focused}"
    assert focused["shown"], f"focused but not on the screen: {focused}"


def _tab_through(page: Page, until: Callable[[Focused], bool] = lambda f: False) -> list[Focused]:
    """Tab on from where the focus is, each focus checked visible, to ``until`` or the end of the page;
    the elements focused on the way.  The bound on the Tabs only stops a focus trapped in a loop."""
    walked: list[Focused] = []
    for _ in range(2000):
        focused = _tab(page)
        if focused is None or (walked and focused == walked[0]):  # past the page's end, or round again
            return walked
        _assert_focus_visible(focused)
        walked.append(focused)
        if until(focused):
            return walked
    raise AssertionError(f"the focus never left the page: {[(f['tag'], f['text']) for f in walked[-10:]]}")


def _control(focused: Focused) -> tuple[str, str]:
    return focused["tag"], focused["label"] or focused["text"]


def test_keyboard_walk_of_a_release(staged: Staged, browser: Any) -> None:
    site = staged.site
    context = browser.new_context(viewport=VIEWPORTS["wide"])  # the dashboard's CSP as served
    try:
        page = _sign_in(context, site, "release-manager")
        page.goto(site.ui(f"/releases/{STAGED}"))

        # The first Tab from the top reaches the skip link, shown; Enter takes the focus to the main content.
        skip = _tab(page)
        assert skip is not None and _control(skip) == ("a", "Skip to content"), skip
        _assert_focus_visible(skip)
        screenshot(page, "a11y-skip-link")
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"
        walked = _tab_through(page)
        assert walked and all(f["inMain"] for f in walked), walked[:3]  # the header's links were skipped
        assert walked[0]["text"] == "Releases"  # the crumbs, the first thing in main

        # The findings' forms, in order: close the open finding (its resolution, then Close), record one.
        controls = [_control(f) for f in walked]
        resolution = controls.index(("input", "Resolution of finding 1"))
        assert controls[resolution + 1] == ("button", "Close")
        assert ("summary", "Record a finding") in controls[resolution + 2 :]
        page.goto(site.ui(f"/releases/{STAGED}"))  # from the top again, through the header this time
        summary = _tab_through(page, lambda f: f["tag"] == "summary")[-1]
        assert _control(summary) == ("summary", "Record a finding")
        page.keyboard.press("Enter")  # opens the form
        opened = [_control(f) for f in _tab_through(page, lambda f: f["text"] == "Record finding")]
        assert opened == [
            ("select", "Checkpoint"),
            ("select", "Severity"),
            ("textarea", "What was found"),
            ("button", "Record finding"),
        ]
        screenshot(page, "a11y-focus-finding-form")

        # The checkpoint's forms: sign off, run the checks, ship, waive each failing check, confirm the manual item.
        page.goto(site.ui(f"/releases/{STAGED}/checkpoints/catalogs"))
        controls = [_control(f) for f in _tab_through(page)]
        for wanted in (
            ("button", "Sign off catalogs as release-manager"),
            ("button", "Run the checks now"),
            ("button", "Record the delivery (ship)"),
            ("button", "Confirm ingest-config done"),
        ):
            assert wanted in controls, (wanted, controls)
        assert controls.index(("button", "Sign off catalogs as release-manager")) < controls.index(
            ("button", "Run the checks now")
        )
        reasons = [
            i
            for i, (tag, label) in enumerate(controls)
            if tag == "input" and label.startswith("Reason to waive")
        ]
        assert len(reasons) == page.get_by_test_id("waive-form").count() >= 2
        assert all(controls[i + 1] == ("button", "Waive") for i in reasons)
        comment = controls.index(("input", "Comment on ingest-config"))
        assert controls[comment + 1] == ("button", "Confirm ingest-config done")
        assert ("ul", "Sample of primary key") in controls  # a long sample scrolls: it takes the focus

        page.goto(site.ui(f"/releases/{STAGED}/checkpoints/catalogs"))
        _tab_through(page, lambda f: f["label"].startswith("Reason to waive"))
        screenshot(page, "a11y-focus-waive")
    finally:
        context.close()


def test_keyboard_opens_a_map_cell(staged: Staged, browser: Any) -> None:
    site = staged.site
    context = browser.new_context(viewport=VIEWPORTS["wide"])
    try:
        page = _sign_in(context, site, "reader")
        page.goto(site.ui(f"{IMAGES}/coadds/completeness"))
        cell = _tab_through(page, lambda f: f["tag"] == "a" and "missing" in f["text"])[-1]
        assert cell["text"] == "tract 0 patch 1 band r: 0 of 1 delivered, 1 missing", cell
        screenshot(page, "a11y-focus-map-cell")
        page.keyboard.press("Enter")  # lists the cell's missing data IDs beside the map, and moves there
        panel = page.get_by_test_id("missing-panel")
        expect(panel.get_by_test_id("missing-row")).to_have_count(1)
        expect(panel).to_be_focused()
        expect(panel.get_by_role("heading", level=3)).to_have_text("Missing deepCoadd")
        expect(page.locator("a.cell[aria-current=true]")).to_have_count(1)
        assert page.url.endswith("/completeness")
        # on from the panel: its own links, then the rest of the page
        after = _tab_through(page, lambda f: f["text"] == "Open this list on its own page")
        assert after[-1]["tag"] == "a"
    finally:
        context.close()

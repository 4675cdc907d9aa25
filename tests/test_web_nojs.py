"""The dashboard read, and acted on, with JavaScript turned off (issue 17: "works without JavaScript
for reading"): sign-in is a form, every page's content is rendered by the server, the chart's values
are in a table, the completeness map is an SVG of links, a run's progress is in the page as served,
and a write action (recording a finding) is a plain form post.

Debian's chromium through Playwright with ``java_script_enabled=False``; screenshots under
test-artifacts/web/nojs-*.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from web_site import Site, screenshot

ITEMS = "/releases/DEMO1/checkpoints/images/items"
COMPLETENESS = "truthMatch.completeness"


@pytest.fixture
def page(site: Site, browser: Any) -> Iterator[Page]:
    """A page with JavaScript disabled, signed in as the release manager through the sign-in form."""
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1300, "height": 900})
    page = context.new_page()
    try:
        page.goto(site.ui("/login"))
        page.fill("#token", site.tokens["release-manager"])
        with page.expect_navigation():
            page.click("main button[type=submit]")
        yield page
    finally:
        context.close()


def test_every_kind_of_page_reads_without_javascript(site: Site, page: Page) -> None:
    expect(page.get_by_role("link", name="DEMO1", exact=True)).to_be_visible()

    page.get_by_role("link", name="DEMO1", exact=True).click()
    expect(page.get_by_role("heading", name="Release DEMO1")).to_be_visible()
    expect(page.get_by_test_id("audit").locator("tbody tr").first).to_be_visible()
    screenshot(page, "nojs-release")

    # The completeness map is the server's SVG of the skymap's patches, with its totals in words.
    page.goto(site.ui(f"{ITEMS}/coadds/completeness"))
    assert page.locator("svg polygon").count() > 0
    expect(page.get_by_test_id("totals").first).to_contain_text("expected data IDs delivered")
    screenshot(page, "nojs-completeness")

    # A metric's trend: the chart needs JavaScript, and says so; every value is in the table.
    page.goto(site.ui(f"/metrics/{COMPLETENESS}"))
    expect(page.locator("noscript")).to_have_count(1)
    values = page.get_by_test_id("values").locator("tbody tr")
    assert values.count() >= 8  # the DRP run and seven nights
    expect(page.get_by_test_id("values")).to_contain_text("u/demo/drp/nightly/4")
    screenshot(page, "nojs-metric")

    # Runs: progress and errors are in the page as served (live updates are the only script).
    page.goto(site.ui("/runs"))
    page.get_by_role("link", name="u/demo/drp", exact=True).first.click()
    expect(page.locator("main")).to_contain_text("succeeded")
    screenshot(page, "nojs-run")

    page.goto(site.ui("/repository"))
    expect(page.locator("main")).to_contain_text("u/demo/drp")


def test_a_finding_is_recorded_with_a_plain_form_post(site: Site, page: Page) -> None:
    page.goto(site.ui("/releases/DEMO1"))
    page.get_by_text("Record a finding").click()  # a <details> disclosure: no script needed
    form = page.locator("#findings form.stack")
    page.fill("#f-text", "Source table lacks psfFlux units (recorded without JavaScript)")
    with page.expect_navigation() as navigation:
        form.get_by_role("button", name="Record finding").click()
    response = navigation.value
    assert response is not None and response.status == 200
    expect(page.get_by_test_id("findings")).to_contain_text("recorded without JavaScript")
    expect(page.get_by_test_id("audit")).to_contain_text("recorded without JavaScript")

"""The dashboard in a real browser (Debian's chromium through Playwright): sign-in, a release walked
from its first check to its sign-off, the audit trail's as-of views, embargoes and forged forms.

Every page visited is saved under test-artifacts/web/ (see `web_site.screenshot`) for a person to look at.
The httpx-level access tests are in test_web_access.py.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from typing import Any

from playwright.sync_api import Locator, Page, expect

from web_site import EMBARGOED, Site, plan_like_demo1, screenshot, signed_in

WALK = "WALK"
"""A fresh release over the demo's data (DEMO1 is already signed off by the demo)."""

PRIMARY_KEY = "object-table:primary key"


def _walk_release(site: Site) -> None:
    """Plan WALK like DEMO1 with two objectIds duplicated in one Object file: its catalogs checks fail."""
    plan_like_demo1(site, WALK, duplicated=2)


def _submit(page: Page, button: Locator) -> int:
    """Click a form's submit button and wait for the page it leads to; that page's HTTP status."""
    with page.expect_navigation() as navigation:
        button.click()
    response = navigation.value
    assert response is not None
    return response.status


def _problem(page: Page) -> str:
    return page.get_by_test_id("problem").inner_text()


def _checkpoint_url(site: Site, checkpoint: str = "catalogs") -> str:
    return site.ui(f"/releases/{WALK}/checkpoints/{checkpoint}")


def _audit_rows(page: Page) -> Locator:
    return page.get_by_test_id("audit").locator("tbody tr")


def test_sign_in_through_the_form_and_out(site: Site, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    try:
        page.goto(site.ui("/releases/DEMO1"))
        assert page.url.startswith(site.ui("/login?next="))  # sent to sign in, coming back after
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        expect(page.locator("#token")).to_have_attribute("type", "password")
        screenshot(page, "login")

        page.fill("#token", "not-a-token")
        assert _submit(page, page.locator("main button[type=submit]")) == 401
        expect(page.get_by_test_id("problem")).to_contain_text("token")
        assert not [c for c in page.context.cookies() if c["name"] == "porter_session"]

        page.fill("#token", site.tokens["release-manager"])
        assert _submit(page, page.locator("main button[type=submit]")) == 200
        assert page.url == site.ui("/releases/DEMO1")  # back where the person was going
        expect(page.get_by_test_id("user")).to_have_text("release-manager")
        (cookie,) = [c for c in page.context.cookies() if c["name"] == "porter_session"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui/"
        assert page.evaluate("document.cookie") == ""  # the token is out of the page's scripts' reach

        _submit(page, page.get_by_role("button", name="Sign out"))
        assert page.url == site.ui("/login")
        expect(page.get_by_test_id("user")).to_have_count(0)
        assert not [c for c in page.context.cookies() if c["name"] == "porter_session"]
        page.goto(site.ui("/"))
        assert page.url.startswith(site.ui("/login"))  # signed out means signed out
    finally:
        page.close()


def test_walk_a_release_from_first_check_to_sign_off(site: Site, browser: Any) -> None:
    _walk_release(site)
    lead = signed_in(browser, site, "pipelines-lead")
    manager = signed_in(browser, site, "release-manager")
    try:
        # The release page before anything was done: blocked, catalogs not signed, an empty audit trail.
        manager.goto(site.ui(f"/releases/{WALK}"))
        expect(manager.get_by_role("heading", name=f"Release {WALK}")).to_be_visible()
        gate = manager.get_by_test_id("gate")
        expect(gate).to_contain_text("blocked by")
        expect(gate).to_contain_text("checkpoint 'catalogs' is not signed off")
        catalogs_row = manager.get_by_test_id("timeline").locator("li", has_text="catalogs").first
        expect(catalogs_row).not_to_contain_text("signed by")
        expect(_audit_rows(manager)).to_have_count(0)
        screenshot(manager, "release-page")
        catalogs_row.get_by_role("link", name="catalogs").click()
        assert manager.url == _checkpoint_url(site)
        expect(manager.get_by_test_id("not-run")).to_be_visible()

        # The pipelines lead records the delivery and runs the checks: duplicated objectIds, with samples.
        lead.goto(_checkpoint_url(site))
        assert _submit(lead, lead.get_by_role("button", name="Record the delivery (ship)")) == 200
        expect(lead.get_by_test_id("signoff")).to_contain_text("Shipped by pipelines-lead")
        assert _submit(lead, lead.get_by_role("button", name="Run the checks now")) == 200
        assert lead.url == _checkpoint_url(site)
        objects = lead.get_by_test_id("results-object-table")
        failing = objects.locator("tr.result.fail")
        expect(failing).to_have_count(2)  # the Felis primary key and DEMO1's regression-corpus check
        primary = failing.filter(has_text="primary key")
        expect(primary).to_contain_text("duplicated keys")
        samples = primary.get_by_test_id("sample").locator("li")
        expect(samples.first).to_be_visible()  # a failing result's sample is open, not hidden
        assert samples.count() >= 1 and all(s.startswith("[") for s in samples.all_inner_texts())
        expect(lead.get_by_test_id("results-source-table").locator("tr.result.fail")).to_have_count(0)
        signoff = lead.get_by_test_id("signoff")
        expect(signoff).to_contain_text("Not signed off")
        expect(signoff).to_contain_text(f"check {PRIMARY_KEY} is fail")
        manual = lead.get_by_test_id("results-ingest-config").locator("tr.result")
        expect(manual).to_contain_text("pending")
        # a manual item awaiting its confirmation is confirmed, not waived
        expect(manual.get_by_test_id("waive-form")).to_have_count(0)
        expect(lead.get_by_test_id("history").locator("tbody tr")).to_have_count(1)
        screenshot(lead, "checkpoint-failing")

        # The pipelines lead is not a signer of catalogs: refused, and the page says who may.
        status = _submit(lead, lead.get_by_role("button", name="Sign off catalogs as pipelines-lead"))
        assert status == 403
        problem = _problem(lead)
        assert "pipelines-lead may not sign off 'catalogs'" in problem and "release-manager" in problem
        screenshot(lead, "signoff-refused")

        # The pipelines lead cannot waive either (no can_waive in the plan).
        lead.goto(_checkpoint_url(site))
        row = lead.get_by_test_id("results-object-table").locator("tr.result.fail").first
        row.locator("input[name=reason]").fill("looks fine to me")
        assert _submit(lead, row.get_by_role("button", name="Waive")) == 403
        assert "pipelines-lead may not waive checks" in _problem(lead)

        # The release manager is a signer, but the failing checks refuse the sign-off.
        manager.goto(_checkpoint_url(site))
        assert (
            _submit(manager, manager.get_by_role("button", name="Sign off catalogs as release-manager"))
            == 403
        )
        problem = _problem(manager)
        assert "Sign-off of 'catalogs' refused" in problem and f"check {PRIMARY_KEY} is fail" in problem
        screenshot(manager, "signoff-refused-by-gate")

        # Waive each failing check with a reason, confirm the manual item, sign off.
        manager.goto(_checkpoint_url(site))
        for reason in ("duplicates are dropped at Qserv ingest", "same defect as the primary key"):
            row = (
                manager.get_by_test_id("results-object-table")
                .locator("tr.result.fail", has=manager.get_by_test_id("waive-form"))
                .first
            )
            row.locator("input[name=reason]").fill(reason)
            assert _submit(manager, row.get_by_role("button", name="Waive")) == 200
        expect(manager.get_by_test_id("waive-form")).to_have_count(0)
        expect(manager.get_by_test_id("results-object-table")).to_contain_text("waived by release-manager")
        expect(manager.get_by_test_id("signoff")).to_contain_text("ingest-config:manual is pending")
        confirm = manager.get_by_test_id("confirm-ingest-config")
        confirm.locator("input[name=comment]").fill("one director table, Object")
        assert _submit(manager, confirm.get_by_role("button", name="Confirm ingest-config done")) == 200
        expect(manager.get_by_test_id("results-ingest-config").locator("tr.result")).to_contain_text("pass")
        expect(manager.get_by_test_id("signoff")).to_contain_text("Ready to sign off")
        assert (
            _submit(manager, manager.get_by_role("button", name="Sign off catalogs as release-manager"))
            == 200
        )
        expect(manager.get_by_test_id("signoff")).to_contain_text("Signed off by release-manager")
        expect(manager.get_by_test_id("signoff-form")).to_have_count(0)
        screenshot(manager, "checkpoint-signed")

        # The release page: catalogs signed on the timeline, gone from the gate's blockers, the waivers listed.
        manager.get_by_role("link", name=WALK, exact=True).click()
        assert manager.url == site.ui(f"/releases/{WALK}")
        expect(gate).not_to_contain_text("checkpoint 'catalogs' is not signed off")
        expect(gate).to_contain_text("checkpoint 'images' is not signed off")
        expect(catalogs_row).to_contain_text("signed by release-manager")
        waivers = manager.get_by_test_id("waivers").locator("tbody tr")
        expect(waivers).to_have_count(2)
        expect(waivers.first).to_contain_text("duplicates are dropped at Qserv ingest")
        expect(manager.get_by_test_id("audit-verified")).to_be_visible()
        actions = _audit_rows(manager).locator("td:nth-child(5)").all_inner_texts()
        assert actions[0] == "signed off" and actions[-1] == "shipped", actions
        screenshot(manager, "release-signed")

        # The audit trail's as-of link of the check run: a read-only record of the release before the waivers.
        _audit_rows(manager).filter(has_text="ran the checks").get_by_role("link").click()
        assert manager.url.endswith("?as_of=2")
        expect(manager.get_by_test_id("as-of")).to_contain_text("audit entry #2")
        expect(catalogs_row).not_to_contain_text("signed by")
        expect(catalogs_row).to_contain_text("failing")
        expect(gate).to_contain_text("checkpoint 'catalogs' is not signed off")
        expect(_audit_rows(manager)).to_have_count(2)
        expect(manager.locator("main form")).to_have_count(0)  # nothing can be changed from a record
        screenshot(manager, "as-of")
        # the timeline's link keeps the as-of: the checkpoint as it stood, failing, with no forms
        catalogs_row.get_by_role("link", name="catalogs").click()
        assert manager.url == _checkpoint_url(site) + "?as_of=2"
        expect(manager.get_by_test_id("as-of")).to_be_visible()
        expect(manager.get_by_test_id("results-object-table").locator("tr.result.fail")).to_have_count(2)
        expect(manager.locator("main form")).to_have_count(0)
        manager.get_by_role("link", name="Show it as it stands now").click()
        expect(manager.get_by_test_id("signoff")).to_contain_text("Signed off by release-manager")
    finally:
        lead.close()
        manager.close()


def test_embargoed_release_only_for_its_team(site: Site, browser: Any) -> None:
    reader = signed_in(browser, site, "reader")
    lead = signed_in(browser, site, "embargo-lead")
    try:
        releases = reader.get_by_test_id("releases")
        expect(releases).to_contain_text("DEMO1")
        expect(releases).not_to_contain_text(EMBARGOED)
        answer = reader.goto(site.ui(f"/releases/{EMBARGOED}"))
        assert answer is not None and answer.status == 404
        expect(reader.get_by_role("heading", name="Not found")).to_be_visible()
        assert "may not see it" in _problem(reader)
        screenshot(reader, "embargo-404")
        # the same page as for a release that was never planned
        missing = reader.goto(site.ui("/releases/NO-SUCH"))
        assert missing is not None and missing.status == 404
        answer = reader.goto(site.ui(f"/releases/{EMBARGOED}/checkpoints/catalogs"))
        assert answer is not None and answer.status == 404

        expect(lead.get_by_test_id("releases")).to_contain_text(EMBARGOED)
        lead.get_by_role("link", name=EMBARGOED).click()
        expect(lead.get_by_role("heading", name=f"Release {EMBARGOED}")).to_be_visible()
        expect(lead.get_by_text("An embargoed release: only the embargo team may see it.")).to_be_visible()
        expect(lead.get_by_test_id("user")).to_have_text("embargo-lead")
        expect(lead.locator("header")).to_contain_text("(read only)")
        expect(lead.get_by_text("Record a finding")).to_have_count(0)
    finally:
        reader.close()
        lead.close()


@contextlib.contextmanager
def _other_site(html: str) -> Iterator[str]:
    """A page served from another site (``localhost`` is not the dashboard's ``127.0.0.1``)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def test_a_forged_form_is_refused(site: Site, browser: Any) -> None:
    page = signed_in(browser, site, "release-manager")
    try:
        page.goto(site.ui("/releases/DEMO1"))
        entries = _audit_rows(page).count()
        assert entries > 0

        # A form of the dashboard whose CSRF token was tampered with: refused, nothing recorded.
        page.get_by_text("Record a finding").click()
        form = page.locator("#findings form.stack")
        form.locator("input[name=csrf]").evaluate("input => { input.value = '0'.repeat(40) }")
        page.fill("#f-text", "forged finding")
        assert _submit(page, form.get_by_role("button", name="Record finding")) == 403
        assert "CSRF" in _problem(page)

        # A form on another site posting to the dashboard: the session cookie (SameSite=Strict) is not sent.
        forged = (
            f'<form method="post" action="{site.ui("/releases/DEMO1/findings")}">'
            '<input name="checkpoint" value="catalogs"><input name="severity" value="blocker">'
            '<input name="text" value="cross-site finding"><input name="csrf" value="x">'
            '<button type="submit">Win a prize</button></form>'
        )
        with _other_site(forged) as url:
            page.goto(url)
            _submit(page, page.get_by_role("button", name="Win a prize"))
            assert page.url.startswith(site.ui("/login"))  # seen as nobody signed in

        page.goto(site.ui("/releases/DEMO1"))
        expect(_audit_rows(page)).to_have_count(entries)
        expect(page.get_by_test_id("findings")).not_to_contain_text("forged finding")
        expect(page.get_by_test_id("findings")).not_to_contain_text("cross-site finding")
    finally:
        page.close()

"""The demo survey served with its dashboard, its people signed up, and a real browser to look at it.

`demo_repository` runs ``porter demo-survey`` once per test process (about
15 s): the mini DRP, the DEMO1 release rehearsal and the NIGHTLY metrics
story.  `site` serves a copy of it (so a test may act on it) through a real
uvicorn server with `porter.web`, with users named as the plan's people, a
read-only reader, an outsider with no grants, and an embargoed release only
the embargo team may see.  `browser` is Debian's chromium driven by
Playwright (its own browser download is not reachable here); under CI=true a
missing chromium fails the tests instead of skipping them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from serving import serving, token

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "web"
"""Where the browser tests save their screenshots (kept by CI as artifacts; look at them)."""

WRITERS = ("release-manager", "pipelines-lead", "decider", "data-services-lead")
"""Users named as people of the DEMO1 plan, with write tokens."""

EMBARGOED = "EMBARGO1"
EMBARGO_COLLECTION = "embargo/DR2/run"


@dataclass
class Site:
    """A served demo repository: its URL, its root, each user's token, the application."""

    url: str
    repo: Path
    tokens: dict[str, str]
    app: Any

    def ui(self, path: str = "/") -> str:
        return f"{self.url}/ui{path}"


def build_demo_repository(root: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "porter.cli", "demo-survey", "--repo", str(root), "--json"],
        check=True,
        capture_output=True,
        timeout=900,
    )
    return root


def _sign_up(repo: Path, accounts: Any) -> dict[str, str]:
    """The users, groups, grants and tokens of the site, and the embargoed release's plan and collection."""
    from porter.butler import DirectButler
    from porter.release import dump_plan, load_plan

    butler = DirectButler(repo, writeable=True)
    try:
        butler.collections.register(EMBARGO_COLLECTION, "RUN")
    finally:
        butler.close()
    plans = repo / "releases"
    plan = load_plan(plans / "DEMO1.yaml")
    plan.release = EMBARGOED
    plan.collections = [EMBARGO_COLLECTION]
    plan.description = "An embargoed release: only the embargo team may see it."
    dump_plan(plan, plans / f"{EMBARGOED}.yaml")

    accounts.add_group("survey", by="test")
    accounts.add_group("embargo-team", by="test")
    for pattern in ("u/demo/*", "SynthCam/*", "refcats", "skymaps"):
        accounts.grant("survey", "write", pattern, by="test")
    accounts.grant("embargo-team", "read", "embargo/*", by="test")
    tokens = {}
    existing = {u.name for u in accounts.users()}  # the demo signs up its release-manager itself
    for user in (*WRITERS, "reader", "outsider", "embargo-lead"):
        if user not in existing:
            accounts.add_user(user, by="test")
    for user in (*WRITERS, "reader", "embargo-lead"):
        accounts.add_member("survey", user, by="test")
    accounts.add_member("embargo-team", "embargo-lead", by="test")
    for user in WRITERS:
        tokens[user] = token(accounts, user, "write")
    for user in ("reader", "outsider", "embargo-lead"):
        tokens[user] = token(accounts, user, "read")
    return tokens


@pytest.fixture(scope="session")
def demo_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo survey's repository, made once per test process; copy it before changing it."""
    return build_demo_repository(tmp_path_factory.mktemp("demo") / "repo")


@pytest.fixture
def site(demo_repository: Path, tmp_path: Path) -> Iterator[Site]:
    """A copy of the demo repository served with the dashboard, with its users signed up."""
    from porter.web import create_app

    repo = tmp_path / "repo"
    shutil.copytree(demo_repository, repo, symlinks=True)
    with serving(repo, factory=create_app) as served:
        tokens = _sign_up(repo, served.accounts)
        yield Site(served.url, repo, tokens, served.app)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, through Playwright."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed: .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def signed_in(browser: Any, site: Site, user: str) -> Any:
    """A new browser page signed in to ``site`` as ``user`` (through the sign-in form)."""
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.goto(site.ui("/login"))
    page.fill("#token", site.tokens[user])
    page.click("main button[type=submit]")
    page.wait_for_load_state()
    return page


def plan_like_demo1(site: Site, name: str, duplicated: int) -> Path:
    """Plan ``name`` as a copy of DEMO1 over its own copy of the catalogs, with the first ``duplicated``
    rows of one Object file appended again (a rerun that appended instead of replacing): its catalogs
    checks fail on the primary key, with up to ``duplicated`` offending objectIds as samples."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from porter.release import dump_plan, load_plan

    plans = site.repo / "releases"
    plan = load_plan(plans / "DEMO1.yaml")
    plan.release = name
    for checkpoint in plan.checkpoints:
        for item in checkpoint.items:
            if item.location and item.location.startswith("DEMO1/"):
                item.location = name + item.location.removeprefix("DEMO1")
    shutil.copytree(plans / "DEMO1" / "catalogs", plans / name / "catalogs")
    part = sorted((plans / name / "catalogs" / "Object").glob("*.parquet"))[0]
    table = pq.read_table(part)
    pq.write_table(pa.concat_tables([table, table.slice(0, duplicated)]), part)
    path = plans / f"{name}.yaml"
    dump_plan(plan, path)
    return path


def screenshot(page: Any, name: str) -> Path:
    """Save the page as ``test-artifacts/web/NAME.png`` (whole page)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path

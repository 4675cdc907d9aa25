"""Repository pages: collections, dataset types with counts, a collection's datasets, one dataset — under the API's
access rules (an unreadable collection or run is answered exactly like a missing one), against the butler's answers."""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from porter.butler import DirectButler
from serving import serving
from web_site import EMBARGO_COLLECTION, Site, _sign_up, screenshot, signed_in


@contextlib.contextmanager
def _client(site: Site, user: str) -> Iterator[httpx.Client]:
    with httpx.Client(follow_redirects=False, timeout=60) as client:
        answer = client.post(site.ui("/login"), data={"token": site.tokens[user], "next": "/ui/"})
        assert answer.status_code == 303, answer.text
        yield client


def _principal(site: Site, user: str) -> Any:
    return site.app.state.porter.accounts.authenticate(site.tokens[user])


def _butler(site: Site, writeable: bool = False) -> Any:
    from porter.butler import DirectButler

    return DirectButler(site.repo, writeable=writeable)


def _listed(html: str) -> list[str]:
    return re.findall(r'<tr data-testid="collection">\s*<td><a href="[^"]*">([^<]*)</a>', html)


def test_collections_hide_what_the_viewer_may_not_read(site: Site) -> None:
    butler = _butler(site, writeable=True)
    try:
        butler.collections.register("u/demo/mixed", "CHAINED")
        butler.collections.redefine_chain("u/demo/mixed", [EMBARGO_COLLECTION, "u/demo/drp"])
        everything = butler.collections.query("*")
    finally:
        butler.close()
    with _client(site, "reader") as client:
        page = client.get(site.ui("/repository"))
        assert page.status_code == 200
        listed = _listed(page.text)
        reader = _principal(site, "reader")
        assert sorted(listed) == sorted(n for n in everything if reader.can_read(n))
        assert EMBARGO_COLLECTION not in page.text  # not listed, and not shown as a chain's child either
        chain = client.get(site.ui("/repository/collections/u/demo/mixed"))
        assert chain.status_code == 200
        assert re.findall(
            r">([^<]+)</a>", chain.text.split('data-testid="children"')[1].split("</dd>")[0]
        ) == ["u/demo/drp"]
        hidden = client.get(site.ui(f"/repository/collections/{EMBARGO_COLLECTION}"))
        missing = client.get(site.ui("/repository/collections/no/such/run"))
        assert hidden.status_code == missing.status_code == 404
        assert hidden.text.replace(EMBARGO_COLLECTION, "X") == missing.text.replace("no/such/run", "X")
    with _client(site, "outsider") as client:
        page = client.get(site.ui("/repository"))
        assert page.status_code == 200
        assert not [n for n in _listed(page.text) if n.startswith("u/demo/")]
        assert "u/demo/" not in page.text
        assert client.get(site.ui("/repository/collections/u/demo/drp")).status_code == 404
    with _client(site, "embargo-lead") as client:
        assert EMBARGO_COLLECTION in _listed(client.get(site.ui("/repository")).text)


def test_dataset_type_counts_equal_the_butlers(site: Site) -> None:
    reader = _principal(site, "reader")
    butler = _butler(site)
    try:
        runs = [
            i.name
            for i in butler.collections.query_info("*")
            if i.type.name == "RUN" and reader.can_read(i.name)
        ]
        expected = {
            t.name: len(butler.query_datasets(t.name, collections=runs, find_first=False, explain=False))
            for t in butler.registry.query_dataset_types("*")
        }
        in_drp = {
            t: len(butler.query_datasets(t, collections=["u/demo/drp"], find_first=False, explain=False))
            for t in expected
        }
    finally:
        butler.close()
    assert expected["calexp"] > 0
    with _client(site, "reader") as client:
        page = client.get(site.ui("/repository")).text
        shown = {n: int(c) for n, c in re.findall(r'data-name="([^"]+)" data-count="(\d+)"', page)}
        assert shown == expected
        run = client.get(site.ui("/repository/collections/u/demo/drp")).text
        counted = {n: int(c) for n, c in re.findall(r'data-name="([^"]+)" data-count="(\d+)"', run)}
        assert counted == {t: n for t, n in in_drp.items() if n}
        # a chain counts the datasets of its readable children (the same query, not a Python loop per row)
        first = client.get(site.ui("/repository/collections/u/demo/drp"), params={"type": "calexp"})
        assert first.text.count('data-testid="dataset-row"') == 100
        second = client.get(
            site.ui("/repository/collections/u/demo/drp"), params={"type": "calexp", "page": 2}
        )
        assert second.text.count('data-testid="dataset-row"') == in_drp["calexp"] - 100
        bad = client.get(site.ui("/repository/collections/u/demo/drp"), params={"type": "nothing"})
        assert bad.status_code == 400


def _first(site: Site, dataset_type: str) -> Any:
    butler = _butler(site)
    try:
        return butler.query_datasets(dataset_type, collections=["u/demo/drp"], limit=1)[0]
    finally:
        butler.close()


def test_dataset_page_download_and_preview(site: Site) -> None:
    ref = _first(site, "calexp")
    butler = _butler(site)
    try:
        content = butler.get_uri(ref).read()
    finally:
        butler.close()
    with _client(site, "reader") as client:
        page = client.get(site.ui(f"/repository/datasets/{ref.id}"))
        assert page.status_code == 200
        assert f"visit={ref.data_id['visit']}" in page.text and "u/demo/drp" in page.text
        assert 'data-testid="provenance"' in page.text and "made by" in page.text  # the DRP made it
        graph = client.get(site.ui(f"/provenance/{ref.id}"))  # the page links its provenance graph
        assert f'href="/ui/provenance/{ref.id}"' in page.text and graph.status_code == 200
        link = re.search(r'<a href="([^"]+)" download data-testid="download"', page.text)
        assert link is not None
        # the page links the dashboard's download (counted, for this viewer), which hands out the signed URL
        assert link.group(1) == f"/ui/repository/datasets/{ref.id}/download"
        handed = client.get(site.url + link.group(1))
        assert handed.status_code == 303
        url = site.url + handed.headers["location"]
        with httpx.Client() as anyone:  # the signed URL is the credential: no session needed
            assert anyone.get(site.url + link.group(1)).status_code == 303  # no session: to the sign-in page
            assert "/ui/login" in anyone.get(site.url + link.group(1)).headers["location"]
            got = anyone.get(url)
            assert got.status_code == 200
            assert got.content == content
            tampered = re.sub(
                r"signature=(.)", lambda m: "signature=" + ("A" if m.group(1) != "A" else "B"), url
            )
            assert anyone.get(tampered).status_code == 403
            other = url.replace(ref.id.hex, _first(site, "deepCoadd").id.hex)
            assert anyone.get(other).status_code == 403  # the signature is bound to the dataset
        preview = client.get(site.ui(f"/repository/datasets/{ref.id}/preview.png"))
        assert preview.status_code == 200
        assert preview.headers["content-type"] == "image/png"
        assert preview.content.startswith(b"\x89PNG\r\n\x1a\n")
        table = client.get(site.ui(f"/repository/datasets/{_first(site, 'objectTable').id}"))
        assert table.status_code == 200 and 'data-testid="table-head"' in table.text
        assert table.text.count("<tr>") > 1
        bad = client.get(site.ui("/repository/datasets/not-a-uuid"))
        assert bad.status_code == 400 and "UUID" in bad.text
    with _client(site, "outsider") as client:
        assert client.get(site.ui(f"/repository/datasets/{ref.id}")).status_code == 404
        assert client.get(site.ui(f"/repository/datasets/{ref.id}/preview.png")).status_code == 404
        assert client.get(site.ui(f"/repository/datasets/{ref.id}/download")).status_code == 404


def test_dataset_in_an_unreadable_run_is_not_there(site: Site) -> None:
    import uuid

    butler = _butler(site, writeable=True)
    try:
        hidden = butler.put({"secret": 1}, "survey_truth", instrument="SynthCam", run=EMBARGO_COLLECTION)
    finally:
        butler.close()
    nowhere = uuid.uuid4()
    with _client(site, "reader") as client:
        a = client.get(site.ui(f"/repository/datasets/{hidden.id}"))
        b = client.get(site.ui(f"/repository/datasets/{nowhere}"))
        assert a.status_code == b.status_code == 404
        assert a.text.replace(str(hidden.id), "X") == b.text.replace(str(nowhere), "X")
    with _client(site, "embargo-lead") as client:
        seen = client.get(site.ui(f"/repository/datasets/{hidden.id}"))
        assert seen.status_code == 200 and "secret" in seen.text


def test_browser_dataset_page(site: Site, browser: Any) -> None:
    ref = _first(site, "calexp")
    page = signed_in(browser, site, "reader")
    try:
        page.goto(site.ui("/repository/collections/u/demo/drp?type=calexp"))
        page.click(f"a[href$='/repository/datasets/{ref.id}']")
        page.wait_for_load_state()
        image = page.locator("[data-testid=preview]")
        image.wait_for()
        assert page.evaluate("img => img.complete && img.naturalWidth > 0", image.element_handle())
        assert page.locator("[data-testid=dataset-id]").inner_text() == str(ref.id)
        screenshot(page, "dataset-page")
    finally:
        page.close()


@pytest.fixture
def limited(demo_repository: Path, tmp_path: Path) -> Iterator[tuple[Site, Any, int]]:
    """The demo site served with a download limit of 2.5 calexp files a day per user: (site, a calexp, its size)."""
    from porter.web import create_app

    repo = tmp_path / "repo"
    shutil.copytree(demo_repository, repo, symlinks=True)
    butler = DirectButler(repo)
    try:
        ref = butler.query_datasets("calexp", collections=["u/demo/drp"], limit=1)[0]
        size = butler.datastore.locations([ref.id])[ref.id].size
    finally:
        butler.close()
    assert size
    with serving(repo, factory=create_app, download_bytes_per_day=2 * size + size // 2) as served:
        tokens = _sign_up(repo, served.accounts)
        yield Site(served.url, repo, tokens, served.app), ref, size


def test_dashboard_downloads_count_toward_the_daily_limit(limited: tuple[Site, Any, int]) -> None:
    """A download through the dataset page counts toward the user's bytes of the day as an API get does: the
    same counter, so the dashboard is no way around the limit (and the API none around the dashboard's)."""
    site, ref, size = limited
    api = f"{site.url}/api/v1/get"
    with _client(site, "reader") as client, httpx.Client() as anyone:
        for _ in range(3):  # showing the page hands out nothing
            assert client.get(site.ui(f"/repository/datasets/{ref.id}")).status_code == 200
        first = client.get(site.ui(f"/repository/datasets/{ref.id}/download"))
        assert first.status_code == 303
        assert len(anyone.get(site.url + first.headers["location"]).content) == size
        bearer = {"Authorization": f"Bearer {site.tokens['reader']}"}
        second = anyone.post(api, json={"dataset_id": str(ref.id)}, headers=bearer)
        assert second.status_code == 200, second.text  # 2 files of the 2.5 a day
        third = client.get(site.ui(f"/repository/datasets/{ref.id}/download"))
        assert third.status_code == 429 and "location" not in third.headers
        assert int(third.headers["retry-after"]) > 0
        assert f"downloaded {2 * size} of {2 * size + size // 2} bytes" in third.text
        refused = anyone.post(api, json={"dataset_id": str(ref.id)}, headers=bearer)
        assert refused.status_code == 429 and refused.json()["error"] == "RetryLater"
    with _client(site, "release-manager") as client:  # the limit is per user
        assert client.get(site.ui(f"/repository/datasets/{ref.id}/download")).status_code == 303

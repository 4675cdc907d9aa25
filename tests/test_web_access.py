"""The dashboard obeys the data's access rules: sign-in with a porter token, embargoed releases invisible.

Plain HTTP (httpx) against the real server; the browser walk-throughs are in test_web_browser.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx

from porter.web import create_app
from serving import serving
from web_site import EMBARGOED, Site


@contextlib.contextmanager
def _client(site: Site, user: str | None) -> Iterator[httpx.Client]:
    """An HTTP client with ``user``'s session cookie (None: not signed in)."""
    with httpx.Client(follow_redirects=False) as client:
        if user is not None:
            answer = client.post(site.ui("/login"), data={"token": site.tokens[user], "next": "/ui/"})
            assert answer.status_code == 303, answer.text
        yield client


def test_pages_need_sign_in_and_come_back(site: Site) -> None:
    with _client(site, None) as client:
        answer = client.get(site.ui("/releases/DEMO1"))
        assert answer.status_code == 303
        assert answer.headers["location"].endswith("/ui/login?next=%2Fui%2Freleases%2FDEMO1")
        bad = client.post(site.ui("/login"), data={"token": "not-a-token", "next": "/ui/"})
        assert bad.status_code == 401
        assert "token" in bad.text.lower()
        assert "porter_session" not in bad.cookies


def test_sign_in_never_redirects_off_site(site: Site) -> None:
    with _client(site, None) as client:
        for target in ("https://evil.example/", "//evil.example/ui/", "/ui/..//evil"):
            answer = client.post(site.ui("/login"), data={"token": site.tokens["reader"], "next": target})
            assert answer.status_code == 303
            assert answer.headers["location"] == "/ui/", target


def test_embargoed_release_is_invisible_without_its_grant(site: Site) -> None:
    with _client(site, "reader") as reader:
        listing = reader.get(site.ui("/"))
        assert listing.status_code == 200
        assert "DEMO1" in listing.text
        assert EMBARGOED not in listing.text
        direct = reader.get(site.ui(f"/releases/{EMBARGOED}"))
        missing = reader.get(site.ui("/releases/NO-SUCH-RELEASE"))
        assert direct.status_code == missing.status_code == 404
        # the same answer as for a release that does not exist: nothing tells the two apart
        assert direct.text.replace(EMBARGOED, "X") == missing.text.replace("NO-SUCH-RELEASE", "X")
        assert reader.get(site.ui(f"/releases/{EMBARGOED}/checkpoints/catalogs")).status_code == 404
    with _client(site, "embargo-lead") as lead:
        assert EMBARGOED in lead.get(site.ui("/")).text
        assert lead.get(site.ui(f"/releases/{EMBARGOED}")).status_code == 200
    with _client(site, "outsider") as outsider:
        page = outsider.get(site.ui("/"))
        assert page.status_code == 200
        assert "DEMO1" not in page.text and EMBARGOED not in page.text


def test_bad_requests_get_a_page_not_a_trace(site: Site) -> None:
    with _client(site, "reader") as reader:
        for path, status in (
            ("/releases/DEMO1?as_of=yesterday", 400),
            ("/releases/DEMO1?as_of=0", 400),
            ("/releases/DEMO1?as_of=99999999", 400),
            ("/releases/DEMO1/checkpoints/nope", 404),
            ("/no/such/page", 404),
        ):
            answer = reader.get(site.ui(path))
            assert answer.status_code == status, (path, answer.text)
            assert answer.headers["content-type"].startswith("text/html")
            assert "Traceback" not in answer.text and 'data-testid="problem"' in answer.text


def test_a_forged_form_is_refused_and_changes_nothing(site: Site) -> None:
    with _client(site, "release-manager") as manager:
        before = manager.get(site.ui("/releases/DEMO1")).text.count("<tr>")
        answer = manager.post(
            site.ui("/releases/DEMO1/findings"),
            data={"checkpoint": "catalogs", "severity": "major", "text": "forged", "csrf": "0" * 40},
        )
        assert answer.status_code == 403
        assert "CSRF" in answer.text
        assert manager.get(site.ui("/releases/DEMO1")).text.count("<tr>") == before


def test_a_read_only_token_cannot_act(site: Site) -> None:
    with _client(site, "reader") as reader:
        page = reader.get(site.ui("/releases/DEMO1"))
        assert "Record a finding" not in page.text
        assert "(read only)" in page.text


def test_proxy_identity_only_from_a_trusted_proxy(site: Site) -> None:
    """Behind Gafaelfawr the proxy names the person; without --trusted-proxy the same headers are ignored."""
    headers = {"X-Auth-Request-User": "reader", "X-Auth-Request-Groups": "survey"}
    with httpx.Client(follow_redirects=False) as client:
        ignored = client.get(site.ui("/releases/DEMO1"), headers=headers)
        assert ignored.status_code == 303 and "/ui/login" in ignored.headers["location"]
    with (
        serving(site.repo, factory=create_app, trusted_proxies=["127.0.0.1/32"]) as proxied,
        httpx.Client(follow_redirects=False) as client,
    ):
        page = client.get(f"{proxied.url}/ui/releases/DEMO1", headers=headers)
        assert page.status_code == 200 and 'data-testid="user">reader<' in page.text
        hidden = client.get(f"{proxied.url}/ui/releases/{EMBARGOED}", headers=headers)
        assert hidden.status_code == 404

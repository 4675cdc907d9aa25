"""``porter serve``: share a repository over HTTP (FastAPI on uvicorn)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Annotated

import typer

from ._app import RepoArg, app
from ._output import console, handle_errors


@app.command()
@handle_errors
def serve(
    repo: RepoArg,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (127.0.0.1: this machine only).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8080,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", help="Worker processes; each opens the repository (stateless: any may answer)."
        ),
    ] = 1,
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option(
            "--trusted-proxy",
            help="Address or CIDR of a reverse proxy whose X-Auth-Request-User/-Groups headers are trusted "
            "(Rubin's Gafaelfawr); repeatable.  Without it those headers are ignored.",
        ),
    ] = None,
    max_page_size: Annotated[
        int, typer.Option("--max-page-size", help="Most rows in one page of a query.")
    ] = 10_000,
    url_lifetime: Annotated[
        float, typer.Option("--url-lifetime", help="Seconds a signed download URL stays valid.")
    ] = 3600.0,
    query_timeout: Annotated[
        float,
        typer.Option("--query-timeout", help="Seconds one page of a query may run before it is stopped."),
    ] = 300.0,
    concurrent_queries: Annotated[
        int, typer.Option("--concurrent-queries", help="Queries one user may run at once, over all workers.")
    ] = 8,
    requests_per_minute: Annotated[
        int | None,
        typer.Option("--requests-per-minute", help="Requests one user may make a minute (per worker)."),
    ] = None,
    download_bytes_per_day: Annotated[
        int | None, typer.Option("--download-bytes-per-day", help="Bytes one user may download a day (UTC).")
    ] = None,
    path_prefix: Annotated[
        str,
        typer.Option(
            "--path-prefix",
            help="URL path to serve under, e.g. /repo: clients use http://HOST:PORT/repo (or the reverse proxy's "
            "https://host/repo, stripped of the prefix or not).  Signed URLs carry it.",
        ),
    ] = "",
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn's log level.")] = "info",
) -> None:
    """Serve REPO to many users: the Butler API over HTTP, with accounts and per-collection access.

    Clients connect with ``Butler("http://HOST:PORT", token=…)`` (or ``$PORTER_TOKEN``); with
    ``--path-prefix /repo``, ``Butler("http://HOST:PORT/repo", token=…)``.  Create users,
    groups, grants and tokens first with ``porter admin``; a request without a token reads only what
    ``porter admin public`` made public.  OpenAPI is at /openapi.json (docs at /docs), health at /healthz,
    Prometheus metrics at /metrics (with --workers N, of all the workers together).  Several workers, or several servers on one PostgreSQL + S3
    repository, share nothing but the repository.
    """
    import uvicorn

    from ..butler import RepoConfig
    from ..server import MULTIPROC_ENV, check_path_prefix, multiprocess_directory

    prefix = check_path_prefix(path_prefix)
    location = Path(repo).resolve()
    RepoConfig.read(location)  # a clear error for a path that is not a repository, before any worker starts
    config = {
        "repository": str(location),
        "trusted_proxies": list(trusted_proxy or []),
        "max_page_size": max_page_size,
        "url_lifetime": url_lifetime,
        "query_timeout": query_timeout,
        "concurrent_queries": concurrent_queries,
        "requests_per_minute": requests_per_minute,
        "download_bytes_per_day": download_bytes_per_day,
        "path_prefix": prefix,
    }
    os.environ["PORTER_SERVER_CONFIG"] = json.dumps(config)
    console.print(
        f"porter: serving {location} on http://{host}:{port}{prefix} ({workers} worker(s)); Ctrl-C stops."
    )
    with contextlib.ExitStack() as stack:
        if workers > 1 and not os.environ.get(MULTIPROC_ENV):
            # /metrics answers for every worker: they keep their numbers in files there (set before they start)
            os.environ[MULTIPROC_ENV] = str(stack.enter_context(multiprocess_directory(location)))
        uvicorn.run(
            "porter.web:app_from_environment",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            # scheme and host from X-Forwarded-* only from the proxies trusted for identity (and loopback):
            # signed URLs are made from them
            forwarded_allow_ips=",".join(["127.0.0.1", *(trusted_proxy or [])]),
            # a worker imports the dashboard's modules before it serves (porter.web.warm): on a loaded
            # machine that can outlast uvicorn's 5 s ping, which would kill and replace the worker
            timeout_worker_healthcheck=30,
        )

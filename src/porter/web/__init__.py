"""The web dashboard: the release as the page, served by ``porter serve`` beside the API.

Server-rendered pages (Jinja2) over the server's own butler and accounts:
releases with their gates, hand-overs, checks, findings, waivers and audit
trail; metrics against their specifications; the repository's collections and
dataset types.  A viewer sees only what their grants let them read.
"""

from ._app import UI, app_from_environment, create_app, mount_dashboard

__all__ = ["UI", "app_from_environment", "create_app", "mount_dashboard"]

"""``pharmalab serve``: a browser workspace over study results folders — studies, cohorts with
attrition, characterization, forecasts and supply plans, marketing — and studies started from
the browser. A thin layer over the public API and the results folders: it computes nothing of
its own, serves aggregates only, and binds to loopback unless a token is set.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from pathlib import Path

from pharmalab.errors import PharmalabInputError
from pharmalab.web.app import create_app

TOKEN_ENV = "PHARMALAB_WEB_TOKEN"
DEFAULT_PORT = 8787


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(workspace: str | Path = ".", results: list[str | Path] = (), *,
          host: str = "127.0.0.1", port: int = DEFAULT_PORT, token: str | None = None,
          on_start: Callable[[str], None] | None = None) -> None:
    """Serve the workspace until interrupted (uvicorn, one process).

    Parameters
    ----------
    host
        Bind address; 127.0.0.1 by default. Any non-loopback address requires a token.
    token
        Default: the ``PHARMALAB_WEB_TOKEN`` environment variable. Every request must carry it
        when set.
    on_start
        Called with the server's URL once the arguments are checked, before it listens.

    Raises
    ------
    PharmalabInputError
        A non-loopback ``host`` without a token (nothing is started), a token shorter than 16
        characters, or a missing workspace folder.
    """
    import uvicorn

    token = token if token is not None else (os.environ.get(TOKEN_ENV) or None)
    loopback = is_loopback(host)
    if not loopback and not token:
        raise PharmalabInputError(
            f"--host {host} is not a loopback address: set {TOKEN_ENV} (a random string of at "
            "least 16 characters) so that every request must carry it; refusing to start")
    if token is not None and len(token) < 16:
        raise PharmalabInputError(f"{TOKEN_ENV} is too short: use at least 16 characters")
    hosts = {"127.0.0.1", "localhost", "::1", host} if loopback else None
    app = create_app(workspace, list(results), token=token, allowed_hosts=hosts)
    if on_start is not None:
        bare = host.strip("[]")
        on_start(f"http://{'[' + bare + ']' if ':' in bare else bare}:{port}/")
    uvicorn.run(app, host=host, port=port, log_level="warning")


__all__ = ["DEFAULT_PORT", "TOKEN_ENV", "create_app", "is_loopback", "serve"]

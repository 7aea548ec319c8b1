"""The ASGI application of ``pharmalab serve`` (Starlette, Jinja2 templates, Plotly figures
drawn by the plotly.js that ships in the ``plotly`` package: no CDN, works offline).

Security, by default: every route — pages, API, static files, downloads — passes the token
check when a token is set (it must be, on any bind other than loopback); hosts other than the
bind address are refused on loopback (DNS rebinding); POSTs need the page's CSRF header and a
same-origin ``Origin``; uploads are size-limited and parsed as data; files are opened only
through :meth:`Workspace.resolve`. Patient-level files are never served.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import secrets
import threading
import time
from importlib.resources import files
from pathlib import Path
from urllib.parse import urlencode

import jinja2
import pyarrow as pa
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from pharmalab import __version__
from pharmalab.web import explorer, pages, tables
from pharmalab.web.runs import MAX_UPLOAD_BYTES, FieldError, NoSuchRun, Runs, UploadError
from pharmalab.web.workspace import NotInWorkspace, Workspace

TOKEN_COOKIE = "pharmalab_token"
_log = logging.getLogger("pharmalab.web")
#: Errors from reading a damaged or unexpected results file (Arrow, JSON, CSV, encodings).
_UNREADABLE = (OSError, ValueError, KeyError, IndexError, TypeError, RecursionError,
               pa.ArrowException)
CSRF_HEADER = "x-pharmalab-csrf"
_STATIC = Path(str(files("pharmalab.web") / "static"))
_CSP = ("default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' "
        "'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


def _plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


class _Guard:
    """ASGI middleware: token, allowed hosts, CSRF on POST, security headers, timing."""

    def __init__(self, app, *, token: str | None, hosts: set[str] | None, csrf: str):
        self.app, self.token, self.hosts, self.csrf = app, token, hosts, csrf

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        refusal = self._refuse(request)
        if isinstance(refusal, Response):
            return await refusal(scope, receive, send)
        started = time.perf_counter()

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                elapsed = (time.perf_counter() - started) * 1000
                headers += [(b"content-security-policy", _CSP.encode()),
                            (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"same-origin"),
                            (b"x-frame-options", b"DENY"),
                            (b"server-timing", f"app;dur={elapsed:.1f}".encode())]
                if refusal:  # the token came in the query: keep it as a cookie
                    headers.append((b"set-cookie", (
                        f"{TOKEN_COOKIE}={self.token}; HttpOnly; SameSite=Strict; "
                        "Path=/").encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _refuse(self, request: Request) -> Response | bool | None:
        host = _host_name(request.headers.get("host") or "")
        if self.hosts is not None and host not in self.hosts:
            return PlainTextResponse("host not allowed", status_code=400)
        from_query = False
        if self.token is not None:
            given, from_query = _given_token(request)
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return PlainTextResponse("401: a valid token is required (PHARMALAB_WEB_TOKEN: "
                                         "?token=…, or Authorization: Bearer …)",
                                         status_code=401,
                                         headers={"www-authenticate": "Bearer"})
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("origin")
            own = f"{request.url.scheme}://{request.headers.get('host', '')}"
            if origin is not None and origin != own:
                return PlainTextResponse("403: cross-site request refused", status_code=403)
            if not hmac.compare_digest(request.headers.get(CSRF_HEADER, "").encode(),
                                       self.csrf.encode()):
                return PlainTextResponse("403: missing or wrong CSRF header", status_code=403)
        return from_query


def _given_token(request: Request) -> tuple[str, bool]:
    """The token a request carries, and whether it came in the query: ``?token=`` first (a
    new link wins over a stale cookie), then ``Authorization: Bearer`` (any case), then the
    cookie."""
    query = request.query_params.get("token")
    if query:
        return query, True
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), False
    return request.cookies.get(TOKEN_COOKIE, ""), False


def _host_name(header: str) -> str:
    """The host name of a ``Host`` header, without the port: ``[::1]:8787`` → ``::1``."""
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def create_app(workspace: str | Path = ".", results: list[str | Path] = (), *,
               token: str | None = None, allowed_hosts: set[str] | None = None) -> Starlette:
    """The web application over ``workspace`` (and extra ``results`` folders).

    Parameters
    ----------
    workspace
        Folder listed and where browser runs are written (``WORKSPACE/runs``).
    results
        Further folders to list (read only).
    token
        If given, every request must carry it (``Authorization: Bearer``, the cookie set after
        ``?token=``).
    allowed_hosts
        Host names accepted in the ``Host`` header (None: any).

    Raises
    ------
    PharmalabInputError
        If a folder does not exist.
    """
    ws = Workspace(workspace, list(results))
    runs = Runs(ws.home)
    csrf = secrets.token_urlsafe(24)
    env = jinja2.Environment(loader=jinja2.PackageLoader("pharmalab.web", "templates"),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson_script"] = lambda v: json.dumps(v, default=str).replace("</", "<\\/")
    env.globals.update(version=__version__, csrf=csrf, urlencode=urlencode)

    def render(name: str, status_code: int = 200, **context) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**context), status_code=status_code)

    def not_found(request: Request, exc: Exception | None = None) -> HTMLResponse:
        return render("error.html.j2", status_code=404, title="Not found",
                      message="No such page or file in this workspace.")

    def unreadable(request: Request, exc: Exception) -> HTMLResponse:
        # A results file that is damaged, empty or not what this version writes: say so
        # instead of a bare 500 (the server log has the traceback).
        _log.exception("cannot show %s", request.url.path)
        return render("error.html.j2", status_code=500, title="Cannot show this result",
                      message=(f"A results file here could not be read ({type(exc).__name__}: "
                               f"{str(exc)[:300]}). Re-run the step that wrote it; if it "
                               "persists, report it with the server log."))

    async def index(request: Request):
        entries = ws.entries()
        return render("index.html.j2", title="Studies", entries=entries,
                      runs=runs.list(), steps=pages.steps)

    async def study(request: Request):
        entry = ws.entry(request.query_params.get("id", ""))
        if entry.kind == "forecast":
            return RedirectResponse(f"/forecast?{urlencode({'id': entry.id, 'folder': '.'})}",
                                    status_code=303)
        sections = pages.study_sections(ws, entry)
        return render("study.html.j2", title=entry.name, entry=entry, sections=sections,
                      steps=pages.steps(entry), others=[e for e in ws.entries()
                                                        if e.kind == "study" and e.id != entry.id])

    async def forecast(request: Request):
        entry = ws.entry(request.query_params.get("id", ""))
        folder = request.query_params.get("folder", "forecast" if entry.kind == "study" else ".")
        levels = explorer.levels(ws, entry, folder)
        first = next(iter(levels.values()))[0]
        series = request.query_params.get("series") or first
        view = explorer.series_view(ws, entry, folder, series)
        return render("forecast.html.j2", title=f"{entry.name}: {series}", entry=entry,
                      folder=folder, levels=levels, series=series, view=view,
                      children=explorer.children(levels, series))

    async def compare(request: Request):
        a = ws.entry(request.query_params.get("a", ""))
        b = ws.entry(request.query_params.get("b", ""))
        return render("compare.html.j2", title="Compare runs", a=a, b=b,
                      tables=pages.compare(ws, a, b))

    async def download(request: Request):
        entry = ws.entry(request.query_params.get("id", ""))
        path = ws.resolve(entry, request.query_params.get("file", ""))
        return FileResponse(path, filename=path.name, content_disposition_type="attachment")

    async def static(request: Request):
        name = request.path_params["name"]
        known = {"plotly.min.js": _plotly_js(), "app.js": _STATIC / "app.js",
                 "app.css": _STATIC / "app.css"}
        if name not in known:
            return not_found(request)
        return FileResponse(known[name], headers={"cache-control": "max-age=3600"})

    async def new_run(request: Request):
        from pharmalab.study import demo_study_path

        example = demo_study_path().read_text(encoding="utf-8")
        return render("run_new.html.j2", title="Run a study", example=example,
                      max_upload=MAX_UPLOAD_BYTES)

    async def run_page(request: Request):
        state = runs.status(request.path_params["run_id"])
        return render("run_status.html.j2", title=f"Run {state['id']}", run=state)

    async def _upload(request: Request) -> tuple[str, dict[str, str]]:
        size = 0
        chunks = []
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
            raise _TooLarge()
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                raise _TooLarge()
            chunks.append(chunk)
        try:
            body = json.loads(b"".join(chunks).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise UploadError([FieldError("upload", "the upload is not JSON")]) from None
        if not isinstance(body, dict) or not isinstance(body.get("study_toml"), str):
            raise UploadError([FieldError("study_toml", "a study.toml is required")])
        cohorts = body.get("cohorts") or {}
        if not isinstance(cohorts, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in cohorts.items()):
            raise UploadError([FieldError("cohorts", "cohort files must be text")])
        return body["study_toml"], cohorts

    async def api_validate(request: Request):
        study_toml, cohorts = await _upload(request)
        plan = runs.validate(study_toml, cohorts)
        return JSONResponse({"ok": True, "steps": [title for _, title in plan]})

    async def api_submit(request: Request):
        study_toml, cohorts = await _upload(request)
        run_id = runs.submit(study_toml, cohorts)
        return JSONResponse({"ok": True, "id": run_id, "url": f"/runs/{run_id}"},
                            status_code=202)

    async def api_run(request: Request):
        return JSONResponse(runs.status(request.path_params["run_id"]))

    async def api_cancel(request: Request):
        return JSONResponse(runs.cancel(request.path_params["run_id"]))

    async def api_studies(request: Request):
        return JSONResponse([{"id": e.id, "kind": e.kind, "name": e.name, "status": e.status,
                              "when": e.when, "steps": pages.steps(e)} for e in ws.entries()])

    async def upload_error(request: Request, exc: UploadError):
        return JSONResponse({"ok": False, "errors": [e.__dict__ for e in exc.errors]},
                            status_code=400)

    async def too_large(request: Request, exc: Exception):
        return JSONResponse({"ok": False, "errors": [{
            "field": "upload", "message": f"the upload is larger than the limit of "
                                         f"{MAX_UPLOAD_BYTES // 1024} KiB"}]}, status_code=413)

    routes = [
        Route("/", index), Route("/study", study), Route("/forecast", forecast),
        Route("/compare", compare), Route("/download", download),
        Route("/static/{name}", static), Route("/run", new_run),
        Route("/runs/{run_id}", run_page),
        Route("/api/studies", api_studies), Route("/api/validate", api_validate, methods=["POST"]),
        Route("/api/runs", api_submit, methods=["POST"]),
        Route("/api/runs/{run_id}", api_run),
        Route("/api/runs/{run_id}/cancel", api_cancel, methods=["POST"]),
    ]
    app = Starlette(routes=routes, middleware=[
        Middleware(_Guard, token=token, hosts=allowed_hosts, csrf=csrf)],
        exception_handlers={NotInWorkspace: not_found, NoSuchRun: not_found, 404: not_found,
                            **{kind: unreadable for kind in _UNREADABLE},
                            UploadError: upload_error, _TooLarge: too_large},
        lifespan=_lifespan(runs, ws))
    app.state.workspace, app.state.runs, app.state.csrf = ws, runs, csrf
    return app


def _lifespan(runs: Runs, ws: Workspace):
    @contextlib.asynccontextmanager
    async def lifespan(app):
        # The newest forecast folders' series files are read and indexed in the background,
        # so the first series a user opens does not wait for it.
        threading.Thread(target=_warm, args=(ws,), daemon=True).start()
        yield
        runs.close()  # a running study is stopped with the server, and marked failed
    return lifespan


def _warm(ws: Workspace) -> None:
    files = []
    for entry in ws.entries():
        folder = entry.path / "forecast" if entry.kind == "study" else entry.path
        files += [folder / name for name in ("paths.parquet", "forecast.parquet",
                                             "history.parquet", "backtest_forecasts.parquet")
                  if (folder / name).is_file()]
    tables.warm(files)


class _TooLarge(Exception):
    """An upload over :data:`MAX_UPLOAD_BYTES`."""

"""The web layer: a FastAPI app serving the static page and a small JSON API over the Explorer, renders run on the
latest-wins worker, an access token on every request when the server listens beyond this machine."""
from __future__ import annotations

import asyncio
import ipaddress
import itertools
import secrets
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles

from stylelens.errors import StylelensError
from stylelens.serve.explorer import Explorer, NotAllowed
from stylelens.serve.files import MAX_UPLOAD_BYTES
from stylelens.serve.scheduler import LatestWins, Superseded
from stylelens.serve.state import ViewState

STATIC = Path(__file__).with_name('static')
TOKEN_COOKIE = 'stylelens_token'
TOKEN_HEADER = 'x-stylelens-token'
LOOPBACK_NAMES = ['localhost', '127.0.0.1', '::1', '[::1]']


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or address to bind) is reachable from this machine only."""
    if host == 'localhost':
        return True
    try:
        return ipaddress.ip_address(host.strip('[]')).is_loopback
    except ValueError:
        return False


def access_token(host: str) -> str | None:
    """A fresh access token when binding beyond loopback (printed at start-up, checked on every request), else None."""
    return None if is_loopback(host) else secrets.token_urlsafe(24)


def _token_given(request: Request) -> str:
    """The token a request carries: ?token=, the X-Stylelens-Token header, or the cookie the page got."""
    return (request.query_params.get('token') or request.headers.get(TOKEN_HEADER)
            or request.cookies.get(TOKEN_COOKIE) or '')


def create_app(explorer: Explorer, queue: LatestWins, token: str | None = None) -> FastAPI:
    """The app: `/` and `/static` (the page), `/api/...` (JSON). With a token every request must carry it; without
    one only loopback Host headers are served (no DNS rebinding from a web page)."""
    app = FastAPI(title='stylelens explorer', docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware('http')
    async def same_origin(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Refuse requests a browser sends from another site's page (they carry its Origin): no cross-site writes."""
        origin = request.headers.get('origin')
        if origin is not None and urlsplit(origin).netloc != request.headers.get('host'):
            return PlainTextResponse(f'cross-origin request from {origin} refused', status_code=403)
        return await call_next(request)

    if token is None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_NAMES)
    else:
        @app.middleware('http')
        async def check_token(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            """Refuse any request without the token; a page opened with ?token= gets it as a cookie."""
            if not secrets.compare_digest(_token_given(request).encode(), token.encode()):
                return PlainTextResponse('access token required: open the URL `stylelens serve` printed at start-up',
                                         status_code=401)
            response = await call_next(request)
            if request.query_params.get('token'):
                response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite='strict')
            return response

    async def run(lane: str, job: Callable[[], Any]) -> Any:
        """Run `job` on the render worker (latest wins per lane) without blocking the event loop."""
        return await asyncio.wrap_future(queue.submit(lane, job))

    actions = itertools.count()  # snapshots and uploads are actions, each its own lane: none is superseded

    @app.exception_handler(StylelensError)
    async def user_error(request: Request, err: StylelensError) -> JSONResponse:
        """A user error as one line; 403 for a network that may not be opened."""
        return JSONResponse({'error': str(err)}, status_code=403 if isinstance(err, NotAllowed) else 400)

    @app.exception_handler(Superseded)
    async def superseded(request: Request, err: Superseded) -> JSONResponse:
        """A request replaced by a newer one: answered 200 with `superseded`, as it is no failure."""
        return JSONResponse({'superseded': True, 'reason': str(err)})

    @app.get('/')
    async def page() -> FileResponse:
        """The page."""
        return FileResponse(STATIC / 'index.html')

    @app.get('/api/networks')
    async def networks() -> dict[str, Any]:
        """Networks the page may open, and the one opened at start."""
        return dict(networks=explorer.allowed(), default=explorer.config.networks[0])

    @app.get('/api/info')
    async def info(network: str) -> dict[str, Any]:
        """What the page needs to build its controls for a network (opening it if allowed)."""
        return await run('info', lambda: explorer.info(network))

    @app.post('/api/render')
    async def render(state: ViewState) -> dict[str, Any]:
        """The live image and activation view of a state (latest wins)."""
        return await run('render', lambda: explorer.render(state))

    @app.post('/api/grid')
    async def grid(state: ViewState) -> dict[str, Any]:
        """The small style-mixing grid of a state (latest wins)."""
        return await run('grid', lambda: explorer.grid(state))

    @app.post('/api/snapshot')
    async def snapshot(state: ViewState) -> dict[str, Any]:
        """Write a state as CLI commands with its images and manifest."""
        return await run(f'snapshot-{next(actions)}', lambda: explorer.snapshot(state))

    @app.post('/api/wfiles')
    async def upload(network: str, name: str, request: Request) -> dict[str, Any]:
        """Keep an uploaded W file (the raw .npz/.npy as the body) that fits the network; never unpickled."""
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_UPLOAD_BYTES:
                raise StylelensError(f'W file {name!r} is over {MAX_UPLOAD_BYTES} bytes: not accepted')
        return await run(f'upload-{next(actions)}', lambda: explorer.upload(network, name, bytes(data)))

    app.mount('/static', StaticFiles(directory=STATIC), name='static')
    return app


def run_server(explorer: Explorer, host: str, port: int, token: str | None) -> None:
    """Run the app with uvicorn until Ctrl-C; the render worker stops with it."""
    import uvicorn

    queue = LatestWins()
    try:
        uvicorn.run(create_app(explorer, queue, token), host=host, port=port, log_level='warning')
    finally:
        queue.close()

"""A small loopback HTTP server for tests (tornado in a background thread).

``LoopbackServer(root)`` serves the files under ``root`` at ``http://127.0.0.1:<port>/``
with tornado's :class:`~tornado.web.StaticFileHandler`, which honours HTTP ``Range``
requests (206 Partial Content) the way cloud object stores do — so GDAL's ``/vsicurl/``
reads only the byte ranges it needs, as it would from Azure Blob Storage.

Extras for tests:

* ``server.requests``: every request seen, as ``(method, path, query, range header)``;
* ``server.authorize``: optional ``callable(request) -> bool``; a request it rejects
  gets HTTP 403 (a stand-in for an expired shared-access signature);
* ``/truncated/<name>``: sends the headers of ``<name>`` with its full
  ``Content-Length`` but only the first half of the bytes, then drops the connection
  (an interrupted download);
* ``extra_handlers``: more tornado ``(pattern, handler, kwargs)`` rules, e.g. a fake
  STAC API.

The server shares the test's process: read from it with GDAL's
``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR`` (as odc-stac's cloud defaults do), because a
directory listing made on open holds the GIL and would wait for this thread forever.

Use it as a context manager::

    with LoopbackServer(tmp_path) as server:
        url = server.url("file.tif")
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import tornado.httpserver
import tornado.netutil
import tornado.web


class _Recorder:
    def prepare(self):  # called by tornado before get/head/post
        server = self.settings["loopback"]
        req = self.request
        server.requests.append(
            (req.method, req.path, req.query, req.headers.get("Range"))
        )
        if server.authorize is not None and not server.authorize(req):
            raise tornado.web.HTTPError(403, reason="signature expired")


class _StaticHandler(_Recorder, tornado.web.StaticFileHandler):
    pass


class _TruncatedHandler(_Recorder, tornado.web.RequestHandler):
    def initialize(self, path: str) -> None:
        self.root = Path(path)

    async def get(self, name: str) -> None:
        data = (self.root / name).read_bytes()
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Length", str(len(data)))
        self.write(data[: len(data) // 2])
        await self.flush()
        self.request.connection.stream.close()
        self._finished = True  # the connection is gone: nothing more to send


class LoopbackServer:
    """Serve ``root`` over HTTP on 127.0.0.1 (a free port) in a daemon thread."""

    def __init__(self, root: str | Path, extra_handlers: list | tuple = ()):
        self.root = Path(root)
        self.requests: list[tuple[str, str, str, str | None]] = []
        self.authorize = None
        self._extra = list(extra_handlers)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.port: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, name: str) -> str:
        """URL of the file ``name`` (relative to ``root``)."""
        return f"{self.base_url}/files/{name}"

    def _app(self) -> tornado.web.Application:
        handlers = [
            *self._extra,
            (r"/truncated/(.*)", _TruncatedHandler, {"path": str(self.root)}),
            (r"/files/(.*)", _StaticHandler, {"path": str(self.root)}),
        ]
        return tornado.web.Application(handlers, loopback=self)

    def _run(self, sockets) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        server = tornado.httpserver.HTTPServer(self._app())
        server.add_sockets(sockets)
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            server.stop()
            loop.run_until_complete(server.close_all_connections())
            loop.close()

    def start(self) -> "LoopbackServer":
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        self._thread = threading.Thread(target=self._run, args=(sockets,), daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the loopback server did not start within 10 s")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> "LoopbackServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

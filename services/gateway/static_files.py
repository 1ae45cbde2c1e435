"""The web client's files, read once at start (a handful of small files) and served from memory."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from aiohttp import web

from services.gateway import admin
from services.gateway.httputil import respond


class StaticFiles:
    def __init__(self, folder: Path) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        if folder.is_dir():
            for path in folder.iterdir():
                if path.is_file() and not path.name.startswith("."):
                    ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                    if ctype.startswith("text/") or ctype.endswith("javascript"):
                        ctype += "; charset=utf-8"
                    self.files[path.name] = (path.read_bytes(), ctype)

    async def handle(self, request: web.Request) -> web.Response:
        """Serve one of the bundled web-client files."""
        path = request.path
        name = "index.html" if path in ("/", "/index.html") else path.removeprefix("/static/").lstrip("/")
        if name not in self.files or "/" in name:
            return respond(404, b"not found\n")
        body, ctype = self.files[name]
        # The admin page has inline script and style: it keeps its own (admin) policy wherever it is reached.
        extra = {k: v for k, v in admin.PAGE_HEADERS.items() if k != "Content-Type"} if name == "admin.html" else None
        return respond(200, body, ctype, extra)

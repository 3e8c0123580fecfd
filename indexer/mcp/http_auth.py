"""The credential of ``indexer mcp --http``: a bearer token every request must carry.

Loopback is not a boundary between the accounts of one machine: any local user can connect
to 127.0.0.1. So the HTTP server answers only requests whose ``Authorization`` header is
``Bearer <token>``, where the token is made once (256 random bits) and kept in
``mcp-http.token`` in the user's data directory (0600), shown by ``indexer mcp --http
--print-config`` for the client's configuration. Host and Origin are still checked by the SDK
(DNS rebinding, cross-site requests). stdio needs none of this: the client starts the server
as the same user.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import stat
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from indexer.config import Config
from indexer.errors import ConfigError
from indexer.paths import PRIVATE_FILE, private_dir

TOKEN_FILE = "mcp-http.token"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def token_path(config: Config) -> Path:
    return config.data_dir / TOKEN_FILE


def http_token(path: Path) -> str:
    """The token kept at ``path``, made (0600) on first use. A token file other users could
    read, or one of another user, is refused: its token is no longer a secret."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE)
    except FileExistsError:
        return _read_token(path)
    try:
        os.fchmod(fd, PRIVATE_FILE)
        os.write(fd, (secrets.token_urlsafe(32) + "\n").encode("ascii"))  # 44 bytes: one write
    finally:
        os.close(fd)
    return _read_token(path)


def _read_token(path: Path) -> str:
    st = path.stat()
    if st.st_uid != os.getuid():
        raise ConfigError(f"the MCP token file {path} belongs to uid {st.st_uid}, not to you: delete it")
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise ConfigError(f"the MCP token file {path} is readable by other users: delete it (a new token is "
                          "made on the next start; update your clients with `indexer mcp --http --print-config`)")
    token = path.read_text(encoding="ascii").strip()
    if len(token) < 32:
        raise ConfigError(f"the MCP token file {path} holds no usable token: delete it (a new one is made on the next start)")
    return token


class BearerAuth:
    """ASGI middleware: HTTP requests without ``Authorization: Bearer <token>`` get 401, before
    the MCP app sees them; the app's lifespan passes through."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode("ascii")

    def authorized(self, scope: Scope) -> bool:
        given = next((value for name, value in scope.get("headers", ()) if name.lower() == b"authorization"), b"")
        return hmac.compare_digest(bytes(given), self._expected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" or self.authorized(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # a websocket: closed unanswered
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"error": "unauthorized: send the header `Authorization: Bearer <token>`; "
                                    "`indexer mcp --http --print-config` shows it"}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b'Bearer realm="indexer"')]})
        await send({"type": "http.response.body", "body": body})

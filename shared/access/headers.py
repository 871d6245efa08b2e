"""Security headers for the dashboard's pages and everything else a browser loads from us: no
framing (clickjacking), scripts and styles only from our own origin, no MIME sniffing, no
referrer leaking a page's query (which can hold a customer code) to other sites."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    b"content-security-policy",
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    b" connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self';"
    b" frame-ancestors 'none'",
)
HEADERS = (
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)
# The API description pages (FastAPI's and faststream's) load their viewers from a CDN with
# inline scripts; they hold no data, so they go without the dashboard's script policy.
DOC_PAGES = frozenset({"/docs", "/redoc", "/asyncapi", "/docs/oauth2-redirect"})


class SecurityHeaders:
    """ASGI middleware adding the headers to every HTTP response (a plain ASGI wrapper: it
    leaves streamed downloads streaming)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        wanted = HEADERS if scope["path"] in DOC_PAGES else (CSP, *HEADERS)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in wanted if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)

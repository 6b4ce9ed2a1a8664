"""One POST to one endpoint, bounded: a total timeout (a silent or trickling receiver), a
cap on the answer read (a huge one), no redirects, the address guard. The request is the
user's format's (rssd/webhooks/formats.py); Standard Webhooks signing for ``standard``
only, the service's token header for gotify and ntfy. Returns an ``Answer`` for the pure
rules; never raises except CancelledError."""

from __future__ import annotations

import asyncio
import time
from types import TracebackType

import aiohttp
from aiohttp.abc import AbstractResolver
from msgspec import Struct
from yarl import URL

from rssd.models.redact import redact
from rssd.models.users import UserConfig, WebhooksConfig, WebhookSecret
from rssd.webhooks import signing
from rssd.webhooks.formats import render, with_token
from rssd.webhooks.guard import AddressRefused, GuardedResolver, check_literal
from rssd.webhooks.rules import Answer, read_answer

#: Only the status and Retry-After matter; this much of the body is read so the
#: connection can be reused, a longer answer closes it.
MAX_ANSWER_BYTES = 64 * 1024
MAX_ERROR_CHARS = 300
#: How much of the answer is kept for the rules and for ``rssd users test``.
KEPT_ANSWER_BYTES = 4096


class Exchange(Struct, frozen=True):
    """One attempt: the rules' answer and the start of the receiver's reply."""

    answer: Answer
    reply: bytes = b""


class Sender:
    """Owns the webhooks' ClientSession (its own connector: the guard is per session)."""

    def __init__(
        self,
        settings: WebhooksConfig,
        user_agent: str,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.settings = settings
        self.user_agent = user_agent
        #: The name lookup under the guard (tests name hosts with their own).
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        #: Sessions replaced by a reload: closed at the end, so their requests finish.
        self._retired: list[aiohttp.ClientSession] = []

    async def __aenter__(self) -> Sender:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(self.settings.allow_private_networks, self._resolver),
                limit=100,
                limit_per_host=10,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, trust_env=False, headers={"User-Agent": self.user_agent}
            )
        return self._session

    async def reconfigure(self, settings: WebhooksConfig, user_agent: str) -> None:
        """A reload: a changed guard or agent needs a new session; requests in flight on
        the old one finish there."""
        changed = (
            settings.allow_private_networks != self.settings.allow_private_networks
            or user_agent != self.user_agent
        )
        self.settings, self.user_agent = settings, user_agent
        if changed and self._session is not None:
            self._retired.append(self._session)
            self._session = None

    async def close(self) -> None:
        sessions = [*self._retired, *([self._session] if self._session else [])]
        self._session, self._retired = None, []
        for session in sessions:
            await session.close()

    async def send(self, url: str, secret: WebhookSecret, message_id: str, body: bytes) -> Answer:
        """A ``standard`` message, signed with ``secret``."""
        headers = signing.headers(secret, message_id, int(time.time()), body)
        return (await self._post(url, headers, body, "standard")).answer

    async def deliver(self, user: UserConfig, message_id: str, body: str) -> Answer:
        """A stored message to ``user``, in the user's format."""
        return (await self.exchange(user, message_id, body)).answer

    async def exchange(self, user: UserConfig, message_id: str, body: str) -> Exchange:
        """As ``deliver``, with the start of the reply (``rssd users test`` shows it)."""
        try:
            token = user.token
            url = with_token(user.format, user.webhook_url, token.text() if token else None)
            request = render(user.format, url, body)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return Exchange(Answer(None, f"cannot build the {user.format} message: {exc}"))
        headers: dict[str, str] = {}
        if user.format == "standard":
            headers = signing.headers(
                user.signing_secret, message_id, int(time.time()), request.body
            )
        elif token is not None and user.format == "gotify":
            headers["X-Gotify-Key"] = token.text()
        elif token is not None and user.format == "ntfy":
            headers["Authorization"] = f"Bearer {token.text()}"
        headers["Content-Type"] = request.content_type
        return await self._post(request.url, headers, request.body, user.format)

    async def _post(self, url: str, headers: dict[str, str], body: bytes, fmt: str) -> Exchange:
        try:
            host = URL(url).raw_host or ""
            check_literal(host, self.settings.allow_private_networks)
            headers.setdefault("Content-Type", "application/json")
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
            async with self._open().post(
                url, data=body, headers=headers, allow_redirects=False, timeout=timeout
            ) as response:
                reply = await _drain(response)
                retry_after = response.headers.get("Retry-After")
                return Exchange(read_answer(fmt, response.status, retry_after, reply), reply)
        except asyncio.CancelledError:
            raise
        except AddressRefused as exc:
            return Exchange(Answer(None, str(exc)))
        except aiohttp.ClientConnectorError as exc:
            cause = exc.os_error
            if isinstance(cause, AddressRefused):
                return Exchange(Answer(None, str(cause)))
            return Exchange(Answer(None, _short(redact(f"connection failed: {cause}"))))
        except TimeoutError:
            return Exchange(Answer(None, f"timeout after {self.settings.timeout_seconds:g} s"))
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return Exchange(Answer(None, _short(redact(f"{type(exc).__name__}: {exc}"))))


async def _drain(response: aiohttp.ClientResponse) -> bytes:
    """Read at most MAX_ANSWER_BYTES, keep the first KEPT_ANSWER_BYTES; a longer answer
    is cut by closing the connection."""
    left = MAX_ANSWER_BYTES
    kept = bytearray()
    while left > 0:
        chunk = await response.content.read(min(left, 16 * 1024))
        if not chunk:
            return bytes(kept)
        if len(kept) < KEPT_ANSWER_BYTES:
            kept += chunk[: KEPT_ANSWER_BYTES - len(kept)]
        left -= len(chunk)
    if not response.content.at_eof():
        response.close()
    return bytes(kept)


def _short(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"

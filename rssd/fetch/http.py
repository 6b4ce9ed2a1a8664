"""The bounded HTTP GET: conditional, size-capped after decompression, redirects by hand.

aiohttp has no cap on a decompressed body (a 1 MB gzip body can inflate to 1 GB), so bodies
are fetched with ``auto_decompress=False`` and inflated here with ``max_length``: memory
stays within ``max_bytes`` whatever the server sends. Redirects are followed by hand so
that each hop's scheme is checked, permanent moves are noticed, and a public server cannot
send rssd into a private network (rssd.net.addresses): the target's addresses are checked
before connecting, and the address really connected to before reading the response.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from collections.abc import Callable, Mapping

import aiohttp
from msgspec import Struct, field
from multidict import CIMultiDictProxy
from yarl import URL

from rssd.fetch.digest import content_digest
from rssd.fetch.inflate import InflateError, Inflater
from rssd.models.dto import ErrorCode
from rssd.models.urls import parsed_url
from rssd.net.addresses import AddressClass, IPAddress, address_class, crossing, parse_address
from rssd.net.numeric import numeric_host_refusal
from rssd.net.resolver import DaemonThreadResolver

#: Resolves a redirect target's host to check where it points before connecting.
_RESOLVER = DaemonThreadResolver()
REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: Request headers never sent on to another origin by a redirect.
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
PERMANENT_REDIRECTS = frozenset({301, 308})
#: Response headers kept for the scheduler.
HINT_HEADERS = ("Retry-After", "Cache-Control", "Expires")
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/rdf+xml;q=0.9, application/xml;q=0.8, text/xml;q=0.8, "
    "application/json;q=0.8, */*;q=0.1"
)


class FetchError(Exception):
    """A fetch that failed, with the error code (rssd.models.codes) it maps to."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        http_status: int | None = None,
        final_url: str | None = None,
        headers: CIMultiDictProxy[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status
        self.final_url = final_url
        self.headers = headers


class HttpResponse(Struct, frozen=True):
    """A 200 (body read, decompressed and hashed) or a 304 (no body)."""

    status: int
    final_url: str
    etag: str | None
    last_modified: str | None
    content_type: str | None
    body: bytes = b""
    content_hash: str | None = None
    #: Bytes after decompression (what was counted against the cap).
    size: int = 0
    #: True when every redirect on the way was permanent (301/308) and there was one.
    moved_permanently: bool = False
    #: Scheduling hints the server sent (Retry-After, Cache-Control, Expires).
    hints: Mapping[str, str] = field(default_factory=dict)

    @property
    def not_modified(self) -> bool:
        return self.status == 304


class RequestLimits(Struct, frozen=True):
    timeout: float
    max_bytes: int
    max_redirects: int


class NetworkPolicy(Struct, frozen=True):
    """Where redirects may lead (rssd.net.addresses). ``classify`` is the address
    classification; tests on loopback pass one that names a loopback address "global",
    as the stand-in for a public server."""

    allow_private: bool = False
    classify: Callable[[IPAddress], AddressClass] = address_class


#: The default policy: public addresses only.
PUBLIC_ONLY = NetworkPolicy()


async def get(
    session: aiohttp.ClientSession,
    url: str,
    limits: RequestLimits,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    user_agent: str | None = None,
    headers: Mapping[str, str] | None = None,
    network: NetworkPolicy = PUBLIC_ONLY,
    moved_from: str | None = None,
) -> HttpResponse:
    """GET ``url`` within ``limits``; raise FetchError for every failure.

    ``headers``: the feed's own (a token): sent to ``url``'s origin only, dropped when a
    redirect leaves it, so a token is never handed to another host.
    ``moved_from``: the configured URL, when ``url`` is where its permanent redirects (or
    its page) led. ``url`` then came from a server, not the operator, and is checked as a
    redirect hop.
    """
    extra = dict(headers or {})
    headers = {"Accept": ACCEPT, "Accept-Encoding": "gzip, deflate"}
    if user_agent:
        headers["User-Agent"] = user_agent
    # Checked again on the way out: a database written by an older rssd may hold one.
    if etag := sendable_validator(etag):
        headers["If-None-Match"] = etag
    if last_modified := sendable_validator(last_modified):
        headers["If-Modified-Since"] = last_modified
    current = parsed_url(url)
    try:
        async with asyncio.timeout(limits.timeout):
            return await _follow(
                session,
                current,
                headers,
                limits,
                extra=extra,
                network=network,
                moved_from=moved_from,
            )
    except FetchError:
        raise
    except TimeoutError:
        raise FetchError(
            ErrorCode.TIMEOUT, f"no complete response within {limits.timeout:g}s"
        ) from None
    except aiohttp.ClientError as exc:
        raise _client_error(exc) from exc
    except (ssl.SSLError, ssl.CertificateError) as exc:
        raise FetchError(ErrorCode.TLS, f"TLS error: {exc}") from exc
    except (ConnectionError, OSError) as exc:
        raise FetchError(ErrorCode.CONNECTION, f"{type(exc).__name__}: {exc}") from exc
    except ValueError as exc:  # yarl/aiohttp refusing a malformed URL or header
        raise FetchError(ErrorCode.HTTP_ERROR, f"invalid response: {exc}") from exc


async def _follow(
    session: aiohttp.ClientSession,
    url: URL,
    headers: dict[str, str],
    limits: RequestLimits,
    *,
    extra: dict[str, str],
    network: NetworkPolicy,
    moved_from: str | None,
) -> HttpResponse:
    hops = 0
    permanent = True
    origin = url.origin()
    #: The class of the server whose redirect led here (None: the configured URL, which
    #: the operator chose and which is trusted wherever it is).
    redirected_by: AddressClass | None = None
    _refuse_numeric(url, None)
    if moved_from is not None and not network.allow_private and url.scheme in ("http", "https"):
        redirected_by = await _host_class(URL(moved_from), network)
        targets = await _target_classes(url, network)
        _refuse_crossing(redirected_by, targets, url, network, 301)
    while True:
        if url.scheme not in ("http", "https"):
            raise FetchError(
                ErrorCode.HTTP_ERROR, f"redirected to a non-http(s) URL: {url}", final_url=str(url)
            )
        sent = {**extra, **headers} if extra and url.origin() == origin else headers
        async with session.get(url, headers=sent, allow_redirects=False) as resp:
            here = AddressClass.GLOBAL
            guarded = not network.allow_private
            if guarded and (redirected_by is not None or resp.status in REDIRECTS):
                here = await _peer_class(resp, url, network)
            if guarded and redirected_by is not None:
                # Checked again on the connection really made (DNS may answer differently
                # the second time), before a byte of the body is read.
                _refuse_crossing(redirected_by, [here], url, network, resp.status)
            if resp.status in REDIRECTS:
                location = resp.headers.get("Location")
                if not location:
                    raise FetchError(
                        ErrorCode.HTTP_ERROR,
                        f"HTTP {resp.status} without a Location header",
                        http_status=resp.status,
                        final_url=str(url),
                    )
                hops += 1
                if hops > limits.max_redirects:
                    raise FetchError(
                        ErrorCode.TOO_MANY_REDIRECTS,
                        f"more than {limits.max_redirects} redirects (last to {location})",
                        http_status=resp.status,
                        final_url=str(url),
                    )
                permanent = permanent and resp.status in PERMANENT_REDIRECTS
                target = url.join(URL(location))
                _refuse_numeric(target, resp.status)
                if target.scheme in ("http", "https"):  # others are refused at the top
                    headers = _check_hop(url, target, headers, resp.status)
                    if guarded:
                        targets = await _target_classes(target, network)
                        _refuse_crossing(here, targets, target, network, resp.status)
                url, redirected_by = target, here
                continue
            return await _finish(resp, url, limits, moved=hops > 0 and permanent)


def _refuse_numeric(url: URL, status: int | None) -> None:
    """Refuse a host in a numeric form other than the dotted quad (rssd.net.numeric): the
    resolver would read ``127.1`` as loopback where the address checks see a name."""
    host = url.raw_host or ""
    refused = numeric_host_refusal(host) or numeric_host_refusal(url.host or "")
    if refused:
        what = "redirect refused" if status is not None else "refused"
        raise FetchError(
            ErrorCode.HTTP_ERROR, f"{what}: {refused}", http_status=status, final_url=str(url)
        )


def _check_hop(url: URL, target: URL, headers: dict[str, str], status: int) -> dict[str, str]:
    """The headers for a redirect from ``url`` to ``target``: no https -> http downgrade,
    and no credentials for another origin (a URL's userinfo already stays behind:
    ``join`` drops it for another host)."""
    if url.scheme == "https" and target.scheme == "http":
        raise FetchError(
            ErrorCode.HTTP_ERROR,
            f"redirect from https to plain http refused: {target}",
            http_status=status,
            final_url=str(url),
        )
    if target.origin() == url.origin():
        return headers
    return {
        name: value for name, value in headers.items() if name.lower() not in CREDENTIAL_HEADERS
    }


async def _peer_class(
    resp: aiohttp.ClientResponse, url: URL, network: NetworkPolicy
) -> AddressClass:
    """The class of the address the response came from. aiohttp releases the connection
    of a bodiless response (a redirect) at once, so the transport may be gone: then the
    host's addresses decide, global if any is (the stricter side for a redirect source)."""
    connection = resp.connection
    protocol = connection.protocol if connection is not None else getattr(resp, "_protocol", None)
    transport = getattr(protocol, "transport", None)
    peer = transport.get_extra_info("peername") if transport is not None else None
    address = parse_address(str(peer[0])) if peer else None
    if address is not None:
        return network.classify(address)
    return await _host_class(url, network)


async def _host_class(url: URL, network: NetworkPolicy) -> AddressClass:
    """The class of a server known by its URL only: global if any of its addresses is."""
    classes = await _target_classes(url, network)
    if not classes or any(kind.is_global for kind in classes):
        return AddressClass.GLOBAL
    return classes[0]


async def _target_classes(url: URL, network: NetworkPolicy) -> list[AddressClass]:
    """The classes of every address the URL's host stands for (before connecting to it)."""
    host = url.host or ""
    literal = parse_address(host)
    if literal is not None:
        return [network.classify(literal)]
    try:
        results = await _RESOLVER.resolve(host, url.port or 0, family=socket.AF_UNSPEC)
    except OSError:
        return []  # the request itself then fails with a DNS error
    addresses = [parse_address(result["host"]) for result in results]
    return [network.classify(address) for address in addresses if address is not None]


def _refuse_crossing(
    redirected_by: AddressClass,
    targets: list[AddressClass],
    target: URL,
    network: NetworkPolicy,
    status: int,
) -> None:
    """Raise if a redirect from a server at ``redirected_by`` leads into ``targets``
    (rssd.net.addresses.crossing). The message names the redirect's target and the kind
    of address, never anything the private server sent."""
    refused = crossing(redirected_by, targets, allow_private=network.allow_private)
    if refused is None:
        return
    raise FetchError(
        ErrorCode.HTTP_ERROR,
        f"redirect from a public address to a {refused} address refused: {target} "
        f"(allow_private_networks = true in config.toml permits it)",
        http_status=status,
        final_url=str(target),
    )


async def _finish(
    resp: aiohttp.ClientResponse, url: URL, limits: RequestLimits, *, moved: bool
) -> HttpResponse:
    status = resp.status
    if status == 304:
        return HttpResponse(
            status=304,
            final_url=str(url),
            etag=sendable_validator(resp.headers.get("ETag")),
            last_modified=sendable_validator(resp.headers.get("Last-Modified")),
            content_type=None,
            moved_permanently=moved,
            hints=hints(resp.headers),
        )
    if status >= 300 or status < 200:
        raise FetchError(
            _status_code(status),
            f"HTTP {status} {resp.reason or ''}".strip(),
            http_status=status,
            final_url=str(url),
            headers=resp.headers,
        )
    body = await read_bounded(resp, limits.max_bytes)
    return HttpResponse(
        status=status,
        final_url=str(url),
        etag=sendable_validator(resp.headers.get("ETag")),
        last_modified=sendable_validator(resp.headers.get("Last-Modified")),
        content_type=resp.headers.get("Content-Type"),
        body=body,
        content_hash=content_digest(body),
        size=len(body),
        moved_permanently=moved,
        hints=hints(resp.headers),
    )


#: Longer validators are not kept: real ETags and dates are well under 200 characters.
MAX_VALIDATOR_CHARS = 1024
#: Printable ASCII and tab: what a header value can carry back unchanged (a regex: a
#: per-character check showed in a warm pass's profile).
_SENDABLE = re.compile("[\t -~]+")


def sendable_validator(value: str | None) -> str | None:
    """``value`` if it can go back in a request header as it came, else None.

    A validator holding a control character (``"a\x7fb"``, an ESC) or anything outside
    printable ASCII (``"\xe9"``) cannot be sent: aiohttp refuses it, or fails to encode
    it, on every later request, and the feed would never be fetched again. Not keeping
    it costs one unconditional 200, never the feed.
    """
    if not value or len(value) > MAX_VALIDATOR_CHARS:
        return None
    return value if _SENDABLE.fullmatch(value) else None


def hints(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The response headers that tell a polite client when to come back."""
    if not headers:
        return {}
    return {name: headers[name] for name in HINT_HEADERS if name in headers}


def _status_code(status: int) -> ErrorCode:
    if status == 429:
        return ErrorCode.RATE_LIMITED
    if status == 410:
        return ErrorCode.GONE
    return ErrorCode.HTTP_ERROR


async def read_bounded(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """Read the body, inflating gzip/deflate here, never holding more than ``max_bytes``."""
    too_large = FetchError(
        ErrorCode.TOO_LARGE,
        f"body larger than {max_bytes} bytes (after decompression)",
        http_status=resp.status,
        final_url=str(resp.url),
    )
    declared = resp.content_length
    encoding = (resp.headers.get("Content-Encoding") or "identity").strip().lower()
    if declared is not None and declared > max_bytes:
        raise too_large
    try:
        inflater = None if encoding in ("identity", "") else Inflater(encoding)
        parts: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(65536):
            pieces = [chunk] if inflater is None else inflater.feed(chunk, max_bytes - size + 1)
            for piece in pieces:
                size += len(piece)
                if size > max_bytes:
                    raise too_large
                parts.append(piece)
        if inflater is not None:
            tail = inflater.finish()
            size += len(tail)
            if size > max_bytes:
                raise too_large
            parts.append(tail)
    except InflateError as exc:
        raise FetchError(
            ErrorCode.HTTP_ERROR, str(exc), http_status=resp.status, final_url=str(resp.url)
        ) from exc
    return b"".join(parts)


def _client_error(exc: aiohttp.ClientError) -> FetchError:
    """Map aiohttp's exception tree onto the error codes of rssd.models.codes."""
    if isinstance(exc, aiohttp.TooManyRedirects):
        return FetchError(ErrorCode.TOO_MANY_REDIRECTS, str(exc))
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return FetchError(ErrorCode.DNS, f"cannot resolve host: {exc.os_error}")
    if isinstance(exc, aiohttp.ClientSSLError | aiohttp.ServerFingerprintMismatch):
        return FetchError(ErrorCode.TLS, f"TLS error: {exc}")
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return FetchError(ErrorCode.HTTP_ERROR, f"invalid URL: {exc}")
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return FetchError(ErrorCode.TIMEOUT, f"timed out: {exc}")
    return FetchError(ErrorCode.CONNECTION, f"{type(exc).__name__}: {exc}")

"""The public HTTP endpoints providers call: a call's events and its instructions.

These are reached from the internet, not by the platform's services: no hub token, the
call's URL token and the provider's signature instead (events.py), for the media
websocket too (Twilio signs its handshake; checked before the upgrade). Bodies are bounded;
a refused request is answered with its status and a short plain-text reason, and
nothing of it is stored.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from callers import errors as caller_errors
from callers import registry
from callers import types as t
from callers.base import Capability
from integration_hub import metrics
from integration_hub.store.base import StoreUnavailable
from integration_hub.telephony import urls as call_urls
from integration_hub.telephony.events import CallEvents, WebhookRefused, forbidden
from integration_hub.telephony.media_provider import MAX_PROVIDER_MESSAGE as MAX_MEDIA_MESSAGE
from integration_hub.telephony.media_provider import ProviderLeg

log = logging.getLogger("integration_hub.telephony")
MAX_WEBHOOK_BYTES = 64 * 1024
FORM = "application/x-www-form-urlencoded"


async def read_webhook(request: web.Request, urls: call_urls.CallUrls) -> t.WebhookRequest:
    """The request as a caller checks it: the public URL the provider used, lower-case
    headers, the body (bounded) and its form fields (or the query of a GET)."""
    if request.content_length is not None and request.content_length > MAX_WEBHOOK_BYTES:
        raise WebhookRefused(413, f"body over {MAX_WEBHOOK_BYTES} bytes")
    body = await request.content.read(MAX_WEBHOOK_BYTES + 1)
    if len(body) > MAX_WEBHOOK_BYTES:
        raise WebhookRefused(413, f"body over {MAX_WEBHOOK_BYTES} bytes")
    headers = {name.lower(): value for name, value in request.headers.items()}
    if request.method == "GET":
        form = dict(request.query)
    elif request.content_type == FORM:
        try:
            form = dict(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body)))
        except (UnicodeDecodeError, ValueError):
            raise WebhookRefused(400, "malformed form body") from None
    else:
        form = {}
    return t.WebhookRequest(
        method=request.method, url=urls.public(request.raw_path), headers=headers, body=body, form=form
    )


def _refused(exc: WebhookRefused, endpoint: str) -> web.Response:
    metrics.WEBHOOK_REJECTIONS.labels(endpoint, str(exc.status)).inc()
    return web.Response(status=exc.status, text=exc.message + "\n")


class TelephonyWebhooks:
    def __init__(self, events: CallEvents, urls: call_urls.CallUrls | None, media_dir: str) -> None:
        self._events = events
        self._urls = urls
        self._media_dir = media_dir

    def routes(self) -> list[web.RouteDef]:
        calls = f"{call_urls.PREFIX}/calls/{{call_id}}/{{token}}"
        return [
            web.route("POST", f"{calls}/events", self.events),
            web.route("GET", f"{calls}/events", self.events),
            web.route("POST", f"{calls}/answer", self.answer),
            # GET answers HEAD too: Exotel's Greeting applet asks with HEAD first.
            web.get(f"{calls}/answer", self.answer),
            web.get(f"{calls}/media", self.media),
            # Providers whose instruction URL is fixed per account (an Exotel flow's
            # dynamic applet URL) name the call in the request instead of the path.
            web.route("POST", f"{call_urls.PREFIX}/{{provider}}/answer", self.provider_answer),
            web.get(f"{call_urls.PREFIX}/{{provider}}/answer", self.provider_answer),
        ]

    def _public(self) -> call_urls.CallUrls:
        if self._urls is None:
            raise WebhookRefused(503, "HUB_PUBLIC_URL is not set")
        return self._urls

    async def events(self, request: web.Request) -> web.Response:
        try:
            webhook = await read_webhook(request, self._public())
            await self._events.receive(request.match_info["call_id"], request.match_info["token"], webhook)
        except WebhookRefused as exc:
            return _refused(exc, "events")
        except StoreUnavailable:
            # The provider retries a failed callback (Twilio, Vonage): nothing is lost.
            return web.Response(status=503, text="store unavailable, retry later\n")
        return web.Response(status=200)

    async def answer(self, request: web.Request) -> web.Response:
        try:
            urls = self._public()
            webhook = await read_webhook(request, urls)
            instructions = await self._events.answer(
                request.match_info["call_id"], request.match_info["token"], webhook, urls
            )
        except WebhookRefused as exc:
            return _refused(exc, "answer")
        except StoreUnavailable:
            return web.Response(status=503, text="store unavailable, retry later\n")
        return web.Response(body=instructions.body, headers={"Content-Type": instructions.content_type})

    async def provider_answer(self, request: web.Request) -> web.Response:
        try:
            urls = self._public()
            webhook = await read_webhook(request, urls)
            call_id, token = call_reference(request.match_info["provider"], webhook)
            instructions = await self._events.answer(call_id, token, webhook, urls)
        except WebhookRefused as exc:
            return _refused(exc, "provider_answer")
        except StoreUnavailable:
            return web.Response(status=503, text="store unavailable, retry later\n")
        return web.Response(body=instructions.body, headers={"Content-Type": instructions.content_type})

    async def media(self, request: web.Request) -> web.StreamResponse:
        """The provider's live-audio websocket of a call: authenticated by the URL token,
        then by the provider's signature of the opening request where it signs one
        (Twilio); refused before the upgrade otherwise."""
        try:
            urls = self._public()
            row = await self._events.authenticated_call(
                request.match_info["call_id"], request.match_info["token"]
            )
            if row.action.get("kind") != t.CallActionKind.MEDIA_STREAM.value:
                raise WebhookRefused(404, "this call has no media stream")
            if t.CallStatus(row.status).terminal:
                raise WebhookRefused(410, "the call has ended")
            opening = t.WebhookRequest(
                method="GET",
                url=urls.public_websocket(request.raw_path),
                headers={name.lower(): value for name, value in request.headers.items()},
                body=b"",
                form={},
            )
            options = await self._events.authenticate_media(row, opening)
            handler: Any = registry.capability(row.provider, Capability.CALL_MEDIA)
            connection = t.MediaOptions(
                headers={k.lower(): v for k, v in request.headers.items()}, query=dict(request.query)
            )
            session = handler.open_session(options, connection)
        except WebhookRefused as exc:
            return _refused(exc, "media")
        except StoreUnavailable:
            return web.Response(status=503, text="store unavailable, retry later\n")
        ws = web.WebSocketResponse(max_msg_size=MAX_MEDIA_MESSAGE, autoping=True)
        await ws.prepare(request)
        leg = ProviderLeg(ws, session, call_id=row.id, media_dir=self._media_dir)
        streams = metrics.MEDIA_STREAMS.labels(row.provider)
        streams.inc()
        try:
            reason = await leg.run()
        finally:
            streams.dec()
        log.info("media stream of call %s ended (%s)", row.id, reason)
        return ws


def call_reference(provider: str, webhook: t.WebhookRequest) -> tuple[str, str]:
    """(call id, token) named by a request to a provider's fixed answer URL."""
    if provider not in registry.PROVIDERS:
        raise WebhookRefused(404, "no such provider")
    try:
        module = importlib.import_module(f"callers.{provider}.webhooks")
    except ImportError:
        raise WebhookRefused(404, f"{provider} has no fixed answer URL") from None
    reference = getattr(module, "call_reference", None)
    if reference is None:
        raise WebhookRefused(404, f"{provider} has no fixed answer URL")
    try:
        call_id, token = reference(webhook)
    except caller_errors.CallerError:
        raise forbidden() from None
    return str(call_id), str(token)

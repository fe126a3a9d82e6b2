"""CALL_EVENTS.authenticate_media of each provider, on its own: Twilio's Media Streams
handshake is checked as Twilio signs it (HMAC-SHA1 with the Auth Token over the wss:// URL
of the <Stream> and no parameters), the scheme included; Vonage and Exotel sign no
websocket, so they accept the opening request as it is (the URL token is checked first,
by the hub)."""

from __future__ import annotations

from typing import Any

import pytest

from callers import registry
from callers.base import Capability, WebhookRejected
from callers.types import WebhookRequest
from tests.fakes.secret_fields import PlainSecret
from tests.fakes.twilio_server import twilio_signature

TOKEN = "a" * 32
URL = "wss://hub.example.com/telephony/v1/calls/c1/tok/media"
SIGNED = {"x-twilio-signature": twilio_signature(TOKEN, URL, [])}
SECRET, OPTIONS = PlainSecret(auth_token=TOKEN), {"account_sid": "AC" + "1" * 32}


def opening(url: str, headers: dict[str, str]) -> WebhookRequest:
    return WebhookRequest(method="GET", url=url, headers=headers, body=b"", form={})


def handler(provider: str) -> Any:
    return registry.capability(provider, Capability.CALL_EVENTS)


@pytest.mark.parametrize(
    "url",
    [URL, URL.replace("example.com/", "example.com:443/")],  # the SDK's validator tries both
    ids=["as-given", "default-port-written"],
)
def test_twilio_accepts_a_handshake_signed_over_the_wss_url(url: str) -> None:
    handler("twilio").authenticate_media(SECRET, OPTIONS, opening(url, SIGNED))


@pytest.mark.parametrize(
    "request_",
    [
        opening(URL, {"x-twilio-signature": twilio_signature(TOKEN, URL.replace("wss://", "https://"), [])}),
        opening(URL.replace("/c1/", "/c2/"), SIGNED),
        opening(URL, {"x-twilio-signature": twilio_signature("b" * 32, URL, [])}),
        opening(URL, {}),
    ],
    ids=["signed-over-https", "another-calls-url", "another-accounts-token", "unsigned"],
)
def test_twilio_refuses_any_other_handshake(request_: WebhookRequest) -> None:
    with pytest.raises(WebhookRejected):
        handler("twilio").authenticate_media(SECRET, OPTIONS, request_)


def test_twilio_without_the_auth_token_cannot_check_and_says_so() -> None:
    with pytest.raises(WebhookRejected, match="auth_token"):
        handler("twilio").authenticate_media(
            PlainSecret(api_key_secret="s" * 32), OPTIONS, opening(URL, SIGNED)
        )


@pytest.mark.parametrize("provider", ["vonage", "exotel"])
def test_vonage_and_exotel_sign_no_websocket(provider: str) -> None:
    handler(provider).authenticate_media(PlainSecret(), {}, opening(URL, {}))

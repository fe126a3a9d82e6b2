"""CALL_EVENTS: Twilio's status callbacks, checked as Twilio signs them, and parsed.

Signature (https://www.twilio.com/docs/usage/webhooks/webhooks-security): Twilio sends
``X-Twilio-Signature: base64(HMAC-SHA1(AuthToken, URL + the POST parameters sorted by
name, each name followed by its value))``, where URL is the full URL Twilio requested
(query included). It is checked with the SDK's twilio.request_validator.RequestValidator
(which also tries the URL with and without its default port, as Twilio's own signing
varies there), over `WebhookRequest.url` and the parameters parsed from the body as
sent (repeated names kept). So the hub must hand over the public URL exactly as Twilio
called it (HUB_PUBLIC_URL + path + query). Rejected (WebhookRejected, naming what
failed, never the expected value): no signature header; no Auth Token in the credential
(with API-key auth only, the key cannot check Twilio's signature, which is made with the
account's Auth Token); a request signed with a webhooks SharedKey
(X-Twilio-Webhooks-Signature-Settings), whose secret this credential does not hold; a
signature that does not match (forged, another account's token, a tampered body or URL).

Twilio's scheme has no timestamp or nonce, so a captured callback replayed later still
verifies: replays are harmless because each event has a stable id (below) and the hub
applies an event id once; the per-call token in the URL path limits any replay to the
call it belongs to.

Events (https://www.twilio.com/docs/voice/api/call-resource#statuscallback): a form POST
with CallSid, AccountSid, From, To, CallStatus (initiated, ringing, in-progress,
completed, busy, no-answer, failed, canceled), Direction, ApiVersion, CallbackSource
(call-progress-events), SequenceNumber (0, 1, ... per call), Timestamp (RFC 2822),
CallDuration (seconds, when it ended), SipResponseCode, and AnsweredBy when answering
machine detection ran. event_id = "<CallSid>:<CallStatus>:<SequenceNumber>". The async
AMD result (AsyncAmdStatusCallback, telephony.py) is a POST with CallSid, AccountSid,
AnsweredBy and MachineDetectionDuration and no CallStatus: an event with status None,
raw_status "answered_by", answered_by set, event_id "<CallSid>:amd:<AnsweredBy>".

Media Streams: Twilio signs the websocket's opening request too (X-Twilio-Signature, the
same HMAC over the wss:// URL of the <Stream> and no parameters: Twilio's Media Streams
security notes, and the scheme is wss, not https, as twilio-aspnet issue 162 found);
authenticate_media checks it with the same validator.

answer(): NotSupported: Twilio's TwiML goes inline with the call (telephony.py), so
Twilio never asks the hub for instructions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qs, parse_qsl, urlsplit

from multidict import MultiDict
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from callers.base import InvalidRequest, NotSupported, SecretFields, WebhookRejected
from callers.twilio import statuses
from callers.types import CallAction, CallEvent, CallStatus, Instructions, WebhookRequest

SIGNATURE_HEADER = "x-twilio-signature"
SIGNATURE_SETTINGS_HEADER = "x-twilio-webhooks-signature-settings"
# Callback fields that are credentials of a sort and are not kept with an event.
_TOKEN_SUFFIX = "token"  # noqa: S105 - a field-name suffix, not a value


def _form_params(request: WebhookRequest) -> MultiDict[str]:
    """The POST parameters as sent (repeated names kept), or the parsed form."""
    if request.method.upper() == "GET":
        return MultiDict()
    if request.body:
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise WebhookRejected("the callback body is not UTF-8 form data") from None
        return MultiDict(parse_qsl(text, keep_blank_values=True))
    return MultiDict(request.form)


def _fields(request: WebhookRequest) -> dict[str, str]:
    if request.method.upper() == "GET":
        return dict(request.form)
    if request.body:
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest("the Twilio callback body is not UTF-8 form data") from None
        return dict(parse_qsl(text, keep_blank_values=True))
    return dict(request.form)


def _occurred_at(raw: str) -> datetime | None:
    if not raw:
        return None
    try:
        return parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None


def _error(fields: Mapping[str, str], status: CallStatus | None) -> str:
    code, message = fields.get("ErrorCode", ""), fields.get("ErrorMessage", "")
    if code or message:
        return f"{message} (error {code})".strip() if code else message
    sip = fields.get("SipResponseCode", "")
    if sip and status in (CallStatus.FAILED, CallStatus.BUSY, CallStatus.NO_ANSWER):
        return f"SIP {sip}"
    return ""


def _raw(fields: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in fields.items() if not k.lower().endswith(_TOKEN_SUFFIX)}


class TwilioCallEvents:
    def authenticate(self, secret: SecretFields, options: Mapping[str, str], request: WebhookRequest) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        signature = headers.get(SIGNATURE_HEADER, "")
        if not signature:
            raise WebhookRejected("the request has no X-Twilio-Signature header")
        if headers.get(SIGNATURE_SETTINGS_HEADER):
            raise WebhookRejected(
                "the request is signed with a Twilio webhooks SharedKey "
                "(X-Twilio-Webhooks-Signature-Settings), which this credential does not hold; "
                "it checks signatures made with the Auth Token"
            )
        token = secret.get("auth_token")
        if not token:
            raise WebhookRejected(
                "secret.auth_token is needed to check Twilio's signatures (Twilio signs webhooks with the "
                "account's Auth Token, not with an API key)"
            )
        validator = RequestValidator(token)
        params: MultiDict[str] | str = _form_params(request)
        if "bodySHA256" in parse_qs(urlsplit(request.url).query):
            # A JSON body: the URL carries the body's hash, which the signature covers.
            params = request.body.decode("utf-8", "replace")
        if not validator.validate(request.url, params, signature):
            raise WebhookRejected(
                "X-Twilio-Signature does not match the request's URL and parameters signed with the "
                "account's Auth Token (forged, altered, or signed for another account)"
            )

    def authenticate_media(
        self, secret: SecretFields, options: Mapping[str, str], request: WebhookRequest
    ) -> None:
        # Twilio signs the websocket handshake as it signs a webhook: the URL is the
        # <Stream url> as given (wss:// scheme included, not https://) and there are no
        # parameters. The SDK's validator checks it with and without the default port.
        self.authenticate(secret, options, replace(request, method="GET", body=b"", form={}))

    def parse_events(self, options: Mapping[str, str], request: WebhookRequest) -> list[CallEvent]:
        fields = _fields(request)
        sid = fields.get("CallSid", "")
        if not sid:
            raise InvalidRequest("the Twilio callback has no CallSid")
        raw = _raw(fields)
        if "CallStatus" in fields:
            word = fields["CallStatus"]
            status = statuses.status_of(word)
            sequence = fields.get("SequenceNumber") or fields.get("Timestamp", "")
            return [
                CallEvent(
                    provider_call_id=sid,
                    status=status,
                    raw_status=word,
                    event_id=f"{sid}:{word}:{sequence}",
                    occurred_at=_occurred_at(fields.get("Timestamp", "")),
                    duration_seconds=statuses.seconds(fields.get("CallDuration")),
                    answered_by=statuses.answered_by(fields.get("AnsweredBy")),
                    error=_error(fields, status),
                    raw=raw,
                )
            ]
        if fields.get("AnsweredBy"):
            answered = fields["AnsweredBy"]
            return [
                CallEvent(
                    provider_call_id=sid,
                    status=None,
                    raw_status="answered_by",
                    event_id=f"{sid}:amd:{answered}",
                    answered_by=statuses.answered_by(answered),
                    raw=raw,
                )
            ]
        raise InvalidRequest("not a Twilio call status callback: it has neither CallStatus nor AnsweredBy")

    def answer(self, options: Mapping[str, str], request: WebhookRequest, action: CallAction) -> Instructions:
        raise NotSupported("twilio", "call_events.answer (Twilio's TwiML goes inline with the call)")


CALLER = TwilioCallEvents()

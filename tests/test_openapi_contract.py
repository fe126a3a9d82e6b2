"""Schemathesis against a live hub: every REST operation of the committed document (which
test_openapi_document.py proves is what /openapi.json serves), a bounded, derandomized
number of cases each, schema-valid ones and schema-breaking ones, and no server error and
no response outside the document (status code, content type, body schema).

The hub runs in-process on loopback in a thread of its own (schemathesis is a blocking
client): the real HTTP server, a SQLite store, a keyring, and credentials pointed at
loopback fakes that speak the providers' wire protocols (OpenAI with its audio API,
Voyage for rerank, Vonage for calls). Hooks steer the generation, choosing values only:
sometimes a seeded credential, call or campaign, or a valid value the schema cannot tell
(a role, an E.164 number), and sometimes only the required fields, so that every operation
also succeeds (the last test checks it) instead of stopping at "not found" or a 400.

The checks are schemathesis' own, not_a_server_error among them with no exception: any 5xx
fails (a credential whose provider lacks the capability, e.g. rerank through an OpenAI key,
is the client's choice, FAILED_PRECONDITION: a 400). GET /v1/calls:watch is a stream that never
ends: schemathesis would wait for its end, so its cases are sent here with the same
generated data, read for a bounded time, and checked by hand with the same rules
(documented status, no 5xx, every line valid against the document).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from callers import audio as hub_audio
from callers import pools
from callers.types import AudioContainer, AudioEncoding, AudioFormat, CallStatus
from integration_hub.auth import mint_token
from integration_hub.http.openapi import committed_document
from integration_hub.v1 import credentials_pb2 as cpb
from tests.fakes.openai_audio import OpenAIAudio, tone
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.vonage_server import FakeVonage
from tests.fakes.voyage_server import FakeVoyage
from tests.harness import free_port, running_hub, settings_for

OPENAI_KEY = "sk-test-contract-0123456789abcdef"
VOYAGE_KEY = "pa-test-contract-0123456789abcdef"
# Cases per operation: schema-valid ones, and ones that break the schema on purpose.
VALID_EXAMPLES = 25
INVALID_EXAMPLES = 10
NDJSON = "application/x-ndjson"
# How long a case of the never-ending watch stream is read before the client hangs up.
WATCH_READ_SECONDS = 0.3
# Statuses answered, by operation: the summary printed at the end, and the proof that
# generated requests got past validation to the service (and the provider fakes).
STATUSES: dict[str, Counter[int]] = defaultdict(Counter)
MESSAGES: dict[str, Counter[str]] = defaultdict(Counter)


def _message(content: bytes) -> str:
    try:
        return str(json.loads(content)["error"]["message"])[:90]
    except (ValueError, KeyError, TypeError):
        return "?"


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@dataclass
class LiveHub:
    """A hub on loopback served from its own thread and event loop."""

    tmp: Path
    base_url: str = ""
    admin_token: str = ""
    _ready: threading.Event = field(default_factory=threading.Event)
    _failed: list[BaseException] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    _thread: threading.Thread | None = None

    def __enter__(self) -> LiveHub:
        self._thread = threading.Thread(target=self._run, name="contract-hub", daemon=True)
        self._thread.start()
        if not self._ready.wait(60) or self._failed:
            raise RuntimeError(f"the hub did not start: {self._failed}")
        return self

    def __exit__(self, *_: object) -> None:
        assert self._loop is not None
        assert self._stop is not None
        assert self._thread is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._failed.append(exc)
            self._ready.set()

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        port = free_port()
        settings = settings_for(
            self.tmp, database_url=None, http_port=port, public_url=f"http://127.0.0.1:{port}"
        )
        async with self._fakes() as (openai, voyage, vonage), running_hub(settings) as hut:
            self.base_url, self.admin_token = hut.http_base, hut.tokens.admin
            stub, auth = hut.credentials_stub(), hut.auth(hut.tokens.admin)
            for request in (
                cpb.CreateCredentialRequest(
                    provider="openai",
                    name="main",
                    secret={"api_key": OPENAI_KEY},
                    options={"base_url": openai.base_url},
                ),
                cpb.CreateCredentialRequest(
                    provider="voyageai",
                    name="rank",
                    secret={"api_key": VOYAGE_KEY},
                    options={"base_url": voyage.base_url},
                ),
                cpb.CreateCredentialRequest(
                    provider="vonage", name="phone", secret=vonage.secret, options=vonage.options
                ),
            ):
                await stub.CreateCredential(request, metadata=auth)
            scratch = {method: [f"{method}-{index}" for index in range(4)] for method in ("delete", "patch")}
            for name in scratch["delete"] + scratch["patch"]:
                await stub.CreateCredential(
                    cpb.CreateCredentialRequest(
                        provider="openai",
                        name=name,
                        secret={"api_key": OPENAI_KEY},
                        options={"base_url": openai.base_url},
                    ),
                    metadata=auth,
                )
            SEEDED.update(
                credential=["main", "rank", "phone"],
                id=["main", "rank", "phone"],
                scratch_delete=scratch["delete"],
                scratch_patch=scratch["patch"],
            )
            SEEDED.update(
                await self._seed_telephony(hut.http, hut.http_base, hut.headers(self.admin_token), vonage)
            )
            # A token for RevokeToken to revoke (revoking it again answers it unchanged).
            revocable, _ = await mint_token(
                hut.hub.store, tenant_id="acme", scopes=["invoke"], name="revocable"
            )
            SEEDED.update(token_id=[revocable.id])
            self._ready.set()
            await self._stop.wait()
        await pools.close_all()

    @contextlib.asynccontextmanager
    async def _fakes(self) -> AsyncIterator[tuple[FakeOpenAI, FakeVoyage, FakeVonage]]:
        openai = FakeOpenAI(valid_keys={OPENAI_KEY})
        OpenAIAudio().install(openai)
        async with openai, FakeVoyage(valid_keys={VOYAGE_KEY}) as voyage, FakeVonage() as vonage:
            yield openai, voyage, vonage

    @staticmethod
    async def _seed_telephony(
        http: Any, base: str, headers: dict[str, str], vonage: FakeVonage
    ) -> dict[str, list[str]]:
        call = {
            "credential": "phone",
            "to": "+14155552671",
            "from": "+14155550199",
            "action": {"say": {"text": "hello"}},
        }
        async with http.post(base + "/v1/calls", json=call, headers=headers) as response:
            assert response.status == 200, await response.text()
            placed = (await response.json())["call"]
        call_id = placed["id"]
        # Two events (sequences 1 and 2): a watch from after_sequence=1 has one to answer with.
        for status in (CallStatus.RINGING, CallStatus.IN_PROGRESS):
            assert await vonage.send_status(placed["provider_call_id"], status) == 200
        later, minute = datetime.now(UTC) + timedelta(hours=12), timedelta(minutes=1)
        campaign = {
            "credential": "phone",
            "from": "+14155550199",
            "action": {"say": {"text": "hello {name}"}},
            "rows": [{"to": "+14155552672", "variables": {"name": "Ada"}}],
            # A minute twelve hours away: no call is placed, the campaigns stay pausable.
            "window": {"time_zone": "UTC", "start": f"{later:%H:%M}", "end": f"{later + minute:%H:%M}"},
        }
        campaign_ids = []
        for _ in range(2):
            async with http.post(base + "/v1/campaigns", json=campaign, headers=headers) as response:
                assert response.status == 200, await response.text()
                campaign_ids.append((await response.json())["campaign"]["id"])
        return {"call_id": [call_id], "campaign_id": campaign_ids[:1], "campaign_to_cancel": campaign_ids[1:]}


@pytest.fixture(scope="module")
def live_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    with LiveHub(tmp_path_factory.mktemp("contract")) as hub:
        yield hub
    for operation, statuses in sorted(STATUSES.items()):
        print(f"{operation}: {dict(sorted(statuses.items()))}")
        for text, n in MESSAGES[operation].most_common(4):
            print(f"     {n} {text}")


# Values a generated request may take instead of its random ones, by request field: the
# seeded credentials, call and campaigns (filled in by the live_hub fixture), and a few
# valid values the schema cannot tell (a role, an E.164 number, a voice, real audio), so
# that many cases reach the service and the provider fakes, not only "not found" or 400.
SEEDED: dict[str, list[Any]] = {}
WAV = AudioFormat(AudioEncoding.PCM_S16LE, AudioContainer.WAV, 24_000)
VALID: dict[str, list[Any]] = {
    "provider": ["openai", "voyageai", "vonage"],
    "name": ["contract-new"],
    "model": ["gpt-4o-mini", "rerank-2.5", "voyage-3.5"],
    "messages": [[{"role": "ROLE_USER", "content": [{"text": "Hello"}]}]],
    "to": ["+14155552671"],
    "from": ["+14155550199"],
    "action": [{"say": {"text": "hello"}}],
    "rows": [[{"to": "+14155552673", "variables": {"name": "Ada"}}]],
    "text": ["Hello from the contract test."],
    "voice": ["alloy"],
    "output_format": [{"container": "AUDIO_CONTAINER_MP3"}],
    "audio_format": [{"container": "AUDIO_CONTAINER_WAV"}],
    "audio": [base64.b64encode(hub_audio.encode(tone(0.2), WAV)).decode()],
    "secret": [{"api_key": OPENAI_KEY}],
    "inputs": [["hello", "world"]],
    "documents": [["a cat", "a dog"]],
    "query": ["pets"],
    "after_sequence": [1],
    "update_mask": ["options", "name"],
    "scopes": [["SCOPE_INVOKE"]],
}


def _pool(ctx: Any, key: str) -> list[Any]:
    operation = ctx.operation
    if key == "id" and operation.method.upper() in ("DELETE", "PATCH"):
        # Changes only to credentials nothing else needs, a set for each method.
        return list(SEEDED[f"scratch_{operation.method.lower()}"])
    if key == "campaign_id" and operation.path.endswith(":cancel"):
        return list(SEEDED["campaign_to_cancel"])  # the others' campaign must stay pausable
    pool = SEEDED.get(key, []) + VALID.get(key, [])
    # The value that can serve the operation first (a derandomized run favours it).
    fits = _FITS.get((key, operation.path.split(":")[0].rsplit("/", 1)[-1]))
    if fits is None and key == "credential":
        fits = "phone" if operation.path.startswith(("/v1/calls", "/v1/campaigns")) else "main"
    return [fits, *(value for value in pool if value != fits)] if fits in pool else pool


# (field, last path segment) -> the value first tried there.
_FITS = {("credential", "rerank"): "rank", ("model", "rerank"): "rerank-2.5"}


def _steer(ctx: Any, values: Any, *, body: bool = False) -> st.SearchStrategy[Any]:
    """The generated values, or the same with fields set to seeded or valid values.

    A body may also be made "minimal": its optional fields dropped (those the schema does
    not require), and the fields with valid values set from them, so that some cases are a
    plain valid request rather than one with every knob at random.
    """
    if not isinstance(values, dict):
        return st.just(values)
    required, known = _body_fields(ctx.operation) if body else (set(values), set(values))

    def choose(minimal: bool) -> st.SearchStrategy[dict[str, Any]]:
        chosen = {
            # Earlier elements come first in a derandomized run: the valid ones lead.
            key: st.sampled_from([*_pool(ctx, key), value])
            for key, value in values.items()
            if not minimal or key in required or _pool(ctx, key)
        }
        if minimal:
            chosen.update(
                {key: st.sampled_from(_pool(ctx, key)) for key in known - set(values) if _pool(ctx, key)}
            )
        return st.fixed_dictionaries(chosen)

    return st.booleans().flatmap(choose)


def _body_fields(operation: Any) -> tuple[set[str], set[str]]:
    """The required and all the top-level fields of an operation's JSON body."""
    schema = operation.definition.raw["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        schema = DOCUMENT["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return set(schema.get("required", [])), set(schema.get("properties", {}))


# The committed document; test_openapi_document.py checks that the hub serves exactly it.
DOCUMENT = json.loads(committed_document())


def _schema(mode: str, examples: int) -> Any:
    loaded = schemathesis.openapi.from_dict(
        DOCUMENT,
        config=SchemathesisConfig.from_dict(
            {
                "request-timeout": 20,
                "generation": {"max-examples": examples, "deterministic": True, "mode": mode},
                "phases": {"examples": {"enabled": True}, "coverage": {"enabled": False}},
            }
        ),
    )
    for hook in (flatmap_body, flatmap_path_parameters, flatmap_query):
        loaded.hook(hook)
    return loaded


def flatmap_body(ctx: Any, body: Any) -> st.SearchStrategy[Any]:
    return _steer(ctx, body, body=True)


def flatmap_path_parameters(ctx: Any, parameters: Any) -> st.SearchStrategy[Any]:
    return _steer(ctx, parameters)


def flatmap_query(ctx: Any, query: Any) -> st.SearchStrategy[Any]:
    return _steer(ctx, query)


valid = _schema("positive", VALID_EXAMPLES)
invalid = _schema("negative", INVALID_EXAMPLES)


@pytest.mark.timeout(300)
@valid.parametrize()
def test_valid_requests_keep_the_contract(case: Case, live_hub: LiveHub) -> None:
    _call_and_check(case, live_hub)


@pytest.mark.timeout(300)
@invalid.parametrize()
def test_invalid_requests_keep_the_contract(case: Case, live_hub: LiveHub) -> None:
    _call_and_check(case, live_hub)


def _call_and_check(case: Case, live_hub: LiveHub) -> None:
    headers = {"Authorization": f"Bearer {live_hub.admin_token}"}
    if case.operation.path == "/v1/calls:watch":
        _check_watch(case, live_hub, headers)
        return
    response = case.call(base_url=live_hub.base_url, headers=headers)
    STATUSES[_label(case)][response.status_code] += 1
    if response.status_code >= 400:
        MESSAGES[_label(case)][_message(response.content)] += 1
    case.validate_response(response, checks=CHECKS)
    if response.headers.get("content-type", [""])[0].startswith(NDJSON):
        _check_lines(case, response.status_code, response.content)


def _label(case: Case) -> str:
    mode = case.meta.generation.mode.value if case.meta is not None else "?"
    return f"{case.operation.label} ({mode})"


def _check_watch(case: Case, hub: LiveHub, headers: dict[str, str]) -> None:
    kwargs = case.as_transport_kwargs(base_url=hub.base_url, headers=headers)
    lines: list[bytes] = []
    try:
        sent = requests.request(**kwargs, stream=True, timeout=(5, WATCH_READ_SECONDS))
    except requests.exceptions.ReadTimeout:
        # The hub holds the 200 until the first event: none came in the window.
        STATUSES[_label(case)][0] += 1
        return
    with sent as response:
        STATUSES[_label(case)][response.status_code] += 1
        documented = case.operation.definition.raw["responses"]
        assert str(response.status_code) in documented, (response.status_code, response.text)
        assert response.status_code < 500, response.text
        if response.status_code != 200:
            assert response.headers["Content-Type"].startswith("application/json")
            _validate(case, json.loads(response.content), response.status_code)
            return
        assert response.headers["Content-Type"].startswith(NDJSON)
        deadline = time.monotonic() + WATCH_READ_SECONDS
        with contextlib.suppress(requests.exceptions.ConnectionError):
            for line in response.iter_lines():
                lines.append(line)
                if time.monotonic() > deadline:
                    break
    _check_lines(case, 200, b"\n".join(lines))


def _check_lines(case: Case, status: int, content: bytes) -> None:
    """Every line of a newline-delimited JSON answer against the documented line schema."""
    for line in content.splitlines():
        if line.strip():
            _validate(case, json.loads(line), status)


def _validate(case: Case, instance: Any, status: int) -> None:
    document = case.operation.schema.raw_schema
    content = case.operation.definition.raw["responses"][str(status)]
    if "$ref" in content:
        content = document["components"]["responses"][content["$ref"].rsplit("/", 1)[-1]]
    (media,) = content["content"].values()
    jsonschema.validate(
        instance, {**media["schema"], "components": document["components"]}, cls=jsonschema.Draft4Validator
    )


def test_every_operation_answered_a_valid_request_with_200() -> None:
    """The fuzzing above was not only of rejections: every operation it ran succeeded too."""
    ran = {label for label in STATUSES if label.endswith("(positive)")}
    if not ran:
        pytest.skip("the schema-valid cases did not run in this session")
    assert {label for label in ran if not STATUSES[label][200]} == set()


@pytest.mark.parametrize(
    ("query", "field"),
    [("page_size=394511112429031232", "page_size"), ("page_size=-2149736308608", "page_size")],
)
def test_an_integer_too_wide_for_its_field_is_a_400(live_hub: LiveHub, query: str, field: str) -> None:
    # Found by the fuzzing above: it was a 500 (protobuf's ValueError from setattr).
    response = requests.get(
        f"{live_hub.base_url}/v1/credentials?{query}",
        headers={"Authorization": f"Bearer {live_hub.admin_token}"},
        timeout=10,
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["details"][0]["reason"] == "INVALID_FIELD"
    assert error["details"][0]["metadata"] == {"field": field}
    assert error["message"] == f"{field}: {query.split('=')[1]!r} is out of range for this field"

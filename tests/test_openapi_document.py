"""The OpenAPI document (integration_hub/http/openapi.py): valid OpenAPI 3.0, one
operation per REST binding of the transcoder, the committed protos/openapi.json up to
date, served unauthenticated at /openapi.json exactly as committed, and schemas that
hold what json_format really prints for every message kind the API uses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from openapi_spec_validator import validate

from integration_hub.http.openapi import OPENAPI_VERSION, api_methods, committed_document
from integration_hub.http.transcoder import Transcoder, message_to_dict
from integration_hub.v1 import chat_pb2, credentials_pb2, speech_pb2, telephony_pb2, usage_pb2
from tests.harness import REPO, HubUnderTest

COMMITTED = REPO / "protos" / "openapi.json"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(committed_document())
    return loaded


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    assert document["openapi"] == OPENAPI_VERSION == "3.0.3"
    validate(document)  # openapi-spec-validator: raises on any violation of the 3.0 schema
    assert document["components"]["securitySchemes"]["hubToken"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "ihub_...",
        "description": "A hub token (integration-hub tokens create); its scopes decide.",
    }
    assert document["security"] == [{"hubToken": []}]


def test_every_rest_binding_is_an_operation_and_nothing_else(document: dict[str, Any]) -> None:
    bindings = Transcoder(api_methods()).bindings
    expected = {(b.http_method.lower(), b.template.path) for b in bindings}
    found = {(verb, path) for path, item in document["paths"].items() for verb in item}
    assert found == expected
    assert len(found) == len(bindings) >= 27
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(set(ids)) == len(ids)
    # An additional binding gets its own id; streaming RPCs without REST are named as left out.
    verify = document["paths"]["/v1/credentials:verify"]["post"]
    assert verify["operationId"] == "CredentialService_VerifyCredential2"
    assert document["paths"]["/v1/credentials/{id}:verify"]["post"]["operationId"] == (
        "CredentialService_VerifyCredential"
    )
    description = document["info"]["description"]
    for name in ("StreamTranscribe", "StreamSynthesizeInput", "CallMedia"):
        assert f".{name}" in description
        assert all(name not in op for op in ids)


def test_operations_carry_their_parameters_bodies_and_errors(document: dict[str, Any]) -> None:
    get_credential = document["paths"]["/v1/credentials/{id}"]["get"]
    assert get_credential["parameters"] == [
        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
    # response_body: "credential" answers the Credential itself, not its wrapper.
    assert get_credential["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Credential"
    }
    assert get_credential["x-hub-scopes"] == ["admin", "invoke"]
    for status in ("400", "401", "403", "404", "409", "413", "429", "500", "503", "504"):
        assert get_credential["responses"][status] == {"$ref": f"#/components/responses/{status}"}
    # A provider without the capability is a 400 (FAILED_PRECONDITION); no operation answers 501.
    assert "501" not in get_credential["responses"]
    assert "501" not in document["components"]["responses"]

    usage = {p["name"]: p for p in document["paths"]["/v1/usage"]["get"]["parameters"]}
    assert set(usage) == {"start_time", "end_time", "group_by", "credential", "model", "provider"}
    assert usage["start_time"]["schema"] == {"type": "string", "format": "date-time"}
    assert usage["group_by"]["explode"] is True
    assert usage["group_by"]["schema"]["items"]["enum"][1] == "USAGE_GROUP_BY_CREDENTIAL"
    voices = {p["name"]: p for p in document["paths"]["/v1/voices"]["get"]["parameters"]}
    assert voices["credential"]["required"] is True
    assert voices["credential"]["schema"] == {"type": "string", "minLength": 1}

    # body "*" with a path variable: the body is the request without the path's field.
    verify = document["paths"]["/v1/credentials/{id}:verify"]["post"]
    body = verify["requestBody"]["content"]["application/json"]["schema"]
    assert "id" not in body["properties"]
    assert {"provider", "secret", "options", "timeout"} <= set(body["properties"])
    assert "parameters" not in document["paths"]["/v1/chat"]["post"]  # body "*": no query parameters

    stream = document["paths"]["/v1/chat:stream"]["post"]["responses"]["200"]["content"]
    line = stream["application/x-ndjson"]["schema"]
    assert line["properties"]["result"] == {"$ref": "#/components/schemas/StreamChatResponse"}
    assert line["properties"]["error"] == {"$ref": "#/components/schemas/Status"}


def test_input_and_output_schemas_follow_the_field_behaviors(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    create = schemas["CreateCredentialRequestInput"]
    assert create["required"] == ["provider", "name", "secret"]
    assert create["properties"]["secret"] == {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "minProperties": 1,
    }
    credential = schemas["Credential"]
    # json_format always prints the fields without presence; never a secret.
    assert set(credential["required"]) == {
        "id",
        "name",
        "provider",
        "hint",
        "options",
        "secret_fields",
        "revision",
    }
    assert credential["properties"]["revision"] == {
        "type": "string",
        "format": "int64",
        "pattern": "^-?[0-9]+$",
    }
    assert credential["additionalProperties"] is False
    assert "CredentialInput" not in schemas  # never a request's
    part = schemas["ContentPartInput"]
    assert part["not"] == {"anyOf": [{"required": ["text", "image"]}]}  # a oneof: one member at most
    role = schemas["ChatMessage"]["properties"]["role"]
    assert role["anyOf"][0]["enum"][0] == "ROLE_UNSPECIFIED"
    assert role["anyOf"][1] == {"type": "integer", "format": "int32"}


# One message of each kind the API has, with every field kind set: what the schemas must accept.
SAMPLES = [
    credentials_pb2.Credential(
        id="c1",
        name="main",
        provider="openai",
        hint="sk-...a1b2",
        options={"base_url": "http://x"},
        secret_fields=["api_key"],
        create_time=timestamp_pb2.Timestamp(seconds=1, nanos=5),
        revision=2**40,
    ),
    chat_pb2.ChatResponse(
        message=chat_pb2.ChatMessage(
            role=chat_pb2.ROLE_ASSISTANT,
            content=[
                chat_pb2.ContentPart(text="hi"),
                chat_pb2.ContentPart(image=chat_pb2.Image(data=b"\xff")),
            ],
            tool_calls=[chat_pb2.ToolCall(id="t", name="f", arguments="{}")],
        ),
        finish_reason=chat_pb2.FINISH_REASON_STOP,
        usage=chat_pb2.Usage(input_tokens=3, output_tokens=4, total_tokens=7),
        timings=chat_pb2.Timings(total=duration_pb2.Duration(seconds=1, nanos=500_000_000)),
    ),
    chat_pb2.RerankResponse(results=[chat_pb2.RerankResult(index=1, score=float("nan"))]),
    chat_pb2.EmbedResponse(embeddings=[chat_pb2.Embedding(index=0, values=[0.25, float("inf")])]),
    speech_pb2.SynthesizeResponse(audio=b"\x00\x01", characters=12),
    speech_pb2.TranscribeResponse(transcript="x", words=[speech_pb2.Word(text="x", confidence=0.5)]),
    telephony_pb2.WatchCallsResponse(
        event=telephony_pb2.CallEvent(sequence=9, status=telephony_pb2.CALL_STATUS_RINGING),
        call=telephony_pb2.Call(id="k", metadata={"a": "b"}, status=7777),  # an enum number it does not know
    ),
    usage_pb2.GetUsageResponse(groups=[usage_pb2.UsageGroup(model="m", requests=1, average_latency_ms=2.5)]),
    chat_pb2.ChatRequest(
        credential="main",
        model="m",
        messages=[chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=[chat_pb2.ContentPart(text="hi")])],
        provider_options=struct_pb2.Struct(fields={"a": struct_pb2.Value(number_value=1)}),
    ),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_what_the_hub_prints_fits_the_schema(document: dict[str, Any], message: Any) -> None:
    name = message.DESCRIPTOR.full_name.removeprefix("integration_hub.v1.")
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    if name not in document["components"]["schemas"]:  # a request type: its input schema
        schema["$ref"] += "Input"
    printed = message_to_dict(message)
    jsonschema.validate(printed, schema, cls=jsonschema.Draft4Validator)
    # And the schema is strict: a field the hub never prints, or a wrong type, is refused.
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**printed, "unknown_field": 1}, schema, cls=jsonschema.Draft4Validator)


def test_the_committed_document_is_current() -> None:
    assert COMMITTED.read_bytes() == committed_document(), (
        "run cmd/gen-protos.sh and commit protos/openapi.json"
    )
    assert committed_document() == committed_document()  # deterministic: sorted keys, stable order


def test_gen_protos_check_fails_on_a_stale_document(tmp_path: Path) -> None:
    # A copy of what the script reads, so that the repository itself is never touched.
    for part in ("cmd/gen-protos.sh", "protos", "integration_hub/v1", "chatbot/v1"):
        source, target = REPO / part, tmp_path / part
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, target) if source.is_dir() else shutil.copy2(source, target)
    # The protoc plugins live beside the interpreter, as in the venv CI uses.
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PYTHON": sys.executable, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    check = ["bash", str(tmp_path / "cmd/gen-protos.sh"), "--check"]
    fresh = subprocess.run(check, env=env, capture_output=True, text=True, timeout=120)
    assert fresh.returncode == 0, fresh.stderr
    stale = json.loads((tmp_path / "protos/openapi.json").read_text())
    del stale["paths"]["/v1/usage"]
    (tmp_path / "protos/openapi.json").write_text(json.dumps(stale))
    caught = subprocess.run(check, env=env, capture_output=True, text=True, timeout=120)
    assert caught.returncode == 1
    assert "protos/openapi.json is stale: run cmd/gen-protos.sh and commit the result" in caught.stderr


async def test_the_hub_serves_the_committed_document_without_a_token(hut: HubUnderTest) -> None:
    async with hut.http.get(hut.http_base + "/openapi.json") as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        assert await response.read() == COMMITTED.read_bytes()

"""The REST transcoder against the real descriptors (no server needed)."""

from __future__ import annotations

import pytest

from integration_hub.errors import HubError
from integration_hub.http.transcoder import Transcoder, build_request, compile_template, render_response
from integration_hub.rpc import methods_of
from integration_hub.v1 import credentials_pb2 as pb


class _Impl:
    def __getattr__(self, name: str) -> object:
        return lambda *a: None


@pytest.fixture(scope="module")
def transcoder() -> Transcoder:
    service = pb.DESCRIPTOR.services_by_name["CredentialService"]
    return Transcoder(methods_of(service, _Impl()))


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("/v1/credentials/{id}", "/v1/credentials/abc", {"id": "abc"}),
        ("/v1/credentials/{id}:verify", "/v1/credentials/abc:verify", {"id": "abc"}),
        ("/v1/{name=projects/*/keys/*}", "/v1/projects/p1/keys/k2", {"name": "projects/p1/keys/k2"}),
        ("/v1/files/{path=**}", "/v1/files/a/b/c.txt", {"path": "a/b/c.txt"}),
        ("/v1/credentials:verify", "/v1/credentials:verify", {}),
    ],
)
def test_templates_match_and_extract(template: str, path: str, expected: dict[str, str]) -> None:
    compiled = compile_template(template)
    found = compiled.regex.match(path)
    assert found is not None
    assert {compiled.variables[g]: v for g, v in found.groupdict().items()} == expected


@pytest.mark.parametrize(
    ("template", "path"),
    [
        ("/v1/credentials/{id}", "/v1/credentials/a/b"),
        ("/v1/credentials/{id}", "/v1/credentials/"),
        ("/v1/credentials/{id}:verify", "/v1/credentials/abc"),
        ("/v1/{name=projects/*}", "/v1/projects/p1/extra"),
    ],
)
def test_templates_reject_other_paths(template: str, path: str) -> None:
    assert compile_template(template).regex.match(path) is None


def test_routes_come_from_the_annotations(transcoder: Transcoder) -> None:
    routes = {(b.http_method, b.method.name) for b in transcoder.bindings}
    assert routes == {
        ("POST", "CreateCredential"),
        ("GET", "GetCredential"),
        ("GET", "ListCredentials"),
        ("PATCH", "UpdateCredential"),
        ("DELETE", "DeleteCredential"),
        ("POST", "VerifyCredential"),  # stored: /v1/credentials/{id}:verify
        ("GET", "ListProviders"),
    }
    verify_paths = [b for b in transcoder.bindings if b.method.name == "VerifyCredential"]
    assert len(verify_paths) == 2  # plus the additional binding /v1/credentials:verify


def test_verb_route_wins_over_plain_variable(transcoder: Transcoder) -> None:
    found = transcoder.match("POST", "/v1/credentials/abc:verify")
    assert found is not None
    assert found[0].method.name == "VerifyCredential"
    assert found[1] == {"id": "abc"}
    unsaved = transcoder.match("POST", "/v1/credentials:verify")
    assert unsaved is not None
    assert unsaved[0].method.name == "VerifyCredential"
    assert unsaved[1] == {}


def test_body_star_and_path_variable_build_the_request(transcoder: Transcoder) -> None:
    binding, values = transcoder.match("PATCH", "/v1/credentials/c1")  # type: ignore[misc]
    request = build_request(binding, values, [], b'{"secret": {"api_key": "k"}, "id": "ignored"}')
    assert isinstance(request, pb.UpdateCredentialRequest)
    assert request.id == "c1"  # the path wins over the body
    assert dict(request.secret) == {"api_key": "k"}


def test_query_parameters_fill_unbound_fields(transcoder: Transcoder) -> None:
    binding, values = transcoder.match("GET", "/v1/credentials")  # type: ignore[misc]
    request = build_request(binding, values, [("provider", "openai"), ("page_size", "7")], b"")
    assert request == pb.ListCredentialsRequest(provider="openai", page_size=7)


@pytest.mark.parametrize(
    ("query", "body", "field", "text"),
    [
        ([("page_size", "seven")], b"", "page_size", "is not a valid integer"),
        ([("nope", "1")], b"", "nope", "unknown parameter"),
    ],
)
def test_bad_query_names_the_field(
    transcoder: Transcoder, query: list[tuple[str, str]], body: bytes, field: str, text: str
) -> None:
    binding, values = transcoder.match("GET", "/v1/credentials")  # type: ignore[misc]
    with pytest.raises(HubError) as caught:
        build_request(binding, values, query, body)
    assert caught.value.metadata["field"] == field
    assert text in caught.value.message


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"provider": "openai", "colour": "blue"}', 'no field named "colour"'),
        (b'{"provider": 5}', "provider"),
    ],
)
def test_bad_body_is_invalid_argument(transcoder: Transcoder, body: bytes, text: str) -> None:
    binding, values = transcoder.match("POST", "/v1/credentials")  # type: ignore[misc]
    with pytest.raises(HubError) as caught:
        build_request(binding, values, [], body)
    assert caught.value.code.name == "INVALID_ARGUMENT"
    assert text in caught.value.message


def test_response_body_selects_the_field(transcoder: Transcoder) -> None:
    binding, _ = transcoder.match("POST", "/v1/credentials")  # type: ignore[misc]
    response = pb.CreateCredentialResponse(credential=pb.Credential(id="c1", name="main", provider="openai"))
    import orjson

    rendered = orjson.loads(render_response(binding, response))
    assert rendered["id"] == "c1"
    assert rendered["name"] == "main"
    assert "credential" not in rendered


def test_booleans_are_always_rendered(transcoder: Transcoder) -> None:
    binding, _ = transcoder.match("POST", "/v1/credentials/x:verify")  # type: ignore[misc]
    import orjson

    rendered = orjson.loads(render_response(binding, pb.VerifyCredentialResponse(valid=False)))
    assert rendered["valid"] is False


# --- well-known types in the URL, in their JSON form (as grpc-gateway takes them) ----------------


def test_a_timestamp_duration_and_field_mask_are_read_from_their_json_form() -> None:
    from integration_hub.http.transcoder import _set_field_path
    from integration_hub.v1 import chat_pb2, usage_pb2

    usage = usage_pb2.GetUsageRequest()
    _set_field_path(usage, "start_time", "2025-01-01T10:00:00.5+02:00", source="query")
    assert (usage.start_time.seconds, usage.start_time.nanos) == (1735718400, 500_000_000)

    chat = chat_pb2.ChatRequest()
    _set_field_path(chat, "timeout", "1.5s", source="query")
    assert chat.timeout.ToMilliseconds() == 1500

    update = pb.UpdateCredentialRequest()
    _set_field_path(update, "update_mask", "options,display_name", source="query")
    assert list(update.update_mask.paths) == ["options", "display_name"]


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [
        ("start_time", "2025-13-01T00:00:00Z", "RFC 3339"),
        ("start_time", "1735718400", "RFC 3339"),
        ("timeout", "90", "a duration such as 1.5s"),
    ],
)
def test_a_malformed_well_known_value_is_invalid_naming_the_field(
    field: str, raw: str, expected: str
) -> None:
    from integration_hub.http.transcoder import _set_field_path
    from integration_hub.v1 import chat_pb2, usage_pb2

    message = usage_pb2.GetUsageRequest() if field == "start_time" else chat_pb2.ChatRequest()
    with pytest.raises(HubError) as caught:
        _set_field_path(message, field, raw, source="query")
    assert caught.value.metadata["field"] == field
    assert expected in caught.value.message

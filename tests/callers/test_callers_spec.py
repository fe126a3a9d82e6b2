"""ProviderSpec: validation of credential fields, defaults, hints, cross-field rules."""

from __future__ import annotations

import json

import pytest

from callers import registry
from callers.spec import CredentialField, InvalidCredentialField, ProviderSpec

SPEC = ProviderSpec(
    name="example",
    display_name="Example",
    secret_fields=(
        CredentialField("api_key", required=True),
        CredentialField("config", kind="json"),
        CredentialField("key_pem", kind="pem"),
    ),
    hint_field="api_key",
    option_fields=(
        CredentialField("base_url", kind="url", default="https://api.example.com/v1"),
        CredentialField("tier", choices=("free", "pro")),
        CredentialField("region", required=True),
    ),
)

PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"
    "BKcwggSjAgEAAoIBAQC7\n"
    "-----END PRIVATE KEY-----\n"
)

SERVICE_ACCOUNT = json.dumps(
    {
        "type": "service_account",
        "project_id": "demo-project",
        "private_key_id": "abc123",
        "private_key": PEM,
        "client_email": "hub@demo-project.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
)


def problem(secret: dict[str, str], options: dict[str, str], spec: ProviderSpec = SPEC) -> str:
    with pytest.raises(InvalidCredentialField) as caught:
        spec.validate(secret, options)
    return str(caught.value)


def test_valid_credential_passes() -> None:
    SPEC.validate({"api_key": "k", "config": "{}", "key_pem": PEM}, {"region": "eu", "tier": "pro"})


@pytest.mark.parametrize(
    ("secret", "options", "expected"),
    [
        ({}, {"region": "eu"}, "secret.api_key: required"),
        ({"api_key": "k"}, {}, "options.region: required"),
        ({"api_key": ""}, {"region": "eu"}, "secret.api_key: must not be empty"),
        ({"api_key": "k"}, {"region": "  "}, "options.region: must not be empty"),
        (
            {"api_key": "k", "token": "t"},
            {"region": "eu"},
            "secret.token: unknown field (expected: api_key, config, key_pem)",
        ),
        (
            {"api_key": "k"},
            {"region": "eu", "organisation": "x"},
            "options.organisation: unknown field (expected: base_url, region, tier)",
        ),
        ({"api_key": "k"}, {"region": "eu", "tier": "gold"}, "options.tier: must be one of: free, pro"),
    ],
)
def test_field_problems(secret: dict[str, str], options: dict[str, str], expected: str) -> None:
    assert problem(secret, options) == expected


@pytest.mark.parametrize(
    "url", ["ftp://api.example.com", "api.example.com/v1", "https://", "http://[::1", " https://x.example"]
)
def test_url_must_be_http_with_a_host(url: str) -> None:
    assert (
        problem({"api_key": "k"}, {"region": "eu", "base_url": url})
        == "options.base_url: must be an http(s) URL"
    )


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/v1", "https://openrouter.ai/api/v1", "http://[::1]:80"]
)
def test_url_accepts_http_and_https(url: str) -> None:
    SPEC.validate({"api_key": "k"}, {"region": "eu", "base_url": url})


def test_json_must_parse_and_the_message_does_not_echo_it() -> None:
    message = problem({"api_key": "k", "config": '{"private_key": "s3cret'}, {"region": "eu"})
    assert message.startswith("secret.config: must be valid JSON (")
    assert "s3cret" not in message


def test_pem_must_look_like_pem() -> None:
    expected = "secret.key_pem: must be a PEM block (-----BEGIN ...----- ... -----END ...-----)"
    assert problem({"api_key": "k", "key_pem": "MIIEvQIBADANBg"}, {"region": "eu"}) == expected
    mismatched = PEM.replace("END PRIVATE KEY", "END PUBLIC KEY")
    assert problem({"api_key": "k", "key_pem": mismatched}, {"region": "eu"}) == expected


def test_error_carries_field_and_message() -> None:
    with pytest.raises(InvalidCredentialField) as caught:
        SPEC.validate({}, {"region": "eu"})
    assert (caught.value.field, caught.value.message) == ("secret.api_key", "required")


def test_with_defaults_fills_only_unset_options() -> None:
    assert SPEC.with_defaults({"region": "eu"}) == {"base_url": "https://api.example.com/v1", "region": "eu"}
    assert SPEC.with_defaults({"base_url": "http://local:1/v1"})["base_url"] == "http://local:1/v1"


def test_required_option_with_default_is_satisfied_by_it() -> None:
    exotel = registry.spec("exotel")
    exotel.validate({"api_token": "t"}, {"account_sid": "acme", "api_key": "k"})
    assert exotel.with_defaults({})["subdomain"] == "api.exotel.com"
    bad = problem(
        {"api_token": "t"}, {"account_sid": "a", "api_key": "k", "subdomain": "evil.example"}, exotel
    )
    assert bad == "options.subdomain: must be one of: api.exotel.com, api.in.exotel.com"


def test_malformed_spec_fails_at_definition() -> None:
    with pytest.raises(ValueError, match="hint_field 'token' is not a secret field"):
        ProviderSpec(
            name="x", display_name="X", secret_fields=(CredentialField("api_key"),), hint_field="token"
        )
    with pytest.raises(ValueError, match="duplicate option field names"):
        ProviderSpec(
            name="x",
            display_name="X",
            secret_fields=(CredentialField("api_key"),),
            hint_field="api_key",
            option_fields=(CredentialField("a"), CredentialField("a")),
        )


# --- hints -------------------------------------------------------------------------


def test_hint_source_is_the_hint_field() -> None:
    assert registry.spec("openai").hint_source({"api_key": "sk-abc123"}) == "sk-abc123"
    assert (
        registry.spec("bedrock").hint_source({"access_key_id": "AKIAX", "secret_access_key": "s"}) == "AKIAX"
    )


def test_hint_source_of_service_account_is_client_email() -> None:
    for name in ("vertex_ai", "google_speech"):
        hint = registry.spec(name).hint_source({"service_account_json": SERVICE_ACCOUNT})
        assert hint == "hub@demo-project.iam.gserviceaccount.com"


def test_hint_source_of_pem_is_its_body() -> None:
    hint = registry.spec("vonage").hint_source({"private_key": PEM})
    assert hint == "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"


def test_hint_source_falls_back_to_the_alternative_secret() -> None:
    assert registry.spec("twilio").hint_source({"api_key_secret": "key-secret"}) == "key-secret"


def test_hint_source_of_keyless_credential_is_empty() -> None:
    assert registry.spec("openai_compatible").hint_source({}) == ""


# --- cross-field rules ---------------------------------------------------------------

ACCOUNT = "AC" + "0" * 32
KEY_SID = "SK" + "a" * 32


def test_twilio_accepts_auth_token_or_api_key_pair() -> None:
    twilio = registry.spec("twilio")
    twilio.validate({"auth_token": "t"}, {"account_sid": ACCOUNT})
    twilio.validate({"api_key_secret": "s"}, {"account_sid": ACCOUNT, "api_key_sid": KEY_SID})


@pytest.mark.parametrize(
    ("secret", "options", "expected"),
    [
        ({}, {}, "secret.auth_token: required (or secret.api_key_secret with options.api_key_sid)"),
        ({"api_key_secret": "s"}, {}, "options.api_key_sid: required with secret.api_key_secret"),
        ({}, {"api_key_sid": KEY_SID}, "secret.api_key_secret: required with options.api_key_sid"),
        (
            {"auth_token": "t"},
            {"api_key_sid": ACCOUNT},
            "options.api_key_sid: must be a Twilio SID: SK followed by 32 hex digits",
        ),
    ],
)
def test_twilio_either_or_rule(secret: dict[str, str], options: dict[str, str], expected: str) -> None:
    assert problem(secret, {"account_sid": ACCOUNT, **options}, registry.spec("twilio")) == expected


def test_twilio_account_sid_is_checked() -> None:
    message = problem({"auth_token": "t"}, {"account_sid": KEY_SID}, registry.spec("twilio"))
    assert message == "options.account_sid: must be a Twilio SID: AC followed by 32 hex digits"


def test_service_account_file_is_checked() -> None:
    vertex = registry.spec("vertex_ai")
    vertex.validate({"service_account_json": SERVICE_ACCOUNT}, {"project": "demo-project"})
    oauth_client = json.dumps({"installed": {"client_id": "x"}})
    assert problem({"service_account_json": oauth_client}, {"project": "p"}, vertex) == (
        'secret.service_account_json: must be a service-account key file ("type": "service_account")'
    )
    no_key = json.dumps({"type": "service_account", "client_email": "a@b", "token_uri": "https://t"})
    assert problem({"service_account_json": no_key}, {"project": "p"}, vertex) == (
        "secret.service_account_json: service account JSON lacks private_key"
    )


def test_openai_compatible_needs_base_url_but_no_key() -> None:
    spec = registry.spec("openai_compatible")
    spec.validate({}, {"base_url": "http://vllm:8000/v1"})
    assert problem({}, {}, spec) == "options.base_url: required"


def test_azure_openai_requires_endpoint_and_defaults_api_version() -> None:
    spec = registry.spec("azure_openai")
    assert problem({"api_key": "k"}, {}, spec) == "options.endpoint: required"
    assert spec.with_defaults({"endpoint": "https://r.openai.azure.com"})["api_version"] == "2024-10-21"

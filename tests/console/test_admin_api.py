"""AdminService over REST against a real hub: the tenant boundary, the scopes, the
validation, and that a token's secret leaves the hub once only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.harness import HubUnderTest, running_hub, settings_for


@pytest.fixture
async def hut(tmp_path: Path) -> AsyncIterator[HubUnderTest]:
    async with running_hub(settings_for(tmp_path, database_url=None)) as running:
        yield running


async def rest(hut: HubUnderTest, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    async with hut.http.request(method, hut.http_base + path, json=body, headers=hut.headers(token)) as r:
        return r.status, await r.json()


async def test_a_token_is_minted_shown_once_and_revoked_for_its_tenant_only(hut: HubUnderTest) -> None:
    expiry = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    status, created = await rest(
        hut,
        "POST",
        "/v1/tokens",
        hut.tokens.admin,
        {
            "name": "billing",
            "scopes": ["SCOPE_INVOKE"],
            "expire_time": expiry.isoformat().replace("+00:00", "Z"),
        },
    )
    assert status == 200, created
    secret, token_id = created["secret"], created["token"]["id"]
    assert secret.startswith("ihub_")
    assert created["token"]["scopes"] == ["SCOPE_INVOKE"]
    assert created["token"]["expire_time"] == expiry.isoformat().replace("+00:00", "Z")
    assert (await rest(hut, "GET", "/v1/whoami", secret))[1]["tenant_id"] == "acme"

    status, listed = await rest(hut, "GET", "/v1/tokens", hut.tokens.admin)
    assert status == 200
    assert listed["tokens"][0]["id"] == token_id  # newest first
    assert secret not in str(listed)
    assert "hash" not in str(listed)

    # Another tenant's admin sees none of acme's tokens and cannot revoke one.
    status, theirs = await rest(hut, "GET", "/v1/tokens", hut.tokens.other_tenant)
    assert token_id not in str(theirs)
    status, refused = await rest(hut, "POST", f"/v1/tokens/{token_id}:revoke", hut.tokens.other_tenant, {})
    assert status == 404, refused
    assert (await rest(hut, "GET", "/v1/whoami", secret))[0] == 200

    status, revoked = await rest(hut, "POST", f"/v1/tokens/{token_id}:revoke", hut.tokens.admin, {})
    assert status == 200
    first_revocation = revoked["token"]["revoke_time"]
    assert first_revocation
    status, again = await rest(hut, "POST", f"/v1/tokens/{token_id}:revoke", hut.tokens.admin, {})
    assert status == 200
    assert again["token"]["revoke_time"] == first_revocation


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scopes": []}, "scopes"),
        ({"scopes": ["SCOPE_UNSPECIFIED"]}, "scopes"),
        ({"scopes": ["SCOPE_ADMIN"], "expire_time": "2001-01-01T00:00:00Z"}, "expire_time"),
        ({"scopes": ["SCOPE_ADMIN"], "name": "x" * 201}, "name"),
    ],
)
async def test_a_bad_token_request_names_its_field(
    hut: HubUnderTest, body: dict[str, Any], field: str
) -> None:
    status, answer = await rest(hut, "POST", "/v1/tokens", hut.tokens.admin, body)
    assert status == 400
    assert answer["error"]["details"][0]["metadata"]["field"] == field


@pytest.mark.parametrize("path", ["/v1/tokens", "/v1/policy", "/v1/errors", "/v1/keyring"])
async def test_every_admin_read_needs_the_admin_scope(hut: HubUnderTest, path: str) -> None:
    status, answer = await rest(hut, "GET", path, hut.tokens.invoke_only)
    assert status == 403
    assert answer["error"]["details"][0]["reason"] == "MISSING_SCOPE"
    assert (await rest(hut, "GET", path, hut.tokens.admin))[0] == 200


async def test_the_keyring_status_names_keys_but_never_their_material(hut: HubUnderTest) -> None:
    status, answer = await rest(hut, "GET", "/v1/keyring", hut.tokens.admin)
    assert status == 200
    assert answer["primary_key_id"] == "k1"
    assert answer["min_decryption_key_id"] == "k1"
    assert [(k["id"], k["state"], k["credentials"]) for k in answer["keys"]] == [("k1", "primary", "0")]
    keyring = Path(hut.settings.keyring_file or "").read_text()
    material = keyring.split('"material": "')[1].split('"')[0]
    assert material not in str(answer)

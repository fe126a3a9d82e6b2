"""Verify a Hugging Face credential with one cheap authenticated GET, no tokens spent.

On the serverless router the credential is a Hub token, and the Hub says whether it
is valid: GET https://huggingface.co/api/whoami-v2 (what `huggingface_hub.whoami`
calls). The router has no free "list models" of its own, and a test generation
would cost money and depend on some model being served.

For an Inference Endpoint or a self-hosted TGI/TEI, a valid Hub token says nothing
about that server: GET {base_url}/info (served by both TGI and TEI, no generation)
goes through the same authentication as inference, and also proves the server is
up and says which model it serves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callers.base import AuthenticationFailed, PermissionDenied, SecretFields, VerifyResult
from callers.huggingface import WIRE, targets
from callers.openai import transport as http


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _detail(data: Any, router: bool) -> dict[str, str]:
    if not isinstance(data, dict):
        return {}
    if router:
        token = (data.get("auth") or {}).get("accessToken") or {}
        found = {"account": _text(data.get("name")), "token_role": _text(token.get("role"))}
    else:
        found = {"model_id": _text(data.get("model_id")), "version": _text(data.get("version"))}
    return {name: value for name, value in found.items() if value}


class HuggingFaceVerifier:
    async def verify(
        self,
        secret: SecretFields,
        options: Mapping[str, str],
        *,
        timeout: float,
    ) -> VerifyResult:
        router = targets.is_router(targets.server_root(options))
        target = targets.verify_endpoint(options)
        headers = http.with_key(target, secret, WIRE.key_field, required=True)
        try:
            data, _ = await http.send(target, headers, None, timeout)
        except (AuthenticationFailed, PermissionDenied) as exc:
            return VerifyResult(
                valid=False, reason=f"provider rejected the key ({exc.provider_status}): {exc.message}"
            )
        return VerifyResult(valid=True, reason="ok", detail=_detail(data, router))


CALLER = HuggingFaceVerifier()

"""Verify an AWS key against Bedrock: ListFoundationModels, one signed GET, no tokens spent.

Why the control plane rather than STS GetCallerIdentity: it proves more for the same
price, that the key is valid *and* that Bedrock answers it in the configured region.
A key whose IAM policy lacks bedrock:ListFoundationModels is reported as rejected
(403 AccessDeniedException), with AWS's message naming the missing permission.

Endpoint: `control_endpoint_url` when set; otherwise botocore's regional default,
https://bedrock.<region>.amazonaws.com. `endpoint_url` is not reused: it overrides
bedrock-runtime only, and a runtime VPC endpoint does not serve the control plane.
"""

from __future__ import annotations

from collections.abc import Mapping

from callers.base import CallerError, SecretFields, VerifyResult
from callers.bedrock.errors import is_key_rejection
from callers.bedrock.runner import BlockingCall
from callers.bedrock.session import CONTROL_SERVICE, AwsKeys, region_of


class BedrockVerifier:
    async def verify(
        self, secret: SecretFields, options: Mapping[str, str], *, timeout: float
    ) -> VerifyResult:
        region = region_of(options)
        call = BlockingCall(
            CONTROL_SERVICE,
            AwsKeys.from_secret(secret),
            region=region,
            endpoint_url=options.get("control_endpoint_url") or None,
            timeout=timeout,
        )
        try:
            listing = await call.run(lambda client: client.list_foundation_models())
        except CallerError as exc:
            if is_key_rejection(exc):
                status = exc.provider_status if exc.provider_status is not None else "no status"
                return VerifyResult(
                    valid=False, reason=f"provider rejected the key ({status}): {exc.message}"
                )
            raise
        finally:
            call.close()
        models = listing.get("modelSummaries", [])
        return VerifyResult(valid=True, reason="ok", detail={"models": str(len(models)), "region": region})


CALLER = BedrockVerifier()

"""IdentityService: the caller's tenant, token id and scopes, from its token alone."""

from __future__ import annotations

from integration_hub.rpc import CallContext
from integration_hub.v1 import common_pb2
from integration_hub.v1 import identity_pb2 as pb

_SCOPES = {"admin": common_pb2.SCOPE_ADMIN, "invoke": common_pb2.SCOPE_INVOKE}


class IdentityApi:
    async def WhoAmI(self, request: pb.WhoAmIRequest, call: CallContext) -> pb.WhoAmIResponse:
        principal = call.principal
        return pb.WhoAmIResponse(
            tenant_id=principal.tenant_id,
            token_id=principal.token_id,
            scopes=sorted(_SCOPES[scope] for scope in principal.scopes if scope in _SCOPES),
        )

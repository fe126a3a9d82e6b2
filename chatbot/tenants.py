"""The hub, per tenant: one HubClient for each service token the layer was given.

At start every token is asked WhoAmI: its tenant is the one it serves, it must carry
the invoke scope (the layer calls models with it), and two tokens of one tenant are a
configuration error. A caller's own token is checked through the same hub
(`identify`), and never used for anything else.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from chatbot.auth import PermissionDenied, Unauthenticated
from chatbot.errors import ChatbotError, Unavailable
from chatbot.hub_client import HubCallError, HubClient, Identity


class ConfigurationError(ChatbotError):
    """The layer's own settings are wrong; the message says which."""


class TenantHubs:
    def __init__(self, clients: dict[str, HubClient]) -> None:
        if not clients:
            raise ConfigurationError(
                "no service token: the chatbot layer needs a hub token per tenant it serves"
            )
        self._clients = clients
        self._any = next(iter(clients.values()))

    @classmethod
    async def open(cls, target: str, tokens: Sequence[str], *, tls: bool = False) -> TenantHubs:
        clients: dict[str, HubClient] = {}
        try:
            for number, token in enumerate(tokens, start=1):
                client = HubClient(target, token, tls=tls)
                try:
                    identity = await client.whoami()
                except HubCallError as error:
                    await client.close()
                    raise ConfigurationError(
                        f"service token {number}: the hub refused it ({error.code.name})"
                    ) from None
                if "invoke" not in identity.scopes:
                    await client.close()
                    raise ConfigurationError(
                        f"service token {number} (tenant {identity.tenant!r}) lacks the invoke scope"
                    )
                if identity.tenant in clients:
                    await client.close()
                    raise ConfigurationError(
                        f"service token {number}: a second token for tenant {identity.tenant!r}"
                    )
                clients[identity.tenant] = client
        except BaseException:
            for client in clients.values():
                await client.close()
            raise
        return cls(clients)

    def tenants(self) -> frozenset[str]:
        return frozenset(self._clients)

    def hub(self, tenant: str) -> HubClient:
        client = self._clients.get(tenant)
        if client is None:
            raise PermissionDenied(f"this chatbot service has no hub token for tenant {tenant!r}")
        return client

    async def identify(self, caller_token: str) -> Identity:
        try:
            return await self._any.whoami(caller_token)
        except HubCallError as error:
            if error.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                raise Unauthenticated(f"the hub refused this token: {error.message}") from None
            raise Unavailable(f"the hub could not check the token ({error.code.name})") from None

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()

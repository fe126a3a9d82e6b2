"""Per-provider callers: one package per provider, reached through `callers.registry`.

Callers know their provider and nothing of the hub (no store, tenants or transports):
they never import `integration_hub`. Importing this package imports no provider SDK.
"""

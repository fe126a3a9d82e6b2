"""The chatbot layer: retrieval-augmented bots by text, voice and phone, built on the hub.

A client of integration-hub: it reaches every provider through the hub's gRPC API with a
hub token, and imports nothing from integration_hub but the generated client stubs
(integration_hub.v1), so that it proves the hub's API is enough for a real product.
"""

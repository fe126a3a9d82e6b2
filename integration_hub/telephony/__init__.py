"""Telephony: calls placed through a stored credential, their events from the provider's
webhooks, and (later modules) live call media and campaigns.

The path of a call: PlaceCall -> auth -> number checks -> a call row (with a fresh URL
token, stored as its hash) -> credential lookup -> open -> the provider's caller ->
the provider's call id on the row. The provider then posts events to the per-call URL:
token checked -> the provider's signature checked (caller) -> events parsed (caller)
-> applied once and only forward (store) -> watchers woken.
"""

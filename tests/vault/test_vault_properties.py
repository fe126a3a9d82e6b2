"""Property-based round trips and context binding (hypothesis)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from integration_hub.vault import Keyring, OpenError, OpenFailure, SealContext, open_sealed, seal

# One keyring for every example: generating a key per example would only slow hypothesis down.
KEYRING = Keyring.generate().rotate()

# st.text() covers the empty string and arbitrary unicode (it excludes lone surrogates, which
# cannot be encoded as UTF-8 and are not valid identifiers anywhere).
contexts = st.builds(SealContext, tenant_id=st.text(), credential_id=st.text(), provider=st.text())
context_fields = st.sampled_from(["tenant_id", "credential_id", "provider"])


@given(plaintext=st.binary(max_size=4096), context=contexts)
def test_any_plaintext_and_context_round_trip(plaintext: bytes, context: SealContext) -> None:
    assert open_sealed(KEYRING, seal(KEYRING, plaintext, context), context) == plaintext


@given(plaintext=st.binary(max_size=256), context=contexts, field=context_fields, new_value=st.text())
def test_changing_any_one_context_field_breaks_opening(
    plaintext: bytes, context: SealContext, field: str, new_value: str
) -> None:
    assume(getattr(context, field) != new_value)
    blob = seal(KEYRING, plaintext, context)

    with pytest.raises(OpenError) as raised:
        open_sealed(KEYRING, blob, replace(context, **{field: new_value}))
    assert raised.value.cause is OpenFailure.AUTHENTICATION_FAILED


def test_length_prefixing_separates_ab_c_from_a_bc() -> None:
    blob = seal(KEYRING, b"secret", SealContext(tenant_id="ab", credential_id="c", provider="p"))
    with pytest.raises(OpenError):
        open_sealed(KEYRING, blob, SealContext(tenant_id="a", credential_id="bc", provider="p"))


@given(joined=st.text(min_size=1), first_split=st.integers(), second_split=st.integers(), provider=st.text())
def test_moving_a_field_boundary_breaks_opening(
    joined: str, first_split: int, second_split: int, provider: str
) -> None:
    # Same concatenated text, different split between tenant and credential id.
    first = first_split % (len(joined) + 1)
    second = second_split % (len(joined) + 1)
    assume(first != second)
    sealed_for = SealContext(tenant_id=joined[:first], credential_id=joined[first:], provider=provider)
    opened_as = SealContext(tenant_id=joined[:second], credential_id=joined[second:], provider=provider)

    with pytest.raises(OpenError):
        open_sealed(KEYRING, seal(KEYRING, b"secret", sealed_for), opened_as)

"""SQL fragments shared by the backends: column lists, WHERE clauses and limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

CREDENTIAL_COLUMNS = (
    "id, tenant_id, name, provider, options, ciphertext, key_id, hint, secret_fields,"
    " created_at, updated_at, version"
)
# Column names, not a credential (ruff S105 keys on the word "token").
TOKEN_COLUMNS = "id, tenant_id, name, token_hash, scopes, created_at, expires_at, revoked_at"  # noqa: S105
AUDIT_COLUMNS = "at, action, outcome, tenant_id, credential_id, actor, request_id, detail"


def check_limit(limit: int) -> int:
    # SQLite reads a negative LIMIT as "no limit" while Postgres rejects it: refuse it in both.
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    return limit


@dataclass
class Conditions:
    """A WHERE clause built from fixed column fragments; every value is a bound parameter.

    Optional filters are added only when given rather than written as
    "($n IS NULL OR col = $n)", which would keep the planner off the indexes.
    """

    placeholder: Callable[[int], str]
    clauses: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)

    def add(self, column_and_operator: str, value: Any) -> None:
        self.clauses.append(f"{column_and_operator} {self.bind(value)}")

    def add_if_given(self, column_and_operator: str, value: Any | None) -> None:
        if value is not None:
            self.add(column_and_operator, value)

    def bind(self, value: Any) -> str:
        self.args.append(value)
        return self.placeholder(len(self.args))

    def where(self) -> str:
        return f"WHERE {' AND '.join(self.clauses)}" if self.clauses else ""

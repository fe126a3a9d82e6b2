"""open_store: choosing a backend from a database URL."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

import integration_hub.store as store_package
from integration_hub.store import DEFAULT_SQLITE_PATH, PostgresStore, SqliteStore, open_store


@pytest.mark.parametrize("url", ["postgresql://u:pw@db.internal:5432/hub", "postgres://u@localhost/hub"])
def test_postgres_urls_open_a_postgres_store(url: str) -> None:
    assert isinstance(open_store(url), PostgresStore)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///hub.db", "hub.db"),
        ("sqlite:///data/hub.db", "data/hub.db"),
        ("sqlite:////var/lib/hub/hub.db", "/var/lib/hub/hub.db"),
        ("sqlite:///:memory:", ":memory:"),
    ],
)
def test_sqlite_urls_open_a_sqlite_store_at_the_path(url: str, path: str) -> None:
    store = open_store(url)
    assert isinstance(store, SqliteStore)
    assert repr(store) == f"SqliteStore({path!r})"


def test_no_url_opens_sqlite_at_the_default_path() -> None:
    assert DEFAULT_SQLITE_PATH == ".hub/hub.db"
    assert repr(open_store(None)) == f"SqliteStore({DEFAULT_SQLITE_PATH!r})"


async def test_default_store_is_created_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store(None)
    await store.connect()
    try:
        assert await store.migrate() != []
    finally:
        await store.close()
    database = tmp_path / DEFAULT_SQLITE_PATH
    assert stat.S_IMODE(database.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("mysql://root:hunter2@db/hub", "'mysql'"),
        ("redis://localhost", "'redis'"),
        ("hub.db", "no scheme"),
        ("", "no scheme"),
        ("sqlite://relative.db", "sqlite:///"),
        ("sqlite:///", "no file path"),
    ],
)
def test_other_urls_are_refused_naming_the_problem_not_the_password(url: str, named: str) -> None:
    with pytest.raises(ValueError, match=r"scheme|sqlite|path") as raised:
        open_store(url)
    assert named in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_package_exports_the_base_names() -> None:
    for name in (
        "Store",
        "CredentialRow",
        "TokenRow",
        "AuditEvent",
        "StoreError",
        "DuplicateName",
        "StaleWrite",
        "StoreUnavailable",
        "open_store",
        "DEFAULT_SQLITE_PATH",
    ):
        assert name in store_package.__all__
        assert hasattr(store_package, name)

"""The chatbot layer's tables, created by numbered migrations applied once each.

Times are epoch milliseconds (BIGINT) and structured values JSON text, so that one
schema serves SQLite and Postgres. Every row carries its tenant: every query filters
by it, so one tenant's id can never reach another's row.
"""

from __future__ import annotations

from chatbot.db import Database

# (version, statements); {blob} is the database's binary type. Append, never edit.
_MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """CREATE TABLE bots (
                id TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                name TEXT NOT NULL,
                settings TEXT NOT NULL,
                created_ms BIGINT NOT NULL,
                updated_ms BIGINT NOT NULL,
                UNIQUE (tenant, name)
            )""",
            """CREATE TABLE sources (
                id TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                bot_id TEXT NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
                name TEXT NOT NULL,
                kind INTEGER NOT NULL,
                origin TEXT NOT NULL,
                content_hash TEXT NOT NULL,
                chunk_count INTEGER NOT NULL,
                updated_ms BIGINT NOT NULL,
                UNIQUE (bot_id, name)
            )""",
            # A task keeps what it ingests (the upload, or the website's URL) until it ends,
            # so that a restart resumes it; lease_until_ms marks the worker holding it.
            """CREATE TABLE ingestion_tasks (
                id TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                bot_id TEXT NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
                source_name TEXT NOT NULL,
                source_id TEXT NOT NULL,
                kind INTEGER NOT NULL,
                url TEXT NOT NULL,
                filename TEXT NOT NULL,
                data {blob},
                state INTEGER NOT NULL,
                items_done INTEGER NOT NULL,
                items_total INTEGER NOT NULL,
                chunks_written INTEGER NOT NULL,
                errors TEXT NOT NULL,
                skipped_unchanged INTEGER NOT NULL,
                lease_owner TEXT,
                lease_until_ms BIGINT,
                created_ms BIGINT NOT NULL,
                updated_ms BIGINT NOT NULL
            )""",
            "CREATE INDEX ingestion_tasks_pending ON ingestion_tasks (state, created_ms)",
            "CREATE INDEX ingestion_tasks_by_bot ON ingestion_tasks (bot_id, created_ms)",
            """CREATE TABLE sessions (
                id TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                bot_id TEXT NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
                channel INTEGER NOT NULL,
                tokens BIGINT NOT NULL,
                message_count INTEGER NOT NULL,
                created_ms BIGINT NOT NULL,
                updated_ms BIGINT NOT NULL
            )""",
            "CREATE INDEX sessions_by_bot ON sessions (bot_id, updated_ms)",
            """CREATE TABLE messages (
                id TEXT PRIMARY KEY,
                session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
                seq INTEGER NOT NULL,
                role INTEGER NOT NULL,
                text TEXT NOT NULL,
                tokens BIGINT NOT NULL,
                citations TEXT NOT NULL,
                created_ms BIGINT NOT NULL,
                UNIQUE (session_id, seq)
            )""",
        ),
    ),
)


async def migrate(db: Database) -> list[int]:
    """Applies the migrations not applied yet, each in its own transaction; returns them."""
    await db.execute(
        "CREATE TABLE IF NOT EXISTS chatbot_migrations (version INTEGER PRIMARY KEY, applied_ms BIGINT)"
    )
    done = {int(row["version"]) for row in await db.fetch_all("SELECT version FROM chatbot_migrations")}
    applied: list[int] = []
    for version, statements in _MIGRATIONS:
        if version in done:
            continue
        async with db.transaction() as tx:
            # Two processes starting together: the second waits on the first's row, then skips.
            if await tx.execute(
                "INSERT INTO chatbot_migrations (version, applied_ms) VALUES ($1, 0) ON CONFLICT DO NOTHING",
                version,
            ):
                for statement in statements:
                    await tx.execute(statement.replace("{blob}", db.blob_type))
                applied.append(version)
    return applied

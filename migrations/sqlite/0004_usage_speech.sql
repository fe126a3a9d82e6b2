-- Speech calls are counted in seconds of audio (transcribed or synthesized) and in
-- characters synthesized, beside the token counts of LLM calls.
ALTER TABLE usage_records ADD COLUMN audio_seconds REAL NOT NULL DEFAULT 0 CHECK (audio_seconds >= 0);
ALTER TABLE usage_records ADD COLUMN characters INTEGER NOT NULL DEFAULT 0 CHECK (characters >= 0);

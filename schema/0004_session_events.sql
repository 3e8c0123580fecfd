-- 0004: a session's events as rows. Appending to the JSON array in sessions.events rewrote
-- (and re-validated) the whole array on every append, so a session's cost grew with the square
-- of its length (p95 of an append: 0.41 ms for the first 100 events, 95 ms after 10,000).
-- From this migration on, an append inserts one row here; sessions.events stays '[]'
-- (docs/database.md, "Session events").
--
-- seq is contiguous per session, 1..N in append order (the next one is max(seq) + 1, taken
-- under the write lock); created_at is when the event was appended (RFC 3339 UTC, ms, Z);
-- type is the event's "type" member when it is a string; payload is the event itself, the
-- JSON value given to append_event (with its id and timestamp), returned as it was stored.

CREATE TABLE session_events (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    type TEXT,
    payload TEXT NOT NULL,
    CHECK(seq >= 1),
    CHECK(json_valid(payload)),
    FOREIGN KEY (session_id) REFERENCES sessions(id) ON DELETE CASCADE
);

-- one row per (session, seq): the session's events in order, its last seq (max), a page
-- after a seq; also the index the ON DELETE CASCADE looks children up by
CREATE UNIQUE INDEX idx_session_events_seq ON session_events(session_id, seq);

-- Back-fill: every element of every events array, in array order (seq = index + 1). The
-- element's JSON text is rebuilt from json_each, whose value is SQL, not JSON, for scalars
-- (a number is taken from the array's own text: a REAL would round 12345678901234567890);
-- created_at is the event's "timestamp" member when it is a date-time text SQLite can read
-- (YYYY-MM-DD…, converted to UTC), else the session's created_at. A value that is not an array (the
-- CHECK only asks for valid JSON) is left in the column untouched.
INSERT INTO session_events (session_id, seq, created_at, type, payload)
SELECT s.id, e.key + 1,
       coalesce(CASE WHEN e.type = 'object' AND json_type(e.value, '$.timestamp') = 'text'
                          AND json_extract(e.value, '$.timestamp') GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*'
                     THEN strftime('%Y-%m-%dT%H:%M:%fZ', json_extract(e.value, '$.timestamp')) END,
                s.created_at),
       CASE WHEN e.type = 'object' AND json_type(e.value, '$.type') = 'text'
            THEN json_extract(e.value, '$.type') END,
       CASE e.type WHEN 'object' THEN e.value WHEN 'array' THEN e.value WHEN 'text' THEN json_quote(e.value)
                   WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN 'null'
                   ELSE s.events -> e.fullkey END
FROM sessions AS s, json_each(s.events) AS e
WHERE json_type(s.events) = 'array';

UPDATE sessions SET events = '[]' WHERE json_type(events) = 'array' AND events != '[]';

-- 0001_notes.sql -- the example resource's notes (POST/GET/PATCH/DELETE /notes)
-- version counts the note's writes: its ETag, and what If-Match is held to.
CREATE TABLE notes (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	title text NOT NULL,
	body text NOT NULL DEFAULT '',
	tags text[] NOT NULL DEFAULT '{}',
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	version bigint NOT NULL DEFAULT 1
);

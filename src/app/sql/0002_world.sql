-- 0002_world.sql -- TechEmpower's World table: 10,000 rows, each with a
-- random number from 1 to 10,000
CREATE TABLE world (
	id integer PRIMARY KEY,
	randomnumber integer NOT NULL
);
INSERT INTO world (id, randomnumber)
SELECT i, 1 + floor(random() * 10000)::integer
FROM generate_series(1, 10000) AS i;

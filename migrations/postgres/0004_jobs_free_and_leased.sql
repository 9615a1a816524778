-- A claim looked for the first due job in (run_at, id) order and passed over
-- the leased ones row by row: with the handoff of requests beyond the free
-- slots, up to a thousand jobs sit leased at once, and every claim, most of
-- them finding nothing, walked them all. Jobs free to claim and leased jobs
-- now have an index each, so a claim reads the first of either and stops.
DROP INDEX jobs_due;
CREATE INDEX jobs_free ON jobs(run_at, id) WHERE locked_until IS NULL;
CREATE INDEX jobs_leased ON jobs(locked_until) WHERE locked_until IS NOT NULL;

-- The PostgreSQL job store's SQL, all of it (router/jobs/postgres.py runs it by name).
-- Each statement follows a "-- name: <name>" line; parameters are psycopg's %(name)s.
-- Unfinished means status queued or running; everything else is terminal.
-- Times come from the database's clock (now()), so instances on hosts with skewed clocks agree on leases.

-- name: schema
-- Version 1. Created on first start, under an advisory lock so instances starting together don't race.
CREATE TABLE tarash_router_meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE tarash_router_jobs (
    id text PRIMARY KEY,
    kind text NOT NULL,
    route text NOT NULL,
    status text NOT NULL,
    owner text,
    idempotency_key text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    request jsonb NOT NULL,        -- written once
    chain jsonb NOT NULL,          -- written once; attempt configs, never keys
    body jsonb NOT NULL,           -- the mutable rest (status, attempts, vendor job, result...)
    worker text,                   -- the instance holding the lease
    lease_until timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false
);
CREATE INDEX tarash_router_jobs_runnable ON tarash_router_jobs (created_at) WHERE status IN ('queued', 'running');
CREATE INDEX tarash_router_jobs_worker ON tarash_router_jobs (worker) WHERE status IN ('queued', 'running');
CREATE INDEX tarash_router_jobs_listing ON tarash_router_jobs (created_at DESC, id DESC);
CREATE INDEX tarash_router_jobs_route ON tarash_router_jobs (route, created_at);
CREATE INDEX tarash_router_jobs_finished ON tarash_router_jobs (updated_at) WHERE status NOT IN ('queued', 'running');
CREATE UNIQUE INDEX tarash_router_jobs_idempotency ON tarash_router_jobs (COALESCE(owner, ''), idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE TABLE tarash_router_events (
    job_id text NOT NULL,
    seq integer NOT NULL,
    event text NOT NULL,
    data jsonb NOT NULL,
    PRIMARY KEY (job_id, seq)
);
-- Client webhooks (router/webhooks): an outbox, one message per job that asked for one.
CREATE TABLE tarash_router_outbox (
    id text PRIMARY KEY,
    job_id text NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL,
    body jsonb NOT NULL
);
CREATE INDEX tarash_router_outbox_status ON tarash_router_outbox (status, created_at);
CREATE INDEX tarash_router_outbox_job ON tarash_router_outbox (job_id);
-- The budgets' ledger (router/budgets.py): charged USD per client, UTC day, route, provider and model.
CREATE TABLE tarash_router_spend (
    client text NOT NULL,
    day text NOT NULL,             -- YYYY-MM-DD, UTC
    route text NOT NULL,
    provider text NOT NULL,
    model text NOT NULL,
    usd double precision NOT NULL,
    generations integer NOT NULL,
    PRIMARY KEY (client, day, route, provider, model)
);
INSERT INTO tarash_router_meta VALUES ('schema_version', '1');

-- name: migrate_1
-- Version 2: what instances share about vendors (router/cluster.py).
-- A provider's max_concurrency as leased rows: a slot comes back by itself when its holder stops renewing.
CREATE TABLE tarash_router_slots (
    provider text NOT NULL,
    slot integer NOT NULL,
    holder text,                   -- "<instance id> <random>", one per acquisition
    lease_until timestamptz,
    PRIMARY KEY (provider, slot)
);
-- A provider's requests_per_minute as one token bucket per provider.
CREATE TABLE tarash_router_buckets (
    provider text PRIMARY KEY,
    tokens double precision NOT NULL,
    at timestamptz NOT NULL
);
-- Open circuits (a row while open; deleted when one closes).
CREATE TABLE tarash_router_circuits (
    provider text NOT NULL,
    model text NOT NULL,
    failures integer NOT NULL,
    opened_at timestamptz NOT NULL,
    PRIMARY KEY (provider, model)
);
UPDATE tarash_router_meta SET value = '2' WHERE key = 'schema_version';

-- name: migrate_2
-- Version 3: vendor webhooks that reached an instance other than their job's holder (router/webhooks/inbound.py),
-- kept until the holder takes them.
CREATE TABLE tarash_router_pushes (
    job_id text NOT NULL REFERENCES tarash_router_jobs (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, attempt)
);
UPDATE tarash_router_meta SET value = '3' WHERE key = 'schema_version';

-- name: migrate_3
-- Version 4: a pending client webhook is claimed by one instance for each try (router/webhooks/outbound.py);
-- due_at mirrors the body's next_attempt_at so the claim can use an index. And indexes for the job claim.
ALTER TABLE tarash_router_outbox ADD COLUMN due_at timestamptz, ADD COLUMN claimed_by text,
                                 ADD COLUMN claim_until timestamptz;
UPDATE tarash_router_outbox SET due_at = (body ->> 'next_attempt_at')::timestamptz;
CREATE INDEX tarash_router_outbox_due ON tarash_router_outbox (due_at) WHERE status = 'pending';
-- What a claim (and the queued gauge) looks for: unfinished jobs nobody holds, or whose lease lapsed. With these
-- two the planner ORs two small index scans; without them every claim pass read every unfinished job (10,000
-- held jobs: 1.4 ms of the database's CPU per pass, 0.04 ms with them; a pass runs whenever a job ends).
CREATE INDEX tarash_router_jobs_unheld ON tarash_router_jobs (created_at)
    WHERE worker IS NULL AND status IN ('queued', 'running');
CREATE INDEX tarash_router_jobs_lease ON tarash_router_jobs (lease_until) WHERE status IN ('queued', 'running');
UPDATE tarash_router_meta SET value = '4' WHERE key = 'schema_version';

-- name: migrate_4
-- Version 5: a job's events are announced (NOTIFY) only while someone on another instance streams them or waits
-- for the job's end (watch_events). Before, every stored event was announced to every instance: each NOTIFY holds
-- PostgreSQL's cluster-wide notification lock until its commit is on disk (notifying commits run one at a time)
-- and wakes every listening instance, whose listener backend runs a transaction to read it.
ALTER TABLE tarash_router_jobs ADD COLUMN watched_until timestamptz;
UPDATE tarash_router_meta SET value = '5' WHERE key = 'schema_version';

-- name: migrate_5
-- Version 6: client budgets hold for the whole cluster. What a generation still running has reserved against its
-- client's budget is a row every instance counts (before, each instance knew only its own): leased to the
-- instance that admitted it (renewed with its job leases, so a dead instance's reservations lapse), deleted in
-- the same transaction that writes the generation's spend to the ledger.
CREATE TABLE tarash_router_reservations (
    key text PRIMARY KEY,          -- a job's id, or a synchronous generation's reservation key
    client text NOT NULL,
    usd double precision NOT NULL,
    holder text NOT NULL,          -- the instance that admitted it
    lease_until timestamptz NOT NULL
);
CREATE INDEX tarash_router_reservations_client ON tarash_router_reservations (client);
CREATE INDEX tarash_router_reservations_holder ON tarash_router_reservations (holder);
UPDATE tarash_router_meta SET value = '6' WHERE key = 'schema_version';

-- name: schema_timeouts
-- Bounds for preparing the schema (this transaction only) unless the role, the database or PGOPTIONS set
-- their own; the timeouts in force. A statement may run twice as long as it may wait for a lock, so a lock
-- held elsewhere (the usual case) is reported as such.
SELECT CASE WHEN current_setting('lock_timeout') = '0'
            THEN set_config('lock_timeout', %(ms)s || 'ms', true) ELSE current_setting('lock_timeout') END,
       CASE WHEN current_setting('statement_timeout') = '0'
            THEN set_config('statement_timeout', 2 * %(ms)s || 'ms', true)
            ELSE current_setting('statement_timeout') END;

-- name: schema_lock
SELECT pg_advisory_xact_lock(hashtext('tarash_router_schema'));

-- name: has_store
SELECT to_regclass('tarash_router_meta') IS NOT NULL;

-- name: schema_version
SELECT value::int FROM tarash_router_meta WHERE key = 'schema_version';

-- name: insert
-- A job nobody holds yet wakes idle workers on every instance.
WITH inserted AS (
    INSERT INTO tarash_router_jobs (id, kind, route, status, owner, idempotency_key, created_at, updated_at,
                                    request, chain, body, worker, lease_until)
    VALUES (%(id)s, %(kind)s, %(route)s, %(status)s, %(owner)s, %(idempotency_key)s, %(created_at)s,
            %(updated_at)s, %(request)s::jsonb, %(chain)s::jsonb, %(body)s::jsonb, %(worker)s,
            CASE WHEN %(worker)s::text IS NOT NULL THEN now() + make_interval(secs => %(lease)s) END)
    ON CONFLICT DO NOTHING
    RETURNING worker
)
SELECT CASE WHEN worker IS NULL THEN pg_notify('tarash_router_jobs', ' ' || extract(epoch FROM clock_timestamp())) END
FROM inserted;

-- name: save
-- Fenced: only the lease holder (or anyone, for a job nobody holds) writes.
UPDATE tarash_router_jobs SET status = %(status)s, updated_at = %(updated_at)s, body = %(body)s::jsonb
WHERE id = %(id)s AND worker IS NOT DISTINCT FROM %(worker)s;

-- name: claim
-- SKIP LOCKED: concurrent claimers on other instances pass over rows being claimed instead of waiting.
UPDATE tarash_router_jobs AS j
SET worker = %(worker)s, lease_until = now() + make_interval(secs => %(lease)s)
FROM (
    SELECT id FROM tarash_router_jobs
    WHERE status IN ('queued', 'running') AND (worker IS NULL OR lease_until < now())
    ORDER BY created_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
) AS free
WHERE j.id = free.id
RETURNING j.request, j.chain, j.body, j.worker, j.cancel_requested;

-- name: waiting
SELECT count(*) FROM tarash_router_jobs
WHERE status IN ('queued', 'running') AND (worker IS NULL OR lease_until < now());

-- name: renew
UPDATE tarash_router_jobs SET lease_until = now() + make_interval(secs => %(lease)s)
WHERE worker = %(worker)s AND status IN ('queued', 'running')
RETURNING id, cancel_requested;

-- name: release
WITH released AS (
    UPDATE tarash_router_jobs SET worker = NULL, lease_until = NULL
    WHERE worker = %(worker)s AND status IN ('queued', 'running')
    RETURNING id
)
SELECT pg_notify('tarash_router_jobs', ' ' || extract(epoch FROM clock_timestamp()))
FROM (SELECT 1 FROM released LIMIT 1) AS any_released;

-- name: request_cancel
-- The holder hears it at once; a job nobody holds is cancelled by whoever claims it next.
WITH marked AS (
    UPDATE tarash_router_jobs SET cancel_requested = true
    WHERE id = %(id)s AND status IN ('queued', 'running')
    RETURNING id
)
SELECT pg_notify('tarash_router_cancel', id || ' ' || extract(epoch FROM clock_timestamp())) FROM marked;

-- name: get
SELECT request, chain, body, worker, cancel_requested FROM tarash_router_jobs WHERE id = %(id)s;

-- name: find_idempotent
SELECT request, chain, body, worker, cancel_requested FROM tarash_router_jobs
WHERE COALESCE(owner, '') = %(owner)s AND idempotency_key = %(key)s;

-- name: list
-- Newest first; %(after)s is the last id of the previous page (an unknown id: nothing). NULL filters match all.
-- %(fields)s NULL: the whole request and chain; else a brief read: only those request keys (never inline media).
SELECT CASE WHEN %(fields)s::text[] IS NULL THEN request
            ELSE (SELECT COALESCE(jsonb_object_agg(key, value), '{}'::jsonb)
                  FROM jsonb_each(request) WHERE key = ANY(%(fields)s::text[])) END,
       CASE WHEN %(fields)s::text[] IS NULL THEN chain ELSE '[]'::jsonb END,
       body, worker, cancel_requested FROM tarash_router_jobs
WHERE (%(kind)s::text IS NULL OR kind = %(kind)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(route)s::text IS NULL OR route = %(route)s)
  AND (%(owner)s::text IS NULL OR owner = %(owner)s)
  AND (%(after)s::text IS NULL OR (created_at, id) < (SELECT created_at, id FROM tarash_router_jobs WHERE id = %(after)s))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- name: delete
WITH events AS (DELETE FROM tarash_router_events WHERE job_id = %(id)s),
     outbox AS (DELETE FROM tarash_router_outbox WHERE job_id = %(id)s)
DELETE FROM tarash_router_jobs WHERE id = %(id)s;

-- name: prune
WITH gone AS (
    DELETE FROM tarash_router_jobs
    WHERE status NOT IN ('queued', 'running') AND updated_at < %(before)s
    RETURNING id
), events AS (
    DELETE FROM tarash_router_events WHERE job_id IN (SELECT id FROM gone)
), outbox AS (
    DELETE FROM tarash_router_outbox WHERE job_id IN (SELECT id FROM gone)
)
SELECT id FROM gone;

-- name: count
SELECT count(*) FROM tarash_router_jobs;

-- name: append_event
-- Announced only while the job is watched (watch_events): a stream on another instance. The notification carries
-- the job id only: listeners read the row. An update's percentage goes on the job's
-- row too, in the same statement: GET on an instance that does not run the job reads it there (the holder keeps
-- progress in memory; updates are stored when their status or percentage changes, see service.py).
WITH appended AS (
    INSERT INTO tarash_router_events (job_id, seq, event, data)
    VALUES (%(job_id)s, %(seq)s, %(event)s, %(data)s::jsonb)
    ON CONFLICT DO NOTHING
    RETURNING job_id
), progressed AS (
    UPDATE tarash_router_jobs
    SET body = jsonb_set(body, '{progress_percent}', %(data)s::jsonb -> 'progress_percent')
    WHERE id = (SELECT job_id FROM appended) AND %(event)s = 'update' AND status IN ('queued', 'running')
      AND worker IS NOT NULL  -- the holder's live update (an import of history leaves the row as it was)
      AND jsonb_typeof(%(data)s::jsonb -> 'progress_percent') = 'number'
      AND body -> 'progress_percent' IS DISTINCT FROM %(data)s::jsonb -> 'progress_percent'
)
SELECT pg_notify('tarash_router_events', a.job_id || ' ' || extract(epoch FROM clock_timestamp()))
FROM appended AS a JOIN tarash_router_jobs AS j ON j.id = a.job_id
WHERE j.watched_until > now();

-- name: watch_events
-- Someone on another instance than the holder streams the job's events (or waits for its end): announce them for
-- the next %(seconds)s seconds at least. A watcher that goes away stops renewing; the announcements lapse.
UPDATE tarash_router_jobs SET watched_until = greatest(watched_until, now() + make_interval(secs => %(seconds)s))
WHERE id = %(id)s AND status IN ('queued', 'running');

-- name: events
SELECT seq, event, data FROM tarash_router_events WHERE job_id = %(job_id)s AND seq > %(after)s ORDER BY seq;

-- name: last_seqs
-- %(ids)s NULL: every job.
SELECT job_id, max(seq) FROM tarash_router_events
WHERE %(ids)s::text[] IS NULL OR job_id = ANY(%(ids)s)
GROUP BY job_id;

-- name: put_outbox
-- A new state of a message ends the try that claimed it.
INSERT INTO tarash_router_outbox (id, job_id, status, created_at, body, due_at)
VALUES (%(id)s, %(job_id)s, %(status)s, %(created_at)s, %(body)s::jsonb, %(due_at)s)
ON CONFLICT (id) DO UPDATE SET status = excluded.status, body = excluded.body, due_at = excluded.due_at,
                               claimed_by = NULL, claim_until = NULL;

-- name: record_outbox_try
-- A try's outcome, fenced like a job's save: kept only while the instance that made the try still holds the
-- message's claim. One whose claim lapsed and was taken by another instance (which tries again and records that)
-- is refused, so a late, stale outcome never overwrites a newer one (a "retry" over a "delivered").
UPDATE tarash_router_outbox SET status = %(status)s, body = %(body)s::jsonb, due_at = %(due_at)s,
                                claimed_by = NULL, claim_until = NULL
WHERE id = %(id)s AND claimed_by = %(worker)s
RETURNING id;

-- name: claim_outbox
-- Pending messages due by %(now)s (the caller's clock, like next_attempt_at) that nobody claims, or whose claim
-- lapsed (the database's clock): each claimed by one instance for one try. %(ids)s NULL: any message.
UPDATE tarash_router_outbox AS o
SET claimed_by = %(worker)s, claim_until = now() + make_interval(secs => %(lease)s)
FROM (
    SELECT id FROM tarash_router_outbox
    WHERE status = 'pending' AND due_at <= %(now)s AND (claim_until IS NULL OR claim_until < now())
      AND (%(ids)s::text[] IS NULL OR id = ANY(%(ids)s::text[]))
    ORDER BY due_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
) AS free
WHERE o.id = free.id
RETURNING o.body;

-- name: release_outbox
UPDATE tarash_router_outbox SET claimed_by = NULL, claim_until = NULL WHERE claimed_by = %(worker)s;

-- name: outbox_for_job
SELECT body FROM tarash_router_outbox WHERE job_id = %(job_id)s ORDER BY created_at LIMIT 1;

-- name: outbox
SELECT body FROM tarash_router_outbox WHERE status = %(status)s ORDER BY created_at, id;

-- name: add_spend
INSERT INTO tarash_router_spend VALUES (%(client)s, %(day)s, %(route)s, %(provider)s, %(model)s, %(usd)s, %(generations)s)
ON CONFLICT (client, day, route, provider, model)
DO UPDATE SET usd = tarash_router_spend.usd + excluded.usd,
              generations = tarash_router_spend.generations + excluded.generations;

-- name: budget_lock
-- Admissions against one client's budgets one at a time, cluster-wide (released at the transaction's end, so it
-- also works behind a transaction-mode pooler, where a session lock would not).
SELECT pg_advisory_xact_lock(hashtextextended('tarash_router_budget ' || %(client)s, 0));

-- name: reserve_within
-- Reserve %(usd)s for the client if every budget window (first day, last day, budget) has room after the ledger's
-- spend in it and every live reservation of the client; after budget_lock, in its transaction (this statement's
-- snapshot is taken once the lock is held, so it sees every admission before it). The first window without
-- room (1-based) and what it has left, or no row when reserved.
WITH windows AS (
    SELECT * FROM unnest(%(first_days)s::text[], %(last_days)s::text[], %(budgets)s::float8[])
                  WITH ORDINALITY AS w (first_day, last_day, budget, n)
), held AS (
    SELECT coalesce(sum(usd), 0) AS usd FROM tarash_router_reservations
    WHERE client = %(client)s AND lease_until > now()
), room AS (
    SELECT w.n, w.budget - held.usd - coalesce((SELECT sum(s.usd) FROM tarash_router_spend AS s
                                                WHERE s.client = %(client)s
                                                  AND s.day BETWEEN w.first_day AND w.last_day), 0) AS left_usd
    FROM windows AS w, held
), refused AS (
    SELECT n, left_usd FROM room WHERE left_usd <= 0 OR %(usd)s > left_usd ORDER BY n LIMIT 1
), reserved AS (
    INSERT INTO tarash_router_reservations
    SELECT %(key)s, %(client)s, %(usd)s, %(holder)s, now() + make_interval(secs => %(lease)s)
    WHERE NOT EXISTS (SELECT 1 FROM refused)
    ON CONFLICT (key) DO UPDATE SET usd = excluded.usd, holder = excluded.holder, lease_until = excluded.lease_until
)
SELECT n, left_usd FROM refused;

-- name: reserved_spend
SELECT client, sum(usd) FROM tarash_router_reservations
WHERE lease_until > now() AND (%(client)s::text IS NULL OR client = %(client)s)
GROUP BY client;

-- name: release_reservation
DELETE FROM tarash_router_reservations WHERE key = %(key)s;

-- name: reservations_renew
-- With the holder's job leases; lapsed rows (their holder died) are cleared here too.
WITH renewed AS (
    UPDATE tarash_router_reservations SET lease_until = now() + make_interval(secs => %(lease)s)
    WHERE holder = %(holder)s RETURNING key
)
DELETE FROM tarash_router_reservations WHERE lease_until < now() - interval '1 hour' AND holder <> %(holder)s;

-- name: spend
SELECT client, day, route, provider, model, usd, generations FROM tarash_router_spend
WHERE day BETWEEN %(first_day)s AND %(last_day)s AND (%(client)s::text IS NULL OR client = %(client)s)
ORDER BY day, client, route;

-- name: slots_ensure
INSERT INTO tarash_router_slots (provider, slot)
SELECT %(provider)s, n FROM generate_series(0, %(limit)s - 1) AS n
ON CONFLICT DO NOTHING;

-- name: slot_acquire
-- Slots numbered at or above the limit are never handed out (the limit went down since they were made).
UPDATE tarash_router_slots AS s
SET holder = %(holder)s, lease_until = now() + make_interval(secs => %(lease)s)
FROM (
    SELECT provider, slot FROM tarash_router_slots
    WHERE provider = %(provider)s AND slot < %(limit)s AND (holder IS NULL OR lease_until < now())
    ORDER BY slot
    LIMIT 1
    FOR UPDATE SKIP LOCKED
) AS free
WHERE s.provider = free.provider AND s.slot = free.slot
RETURNING s.slot;

-- name: slot_release
WITH freed AS (
    UPDATE tarash_router_slots SET holder = NULL, lease_until = NULL
    WHERE provider = %(provider)s AND holder = %(holder)s
    RETURNING provider
)
SELECT pg_notify('tarash_router_slots', provider || ' ' || extract(epoch FROM clock_timestamp())) FROM freed;

-- name: slots_renew
UPDATE tarash_router_slots SET lease_until = now() + make_interval(secs => %(lease)s)
WHERE holder LIKE %(prefix)s;

-- name: slots_release
UPDATE tarash_router_slots SET holder = NULL, lease_until = NULL WHERE holder LIKE %(prefix)s;

-- name: bucket_take
-- Refill by the time passed, then take one token if there is one. No row back: none to take.
INSERT INTO tarash_router_buckets AS b VALUES (%(provider)s, %(rate)s - 1, now())
ON CONFLICT (provider) DO UPDATE
SET tokens = least(%(rate)s, b.tokens + extract(epoch FROM now() - b.at) * %(rate)s / 60.0) - 1, at = now()
WHERE least(%(rate)s, b.tokens + extract(epoch FROM now() - b.at) * %(rate)s / 60.0) >= 1
RETURNING tokens;

-- name: bucket_wait
-- Seconds until the bucket holds a whole token.
SELECT greatest(0, (1 - least(%(rate)s, tokens + extract(epoch FROM now() - at) * %(rate)s / 60.0)) * 60.0 / %(rate)s)
FROM tarash_router_buckets WHERE provider = %(provider)s;

-- name: circuit_open
WITH opened AS (
    INSERT INTO tarash_router_circuits VALUES (%(provider)s, %(model)s, %(failures)s, now())
    ON CONFLICT (provider, model) DO UPDATE SET failures = excluded.failures, opened_at = excluded.opened_at
    RETURNING provider, model
)
SELECT pg_notify('tarash_router_circuits', provider || E'\t' || model || ' ' || extract(epoch FROM clock_timestamp()))
FROM opened;

-- name: circuit_close
WITH closed AS (DELETE FROM tarash_router_circuits WHERE provider = %(provider)s AND model = %(model)s
                RETURNING provider, model)
SELECT pg_notify('tarash_router_circuits', provider || E'\t' || model || ' ' || extract(epoch FROM clock_timestamp()))
FROM closed;

-- name: circuits
-- Every open circuit with how long ago it opened (the database's clock, so instances agree).
SELECT provider, model, failures, extract(epoch FROM now() - opened_at) FROM tarash_router_circuits;

-- name: probe
-- A LISTEN connection's test of itself: sent through the pool, as every notice is (see PostgresJobStore.watch).
SELECT pg_notify(%(channel)s, %(payload)s);

-- name: unfinished
SELECT request, chain, body, worker, cancel_requested FROM tarash_router_jobs
WHERE status IN ('queued', 'running')
ORDER BY created_at, id;

-- name: note_push
-- A verified vendor push about an unfinished job: kept, and announced to every instance (its holder acts on it).
WITH noted AS (
    INSERT INTO tarash_router_pushes (job_id, attempt)
    SELECT id, %(attempt)s FROM tarash_router_jobs WHERE id = %(id)s AND status IN ('queued', 'running')
    ON CONFLICT (job_id, attempt) DO UPDATE SET received_at = now()
    RETURNING job_id
)
SELECT pg_notify('tarash_router_pushes', job_id || ' ' || extract(epoch FROM clock_timestamp())) FROM noted;

-- name: take_pushes
-- The pushes kept for jobs %(worker)s holds (for job %(id)s only, when given), deleted as they are read.
DELETE FROM tarash_router_pushes AS p USING tarash_router_jobs AS j
WHERE p.job_id = j.id AND j.worker = %(worker)s AND (%(id)s::text IS NULL OR p.job_id = %(id)s)
RETURNING p.job_id;

-- Least-privilege PostgreSQL roles for Document Exchanger (docs/operations.md, "Deploy").
--
-- Run as the owner of the broker database, after `exchanger migrate` (tables created by a later
-- migration need this script run again). The roles log in with passwords you set afterwards
-- (ALTER ROLE … PASSWORD …, or certificates); none is a superuser or owns a table.
--
--   exchanger_worker        every worker: s3-copy, pre-uploader, uploader, re-OCR, search-text,
--                           status-update and dlq. Receives, acknowledges and sends messages,
--                           publishes events, reads queue definitions; runs the retention sweep.
--                           It cannot create, seal or delete queues, nor touch exchanges or
--                           deployments. (VACUUM by a non-owner is skipped with a warning.)
--   exchanger_orchestrator  the orchestrator and the supervisors: the control plane; every broker
--                           and control-plane table.
--
--   exchanger_case_writer   whatever touches the case databases: the orchestrator's copy (reads
--                           the source case, writes the destination's rows and its bookkeeping
--                           tables), status-update, re-OCR and search-text. Create the role here
--                           once; then run the block at the end of this file in every case
--                           database, connected to it as its owner.

CREATE ROLE exchanger_worker LOGIN;
GRANT USAGE ON SCHEMA public TO exchanger_worker;
GRANT SELECT ON exchanger_migrations, broker_queues, broker_subscriptions TO exchanger_worker;
-- Sending locks the target queue's row (FOR KEY SHARE, against a concurrent seal), which PostgreSQL
-- allows only with UPDATE on some column: one bookkeeping column, not the queue's attributes.
GRANT UPDATE (updated_at) ON broker_queues TO exchanger_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON broker_messages, broker_queue_stats TO exchanger_worker;
GRANT SELECT, INSERT ON broker_events TO exchanger_worker;
GRANT SELECT, INSERT, UPDATE ON exchanger_dead_letters TO exchanger_worker;
-- Each worker announces itself, renews and withdraws its own row, and forgets long-expired ones
-- (broker schema version 6), so `exchanger ps` lists it.
GRANT SELECT, INSERT, UPDATE, DELETE ON exchanger_worker_presence TO exchanger_worker;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO exchanger_worker;

CREATE ROLE exchanger_orchestrator LOGIN;
GRANT USAGE ON SCHEMA public TO exchanger_orchestrator;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO exchanger_orchestrator;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO exchanger_orchestrator;

CREATE ROLE exchanger_case_writer LOGIN;

-- ==== per case database: run connected to each case database (psql -d case_42 -f …) ====
-- CONNECT and TEMPORARY on the database come from PUBLIC by default; grant them if revoked.
-- CREATE on the schema lets the copy create its bookkeeping tables (exchange_id_map,
-- exchange_documents, …) and status-update its batch-status table; they belong to the role.
GRANT USAGE, CREATE ON SCHEMA public TO exchanger_case_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO exchanger_case_writer;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO exchanger_case_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO exchanger_case_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO exchanger_case_writer;

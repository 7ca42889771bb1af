/// One versioned change to the control database, in both dialects.
struct Migration: Sendable {
    var version: Int
    var name: String
    var postgres: String
    var sqlite: String
}

/// The control database's migrations, applied in order by `exchanger migrate`.
enum BrokerSchema {
    /// The newest version this build knows; the broker refuses to run on an older schema.
    static var currentVersion: Int { migrations.last?.version ?? 0 }

    static let migrations: [Migration] = [
        Migration(version: 1, name: "broker", postgres: postgresV1, sqlite: sqliteV1),
        Migration(version: 2, name: "dead letters, event log by job and type", postgres: postgresV2, sqlite: sqliteV2),
        Migration(version: 3, name: "supervisor deployments and workers", postgres: postgresV3, sqlite: sqliteV3),
        Migration(version: 4, name: "exchanges and their resources", postgres: postgresV4, sqlite: sqliteV4),
        Migration(version: 5, name: "skipped documents and per-document outcomes", postgres: postgresV5, sqlite: sqliteV5),
        Migration(version: 6, name: "worker presence", postgres: postgresV6, sqlite: sqliteV6),
    ]

    static let postgresV1 = #"""
    CREATE TABLE broker_queues (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9_.-]{1,80}$'),
        visibility_timeout_ms bigint NOT NULL CHECK (visibility_timeout_ms BETWEEN 0 AND 43200000),
        max_receive_count integer NOT NULL CHECK (max_receive_count BETWEEN 1 AND 1000),
        dead_letter_queue text NULL,
        delay_ms bigint NOT NULL CHECK (delay_ms BETWEEN 0 AND 900000),
        retention_ms bigint NOT NULL CHECK (retention_ms BETWEEN 60000 AND 1209600000),
        max_message_bytes integer NOT NULL CHECK (max_message_bytes BETWEEN 1024 AND 1048576),
        exchange_id text NULL,
        program text NULL,
        sealed boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX broker_queues_exchange ON broker_queues (exchange_id) WHERE exchange_id IS NOT NULL;
    CREATE INDEX broker_queues_program ON broker_queues (program) WHERE program IS NOT NULL;

    -- Messages are deleted on acknowledgement, so the table stays small; it is vacuumed eagerly.
    CREATE TABLE broker_messages (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        queue_id bigint NOT NULL,
        message_id uuid NOT NULL,
        body text NOT NULL,
        attributes jsonb NULL,
        event_id text NULL,
        sent_at timestamptz NOT NULL DEFAULT now(),
        visible_at timestamptz NOT NULL,
        receive_count integer NOT NULL DEFAULT 0,
        receipt uuid NULL,
        first_received_at timestamptz NULL,
        source_queue text NULL
    ) WITH (
        fillfactor = 85,
        autovacuum_vacuum_scale_factor = 0.01,
        autovacuum_vacuum_threshold = 1000,
        autovacuum_analyze_scale_factor = 0.02,
        autovacuum_vacuum_cost_delay = 1
    );
    -- The only secondary index: receives walk it in order; counters and the retention sweep use
    -- its range too (visible_at >= sent_at always holds, so visible_at <= cutoff implies expired).
    CREATE INDEX broker_messages_ready ON broker_messages (queue_id, visible_at, id);

    -- Message totals per queue, spread over 16 slots so concurrent writers rarely share a row.
    CREATE TABLE broker_queue_stats (
        queue_id bigint NOT NULL,
        slot smallint NOT NULL,
        messages bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (queue_id, slot)
    ) WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 500);

    CREATE FUNCTION broker_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO broker_queue_stats AS s (queue_id, slot, messages)
        SELECT queue_id, (pg_backend_pid() % 16)::smallint, count(*) FROM inserted_rows GROUP BY queue_id
        ON CONFLICT (queue_id, slot) DO UPDATE SET messages = s.messages + EXCLUDED.messages;
        RETURN NULL;
    END $$;
    CREATE FUNCTION broker_count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO broker_queue_stats AS s (queue_id, slot, messages)
        SELECT queue_id, (pg_backend_pid() % 16)::smallint, -count(*) FROM deleted_rows GROUP BY queue_id
        ON CONFLICT (queue_id, slot) DO UPDATE SET messages = s.messages + EXCLUDED.messages;
        RETURN NULL;
    END $$;
    CREATE TRIGGER broker_messages_counted_insert AFTER INSERT ON broker_messages
        REFERENCING NEW TABLE AS inserted_rows FOR EACH STATEMENT EXECUTE FUNCTION broker_count_inserted();
    CREATE TRIGGER broker_messages_counted_delete AFTER DELETE ON broker_messages
        REFERENCING OLD TABLE AS deleted_rows FOR EACH STATEMENT EXECUTE FUNCTION broker_count_deleted();

    CREATE TABLE broker_subscriptions (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        topic text NOT NULL CHECK (topic ~ '^[A-Za-z0-9_.-]{1,80}$'),
        queue_id bigint NOT NULL REFERENCES broker_queues (id) ON DELETE CASCADE,
        filter_policy text NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        UNIQUE (topic, queue_id)
    );
    CREATE INDEX broker_subscriptions_queue ON broker_subscriptions (queue_id);

    -- Every published event, once per event id: the audit log progress and reports are computed from.
    CREATE TABLE broker_events (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_id text NOT NULL UNIQUE,
        topic text NOT NULL,
        body text NOT NULL,
        attributes jsonb NULL,
        delivered_to integer NOT NULL DEFAULT 0,
        published_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX broker_events_published ON broker_events (published_at);
    """#

    static let sqliteV1 = #"""
    CREATE TABLE broker_queues (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        visibility_timeout_ms INTEGER NOT NULL CHECK (visibility_timeout_ms BETWEEN 0 AND 43200000),
        max_receive_count INTEGER NOT NULL CHECK (max_receive_count BETWEEN 1 AND 1000),
        dead_letter_queue TEXT NULL,
        delay_ms INTEGER NOT NULL CHECK (delay_ms BETWEEN 0 AND 900000),
        retention_ms INTEGER NOT NULL CHECK (retention_ms BETWEEN 60000 AND 1209600000),
        max_message_bytes INTEGER NOT NULL CHECK (max_message_bytes BETWEEN 1024 AND 1048576),
        exchange_id TEXT NULL,
        program TEXT NULL,
        sealed INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX broker_queues_exchange ON broker_queues (exchange_id) WHERE exchange_id IS NOT NULL;
    CREATE INDEX broker_queues_program ON broker_queues (program) WHERE program IS NOT NULL;

    CREATE TABLE broker_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        queue_id INTEGER NOT NULL,
        message_id TEXT NOT NULL,
        body TEXT NOT NULL,
        attributes TEXT NULL,
        event_id TEXT NULL,
        sent_at INTEGER NOT NULL,
        visible_at INTEGER NOT NULL,
        receive_count INTEGER NOT NULL DEFAULT 0,
        receipt TEXT NULL,
        first_received_at INTEGER NULL,
        source_queue TEXT NULL
    );
    CREATE INDEX broker_messages_ready ON broker_messages (queue_id, visible_at, id);

    CREATE TABLE broker_queue_stats (
        queue_id INTEGER PRIMARY KEY,
        messages INTEGER NOT NULL DEFAULT 0
    );
    CREATE TRIGGER broker_messages_counted_insert AFTER INSERT ON broker_messages BEGIN
        INSERT INTO broker_queue_stats (queue_id, messages) VALUES (NEW.queue_id, 1)
        ON CONFLICT (queue_id) DO UPDATE SET messages = messages + 1;
    END;
    CREATE TRIGGER broker_messages_counted_delete AFTER DELETE ON broker_messages BEGIN
        UPDATE broker_queue_stats SET messages = messages - 1 WHERE queue_id = OLD.queue_id;
    END;

    CREATE TABLE broker_subscriptions (
        id INTEGER PRIMARY KEY,
        topic TEXT NOT NULL,
        queue_id INTEGER NOT NULL REFERENCES broker_queues (id) ON DELETE CASCADE,
        filter_policy TEXT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (topic, queue_id)
    );
    CREATE INDEX broker_subscriptions_queue ON broker_subscriptions (queue_id);

    CREATE TABLE broker_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        topic TEXT NOT NULL,
        body TEXT NOT NULL,
        attributes TEXT NULL,
        delivered_to INTEGER NOT NULL DEFAULT 0,
        published_at INTEGER NOT NULL
    );
    CREATE INDEX broker_events_published ON broker_events (published_at);
    """#

    // MARK: Version 2

    /// Dead letters recorded by `exchanger-dlq` for inspection and redrive (one row per original
    /// message id, so a dead letter delivered twice is recorded once), and an index on the event
    /// log for progress queries by job and event type. Attributes are stored in the
    /// `MessageAttributeValue` form `{"name": {"type": "String", "value": "…"}}`.
    static let postgresV2 = #"""
    CREATE TABLE exchanger_dead_letters (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        message_id text NOT NULL UNIQUE,
        queue text NOT NULL,
        program text NULL,
        exchange_id text NULL,
        job_id text NULL,
        case_id bigint NULL,
        source_case_id bigint NULL,
        batch_id bigint NULL,
        document_id bigint NULL,
        body text NOT NULL,
        attributes text NULL,
        receive_count integer NOT NULL DEFAULT 0,
        error text NOT NULL,
        reason text NOT NULL,
        failed_at timestamptz NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now(),
        redriven_at timestamptz NULL,
        redrive_count integer NOT NULL DEFAULT 0
    );
    CREATE INDEX exchanger_dead_letters_job ON exchanger_dead_letters (job_id);
    CREATE INDEX exchanger_dead_letters_queue ON exchanger_dead_letters (queue);

    CREATE INDEX broker_events_job_type ON broker_events ((attributes->'jobId'->>'value'), (attributes->'eventType'->>'value'));
    """#

    static let sqliteV2 = #"""
    CREATE TABLE exchanger_dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id TEXT NOT NULL UNIQUE,
        queue TEXT NOT NULL,
        program TEXT NULL,
        exchange_id TEXT NULL,
        job_id TEXT NULL,
        case_id INTEGER NULL,
        source_case_id INTEGER NULL,
        batch_id INTEGER NULL,
        document_id INTEGER NULL,
        body TEXT NOT NULL,
        attributes TEXT NULL,
        receive_count INTEGER NOT NULL DEFAULT 0,
        error TEXT NOT NULL,
        reason TEXT NOT NULL,
        failed_at INTEGER NOT NULL,
        recorded_at INTEGER NOT NULL,
        redriven_at INTEGER NULL,
        redrive_count INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX exchanger_dead_letters_job ON exchanger_dead_letters (job_id);
    CREATE INDEX exchanger_dead_letters_queue ON exchanger_dead_letters (queue);

    CREATE INDEX broker_events_job_type ON broker_events
        (json_extract(attributes, '$.jobId.value'), json_extract(attributes, '$.eventType.value'));
    """#

    // MARK: Version 3

    /// The control-plane rows the orchestrator and the supervisors share (module `Deployments`):
    /// one deployment per (exchange, program) — "run program P on queue Q between min and max
    /// processes, desired state running|stopped" — with the supervisor that owns it and that
    /// ownership's lease; one row per supervisor with its heartbeat lease; one row per worker
    /// process a supervisor runs (`deployment_id` is '' for global programs). Leases are compared
    /// with the database clock. The UNIQUE (exchange_id, program) index leads with exchange_id, so it
    /// is also the index for lookups by exchange.
    static let postgresV3 = #"""
    CREATE TABLE exchanger_deployments (
        id text PRIMARY KEY CHECK (id <> ''),
        exchange_id text NOT NULL CHECK (exchange_id <> ''),
        program text NOT NULL CHECK (program <> ''),
        queue text NOT NULL CHECK (queue <> ''),
        min_procs integer NOT NULL CHECK (min_procs >= 0),
        max_procs integer NOT NULL,
        messages_per_proc integer NULL CHECK (messages_per_proc IS NULL OR messages_per_proc >= 1),
        desired_state text NOT NULL DEFAULT 'running' CHECK (desired_state IN ('running', 'stopped')),
        owner text NULL,
        lease_expires_at timestamptz NULL,
        target_procs integer NOT NULL DEFAULT 0,
        running_procs integer NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CHECK (max_procs >= min_procs),
        UNIQUE (exchange_id, program)
    );
    CREATE INDEX exchanger_deployments_owner ON exchanger_deployments (owner) WHERE owner IS NOT NULL;

    CREATE TABLE exchanger_supervisors (
        id text PRIMARY KEY CHECK (id <> ''),
        hostname text NOT NULL,
        pid integer NOT NULL,
        started_at timestamptz NOT NULL DEFAULT now(),
        heartbeat_at timestamptz NOT NULL DEFAULT now(),
        lease_expires_at timestamptz NOT NULL,
        http_port integer NULL,
        status text NOT NULL DEFAULT 'running'
    );

    CREATE TABLE exchanger_workers (
        supervisor_id text NOT NULL,
        program text NOT NULL,
        instance integer NOT NULL CHECK (instance >= 0),
        deployment_id text NOT NULL DEFAULT '',
        pid integer NULL,
        state text NOT NULL,
        started_at timestamptz NULL,
        restarts integer NOT NULL DEFAULT 0,
        last_exit_status integer NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (supervisor_id, program, deployment_id, instance)
    );
    CREATE INDEX exchanger_workers_deployment ON exchanger_workers (deployment_id) WHERE deployment_id <> '';
    """#

    /// SQLite keeps times as INTEGER milliseconds since 1970, from the caller's clock (one host).
    /// `broker_notifications` counts the notifications sent per name (``BrokerTransaction/notify(_:)``):
    /// SQLite has no NOTIFY, so a waiter compares the count after every commit it notices.
    static let sqliteV3 = #"""
    CREATE TABLE exchanger_deployments (
        id TEXT PRIMARY KEY CHECK (id <> ''),
        exchange_id TEXT NOT NULL CHECK (exchange_id <> ''),
        program TEXT NOT NULL CHECK (program <> ''),
        queue TEXT NOT NULL CHECK (queue <> ''),
        min_procs INTEGER NOT NULL CHECK (min_procs >= 0),
        max_procs INTEGER NOT NULL,
        messages_per_proc INTEGER NULL CHECK (messages_per_proc IS NULL OR messages_per_proc >= 1),
        desired_state TEXT NOT NULL DEFAULT 'running' CHECK (desired_state IN ('running', 'stopped')),
        owner TEXT NULL,
        lease_expires_at INTEGER NULL,
        target_procs INTEGER NOT NULL DEFAULT 0,
        running_procs INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        CHECK (max_procs >= min_procs),
        UNIQUE (exchange_id, program)
    );
    CREATE INDEX exchanger_deployments_owner ON exchanger_deployments (owner) WHERE owner IS NOT NULL;

    CREATE TABLE exchanger_supervisors (
        id TEXT PRIMARY KEY CHECK (id <> ''),
        hostname TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        heartbeat_at INTEGER NOT NULL,
        lease_expires_at INTEGER NOT NULL,
        http_port INTEGER NULL,
        status TEXT NOT NULL DEFAULT 'running'
    );

    CREATE TABLE exchanger_workers (
        supervisor_id TEXT NOT NULL,
        program TEXT NOT NULL,
        instance INTEGER NOT NULL CHECK (instance >= 0),
        deployment_id TEXT NOT NULL DEFAULT '',
        pid INTEGER NULL,
        state TEXT NOT NULL,
        started_at INTEGER NULL,
        restarts INTEGER NOT NULL DEFAULT 0,
        last_exit_status INTEGER NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (supervisor_id, program, deployment_id, instance)
    );
    CREATE INDEX exchanger_workers_deployment ON exchanger_workers (deployment_id) WHERE deployment_id <> '';

    CREATE TABLE broker_notifications (
        name TEXT PRIMARY KEY,
        seq INTEGER NOT NULL DEFAULT 0
    );
    """#

    // MARK: Version 4

    /// The orchestrator's state (module `Orchestrator`): one row per exchange, moved only by
    /// compare-and-set on `state` (and `version`), with the owner lease any replica takes to resume
    /// it, the payload cursor and the counts; and every resource created for an exchange (queue,
    /// subscription, deployment), recorded before it is created, so teardown never reconstructs a name.
    static let postgresV4 = #"""
    CREATE TABLE exchanges (
        job_id text PRIMARY KEY CHECK (job_id <> ''),
        idempotency_key text NOT NULL UNIQUE CHECK (idempotency_key <> ''),
        request text NOT NULL,
        source_case_id bigint NOT NULL,
        destination_case_id bigint NOT NULL,
        batch_id bigint NOT NULL,
        state text NOT NULL CHECK (state IN ('ACCEPTED', 'PROVISIONING', 'COPYING_DATABASE', 'CONSTRUCTING_PAYLOAD',
            'PROCESSING', 'DRAINING', 'TEARING_DOWN', 'FINISHED', 'FAILED', 'CANCELLED')),
        teardown_target text NULL CHECK (teardown_target IS NULL OR teardown_target IN ('FAILED', 'CANCELLED')),
        version bigint NOT NULL DEFAULT 1,
        total_documents integer NULL,
        payload_sent integer NOT NULL DEFAULT 0,
        documents_copied integer NULL,
        documents_not_found integer NULL,
        documents_failed integer NULL,
        stage_counts text NULL,
        error text NULL,
        owner text NULL,
        lease_expires_at timestamptz NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        finished_at timestamptz NULL
    );
    CREATE INDEX exchanges_open ON exchanges (lease_expires_at, updated_at)
        WHERE state NOT IN ('FINISHED', 'FAILED', 'CANCELLED');
    CREATE INDEX exchanges_state ON exchanges (state, created_at);
    CREATE INDEX exchanges_destination ON exchanges (destination_case_id, created_at);
    CREATE INDEX exchanges_source ON exchanges (source_case_id, created_at);

    CREATE TABLE exchange_resources (
        job_id text NOT NULL REFERENCES exchanges (job_id) ON DELETE CASCADE,
        kind text NOT NULL CHECK (kind IN ('queue', 'subscription', 'deployment')),
        name text NOT NULL CHECK (name <> ''),
        detail text NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        removed_at timestamptz NULL,
        PRIMARY KEY (job_id, kind, name)
    );
    """#

    /// Times are INTEGER milliseconds since 1970 from the caller's clock, as in version 3.
    static let sqliteV4 = #"""
    CREATE TABLE exchanges (
        job_id TEXT PRIMARY KEY CHECK (job_id <> ''),
        idempotency_key TEXT NOT NULL UNIQUE CHECK (idempotency_key <> ''),
        request TEXT NOT NULL,
        source_case_id INTEGER NOT NULL,
        destination_case_id INTEGER NOT NULL,
        batch_id INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('ACCEPTED', 'PROVISIONING', 'COPYING_DATABASE', 'CONSTRUCTING_PAYLOAD',
            'PROCESSING', 'DRAINING', 'TEARING_DOWN', 'FINISHED', 'FAILED', 'CANCELLED')),
        teardown_target TEXT NULL CHECK (teardown_target IS NULL OR teardown_target IN ('FAILED', 'CANCELLED')),
        version INTEGER NOT NULL DEFAULT 1,
        total_documents INTEGER NULL,
        payload_sent INTEGER NOT NULL DEFAULT 0,
        documents_copied INTEGER NULL,
        documents_not_found INTEGER NULL,
        documents_failed INTEGER NULL,
        stage_counts TEXT NULL,
        error TEXT NULL,
        owner TEXT NULL,
        lease_expires_at INTEGER NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        finished_at INTEGER NULL
    );
    CREATE INDEX exchanges_open ON exchanges (lease_expires_at, updated_at)
        WHERE state NOT IN ('FINISHED', 'FAILED', 'CANCELLED');
    CREATE INDEX exchanges_state ON exchanges (state, created_at);
    CREATE INDEX exchanges_destination ON exchanges (destination_case_id, created_at);
    CREATE INDEX exchanges_source ON exchanges (source_case_id, created_at);

    CREATE TABLE exchange_resources (
        job_id TEXT NOT NULL REFERENCES exchanges (job_id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('queue', 'subscription', 'deployment')),
        name TEXT NOT NULL CHECK (name <> ''),
        detail TEXT NULL,
        created_at INTEGER NOT NULL,
        removed_at INTEGER NULL,
        PRIMARY KEY (job_id, kind, name)
    );
    """#

    // MARK: Version 5

    /// The documents a skipping exchange left out (`skipExchanged`), and the documents that did
    /// not arrive, listed by destination id when the exchange ends (JSON:
    /// `{"failed":[…],"notFound":[…]}`, each list capped).
    static let postgresV5 = #"""
    ALTER TABLE exchanges ADD COLUMN documents_skipped integer NULL;
    ALTER TABLE exchanges ADD COLUMN document_outcomes text NULL;
    """#

    static let sqliteV5 = #"""
    ALTER TABLE exchanges ADD COLUMN documents_skipped INTEGER NULL;
    ALTER TABLE exchanges ADD COLUMN document_outcomes TEXT NULL;
    """#

    // MARK: Version 6

    /// Every worker process announces itself here (module `Deployments`, `WorkerPresence`), bound
    /// to a supervisor or not, and renews its row while it runs: `exchanger ps` shows the replicas
    /// a container platform started, which no supervisor reports.
    static let postgresV6 = #"""
    CREATE TABLE exchanger_worker_presence (
        id text PRIMARY KEY CHECK (id <> ''),
        hostname text NOT NULL,
        pid integer NOT NULL,
        program text NOT NULL,
        queue text NULL,
        supervisor_id text NULL,
        deployment_id text NULL,
        started_at timestamptz NOT NULL,
        heartbeat_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL
    );
    CREATE INDEX exchanger_worker_presence_expires ON exchanger_worker_presence (expires_at);
    """#

    static let sqliteV6 = #"""
    CREATE TABLE exchanger_worker_presence (
        id TEXT PRIMARY KEY CHECK (id <> ''),
        hostname TEXT NOT NULL,
        pid INTEGER NOT NULL,
        program TEXT NOT NULL,
        queue TEXT NULL,
        supervisor_id TEXT NULL,
        deployment_id TEXT NULL,
        started_at INTEGER NOT NULL,
        heartbeat_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX exchanger_worker_presence_expires ON exchanger_worker_presence (expires_at);
    """#
}

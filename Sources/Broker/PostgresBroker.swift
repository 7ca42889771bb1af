import DatabaseSupport
import Foundation
import Logging
import PostgresClient

/// The PostgreSQL backend: `FOR UPDATE SKIP LOCKED` receives, LISTEN/NOTIFY wake-ups.
final class PostgresBroker: BrokerBackend {
    static let channel = "exchanger_broker"
    let dialect = SQLDialect.postgres
    let url: String
    let configuration: BrokerConfiguration
    let pool: ConnectionPool<PostgresConnection>
    let policies = PolicyCache()
    let logger: Logger

    init(url: String, configuration: BrokerConfiguration, logger: Logger) {
        self.url = url
        self.configuration = configuration
        self.logger = logger
        let postgres = configuration.postgres
        pool = ConnectionPool(maxConnections: configuration.maxConnections, acquireTimeout: configuration.connectionAcquireTimeout) {
            try await PostgresConnection.connect(url: url, configuration: postgres)
        }
    }

    func close() async { await pool.shutdown() }

    // MARK: Schema

    /// Migrations run in one transaction under an advisory lock, so concurrent runs serialise.
    func migrate() async throws -> [Int] {
        try await pool.withConnection { connection in
            try await connection.transaction { connection in
                try connection.query("SELECT pg_advisory_xact_lock(7345001)")
                try connection.execute("""
                    CREATE TABLE IF NOT EXISTS exchanger_migrations (
                        version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())
                    """)
                let done = Set(try connection.query("SELECT version FROM exchanger_migrations").compactMap { $0["version"].int })
                var applied: [Int] = []
                for migration in BrokerSchema.migrations where !done.contains(migration.version) {
                    try connection.execute(migration.postgres)
                    try connection.query(
                        "INSERT INTO exchanger_migrations (version, name) VALUES ($1, $2)",
                        [SQLValue(migration.version), .text(migration.name)])
                    applied.append(migration.version)
                }
                return applied
            }
        }
    }

    func schemaVersion() async throws -> Int {
        try await pool.withConnection { connection in
            let exists = try await connection.query("SELECT to_regclass('exchanger_migrations') IS NOT NULL AS present")
            guard exists.first?["present"].bool == true else { return 0 }
            return try await connection.query("SELECT coalesce(max(version), 0) AS version FROM exchanger_migrations").first?["version"].int ?? 0
        }
    }

    // MARK: Queues

    static let queueColumns = """
        name, visibility_timeout_ms, max_receive_count, dead_letter_queue, delay_ms, retention_ms, max_message_bytes,
        exchange_id, program, sealed, (extract(epoch FROM created_at) * 1000)::bigint AS created_ms
        """

    /// Throws when the attributes name a dead-letter queue that does not exist (and keeps it from
    /// being deleted until the transaction ends).
    static func requireDeadLetterQueue(_ connection: isolated PostgresConnection, _ attributes: QueueAttributes) throws {
        guard let dlq = attributes.deadLetterQueue else { return }
        if try connection.query("SELECT 1 FROM broker_queues WHERE name = $1 FOR SHARE", [.text(dlq)]).isEmpty {
            throw BrokerError(.queueNotFound, "dead-letter queue '\(dlq)' does not exist")
        }
    }

    func createQueue(_ name: String, _ attributes: QueueAttributes) async throws -> QueueInfo {
        try await pool.withConnection { connection in
            try await connection.transaction { connection in
                try Self.requireDeadLetterQueue(connection, attributes)
                let inserted = try connection.query("""
                    INSERT INTO broker_queues (name, visibility_timeout_ms, max_receive_count, dead_letter_queue, delay_ms,
                        retention_ms, max_message_bytes, exchange_id, program)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                    ON CONFLICT (name) DO NOTHING
                    RETURNING \(Self.queueColumns)
                    """, [.text(name)] + BrokerRow.binds(attributes))
                if let row = inserted.first { return try BrokerRow.queueInfo(row) }
                guard let row = try connection.query("SELECT \(Self.queueColumns) FROM broker_queues WHERE name = $1", [.text(name)]).first else {
                    throw BrokerError(.queueNotFound, "queue '\(name)' vanished while being created; try again")
                }
                let existing = try BrokerRow.queueInfo(row)
                guard existing.attributes == attributes else {
                    throw BrokerError(.queueAlreadyExists, "queue '\(name)' already exists with different attributes")
                }
                return existing
            }
        }
    }

    func queue(named name: String) async throws -> QueueInfo? {
        try await pool.withConnection { connection in
            try await connection.query("SELECT \(Self.queueColumns) FROM broker_queues WHERE name = $1", [.text(name)]).first.map(BrokerRow.queueInfo)
        }
    }

    func listQueues(_ filter: QueueFilter) async throws -> [QueueInfo] {
        try await pool.withConnection { connection in
            try await connection.query("""
                SELECT \(Self.queueColumns) FROM broker_queues
                WHERE ($1::text IS NULL OR starts_with(name, $1::text))
                  AND ($2::text IS NULL OR exchange_id = $2::text)
                  AND ($3::text IS NULL OR program = $3::text)
                ORDER BY name
                """, [SQLValue(filter.namePrefix), SQLValue(filter.exchangeID), SQLValue(filter.program)]).map(BrokerRow.queueInfo)
        }
    }

    func setAttributes(_ name: String, _ attributes: QueueAttributes) async throws -> QueueInfo {
        try await pool.withConnection { connection in
            try await connection.transaction { connection in
                try Self.requireDeadLetterQueue(connection, attributes)
                guard let row = try connection.query("""
                    UPDATE broker_queues SET visibility_timeout_ms = $2, max_receive_count = $3, dead_letter_queue = $4,
                        delay_ms = $5, retention_ms = $6, max_message_bytes = $7, exchange_id = $8, program = $9, updated_at = now()
                    WHERE name = $1
                    RETURNING \(Self.queueColumns)
                    """, [.text(name)] + BrokerRow.binds(attributes)).first
                else { throw BrokerError(.queueNotFound, "queue '\(name)' does not exist") }
                return try BrokerRow.queueInfo(row)
            }
        }
    }

    func seal(_ names: [String], sealed: Bool, removeSubscriptions: Bool) async throws -> [String: QueueCounters] {
        let unique = Array(Set(names)).sorted()
        return try await pool.withConnection { connection in
            try await connection.transaction { connection in
                // The UPDATE waits for every transaction that holds a queue row FOR SHARE (a send or a
                // publish in progress) and commits after them; the counters below then see their messages.
                let updated = try connection.query(
                    "UPDATE broker_queues SET sealed = $2, updated_at = now() WHERE name = ANY($1::text[]) RETURNING name",
                    [PostgresArray.text(unique), .bool(sealed)])
                let found = Set(updated.compactMap { $0["name"].string })
                if let missing = unique.first(where: { !found.contains($0) }) {
                    throw BrokerError(.queueNotFound, "queue '\(missing)' does not exist")
                }
                if removeSubscriptions {
                    try connection.query("""
                        DELETE FROM broker_subscriptions WHERE queue_id IN (SELECT id FROM broker_queues WHERE name = ANY($1::text[]))
                        """, [PostgresArray.text(unique)])
                }
                return try Self.counters(connection, unique)
            }
        }
    }

    func deleteQueue(_ name: String) async throws {
        try await pool.withConnection { connection in
            try await connection.transaction { connection in
                guard let id = try connection.query("SELECT id FROM broker_queues WHERE name = $1 FOR UPDATE", [.text(name)]).first?["id"].int64 else {
                    throw BrokerError(.queueNotFound, "queue '\(name)' does not exist")
                }
                if let user = try connection.query(
                    "SELECT name FROM broker_queues WHERE dead_letter_queue = $1 AND name <> $1 ORDER BY name LIMIT 1", [.text(name)]
                ).first?["name"].string {
                    throw BrokerError(.queueInUse, "queue '\(name)' is the dead-letter queue of '\(user)'")
                }
                try connection.query("DELETE FROM broker_messages WHERE queue_id = $1", [.integer(id)])
                try connection.query("DELETE FROM broker_queue_stats WHERE queue_id = $1", [.integer(id)])
                try connection.query("DELETE FROM broker_queues WHERE id = $1", [.integer(id)])
            }
        }
    }

    func purgeQueue(_ name: String, batchSize: Int) async throws -> Int {
        var total = 0
        while true {
            let deleted = try await pool.withConnection { connection in
                let rows = try await connection.query("""
                    WITH q AS (SELECT id FROM broker_queues WHERE name = $1),
                    gone AS (
                        DELETE FROM broker_messages WHERE id IN (
                            SELECT m.id FROM broker_messages m WHERE m.queue_id = (SELECT id FROM q) LIMIT $2)
                        RETURNING 1)
                    SELECT (SELECT count(*) FROM q) AS queues, (SELECT count(*) FROM gone) AS deleted
                    """, [.text(name), SQLValue(batchSize)])
                guard rows.first?["queues"].int == 1 else { throw BrokerError(.queueNotFound, "queue '\(name)' does not exist") }
                return rows.first?["deleted"].int ?? 0
            }
            total += deleted
            if deleted < batchSize { return total }
        }
    }

    func counters(_ names: [String]?) async throws -> [String: QueueCounters] {
        try await pool.withConnection { connection in try await Self.counters(connection, names) }
    }

    /// Totals come from the slot counters; only hidden messages (in flight or delayed, a bounded
    /// set) are counted from the index. Nothing scans the visible backlog.
    static func counters(_ connection: isolated PostgresConnection, _ names: [String]?) throws -> [String: QueueCounters] {
        let rows = try connection.query("""
            SELECT q.name,
                coalesce((SELECT sum(s.messages) FROM broker_queue_stats s WHERE s.queue_id = q.id), 0)::bigint AS total,
                h.in_flight, h.delayed
            FROM broker_queues q
            CROSS JOIN LATERAL (
                SELECT count(*) FILTER (WHERE m.receive_count > 0) AS in_flight,
                       count(*) FILTER (WHERE m.receive_count = 0) AS delayed
                FROM broker_messages m WHERE m.queue_id = q.id AND m.visible_at > now()) h
            WHERE $1::text[] IS NULL OR q.name = ANY($1::text[])
            """, [names.map { PostgresArray.text($0) } ?? .null])
        return BrokerRow.counters(rows)
    }

    // MARK: Receive

    static let messageColumns = """
        m.id, m.message_id::text AS message_id, m.body, m.attributes::text AS attributes, m.event_id, m.receive_count,
        m.receipt::text AS receipt, (extract(epoch FROM m.sent_at) * 1000)::bigint AS sent_ms,
        (extract(epoch FROM m.first_received_at) * 1000)::bigint AS first_received_ms, m.source_queue
        """

    /// One statement: lock the due messages (skipping those other receivers hold), move the ones
    /// past their max receive count to the dead-letter queue, lease the rest.
    static let receiveSQL = """
        WITH q AS (
            SELECT q.id, q.visibility_timeout_ms, q.max_receive_count, d.id AS dlq_id
            FROM broker_queues q LEFT JOIN broker_queues d ON d.name = q.dead_letter_queue
            WHERE q.name = $1
        ),
        acked AS (
            -- `queue_id + 0` keeps the planner on primary-key lookups (see deleteSQL).
            DELETE FROM broker_messages m USING unnest($4::bigint[], $5::uuid[]) AS r(id, receipt)
            WHERE m.queue_id + 0 = (SELECT id FROM q) AND m.id = r.id AND m.receipt = r.receipt
            RETURNING m.id, m.receipt
        ),
        due AS (
            -- A scalar subquery (not a join) so the planner walks broker_messages_ready in order
            -- and stops after $2 rows instead of sorting the whole queue.
            SELECT m.id, m.receive_count FROM broker_messages m
            WHERE m.queue_id = (SELECT id FROM q) AND m.visible_at <= now() AND m.id <> ALL ($4::bigint[])
            ORDER BY m.visible_at, m.id
            LIMIT $2
            FOR UPDATE SKIP LOCKED
        ),
        dead AS (
            DELETE FROM broker_messages m USING due, q
            WHERE m.id = due.id AND q.dlq_id IS NOT NULL AND due.receive_count >= q.max_receive_count
            RETURNING m.message_id, m.body, m.attributes, m.event_id
        ),
        moved AS (
            INSERT INTO broker_messages (queue_id, message_id, body, attributes, event_id, visible_at, source_queue)
            SELECT q.dlq_id, dead.message_id, dead.body, dead.attributes, dead.event_id, now(), $1 FROM dead, q
            RETURNING 1
        ),
        m AS (
            UPDATE broker_messages m
            SET visible_at = now() + coalesce($3::bigint, q.visibility_timeout_ms) * interval '1 millisecond',
                receive_count = m.receive_count + 1,
                receipt = gen_random_uuid(),
                first_received_at = coalesce(m.first_received_at, now())
            FROM due, q
            WHERE m.id = due.id AND NOT (q.dlq_id IS NOT NULL AND due.receive_count >= q.max_receive_count)
            RETURNING m.*
        )
        SELECT \(messageColumns),
            (SELECT string_agg(a.id::text || '.' || replace(a.receipt::text, '-', ''), ',') FROM acked a) AS acked,
            (SELECT count(*) FROM q) AS queues
        FROM (SELECT 1) AS one LEFT JOIN m ON true
        ORDER BY m.visible_at, m.id
        """

    func receive(_ queue: String, max: Int, visibility: Duration?, acknowledging: [ReceiptHandle]) async throws
        -> (messages: [ReceivedMessage], acknowledged: Set<ReceiptHandle>)
    {
        try await pool.withConnection { connection in
            // One statement: it always returns one row at least (message columns NULL when nothing
            // was due), carrying which acknowledgements took effect.
            let rows = try await connection.query(Self.receiveSQL, [
                .text(queue), SQLValue(max), visibility.map { .integer($0.milliseconds) } ?? .null,
                PostgresArray.integers(acknowledging.map(\.rowID)), PostgresArray.text(acknowledging.map(\.uuidString)),
            ])
            guard rows.first?["queues"].int == 1 else { throw BrokerError(.queueNotFound, "queue '\(queue)' does not exist") }
            var acknowledged = Set<ReceiptHandle>()
            for handle in (rows.first?["acked"].string ?? "").split(separator: ",") {
                if let receipt = try? ReceiptHandle(String(handle)) { acknowledged.insert(receipt) }
            }
            let messages = try rows.filter { !$0["id"].isNull }.map { row in
                try BrokerRow.message(row, queue: queue, receiptToken: ReceiptHandle.token(fromUUID: try row.require("receipt") { $0.string }))
            }
            return (messages, acknowledged)
        }
    }

    func redrive(from dlq: String, to target: String?, limit: Int) async throws -> [String] {
        try await pool.withConnection { connection in
            try await connection.transaction { connection in
                // Only messages whose target exists and is not sealed are picked, so a message is never
                // deleted from the dead-letter queue without landing somewhere.
                let rows = try connection.query("""
                    WITH pick AS (
                        SELECT m.id, t.id AS target_id, t.name AS target_name
                        FROM broker_messages m
                        JOIN broker_queues d ON d.id = m.queue_id
                        JOIN broker_queues t ON t.name = coalesce($2::text, m.source_queue)
                        WHERE d.name = $1 AND m.visible_at <= now() AND NOT t.sealed AND t.id <> d.id
                        ORDER BY m.id
                        LIMIT $3
                        FOR UPDATE OF m SKIP LOCKED
                    ),
                    moved AS (
                        DELETE FROM broker_messages m USING pick WHERE m.id = pick.id
                        RETURNING m.body, m.attributes, m.event_id, pick.target_id, pick.target_name
                    ),
                    ins AS (
                        INSERT INTO broker_messages (queue_id, message_id, body, attributes, event_id, visible_at)
                        SELECT target_id, gen_random_uuid(), body, attributes, event_id, now() FROM moved
                        RETURNING 1
                    )
                    SELECT moved.target_name, (SELECT count(*) FROM ins) AS inserted FROM moved
                    """, [.text(dlq), SQLValue(target), SQLValue(limit)])
                let targets = rows.compactMap { $0["target_name"].string }
                for name in Set(targets) { try connection.notify(Self.channel, payload: name) }
                return targets
            }
        }
    }

    // MARK: Topic

    func subscribe(topic: String, queue: String, policy: FilterPolicy?) async throws -> Subscription {
        try await pool.withConnection { connection in
            try await connection.transaction { connection in
                guard let queueID = try connection.query("SELECT id FROM broker_queues WHERE name = $1 FOR SHARE", [.text(queue)]).first?["id"].int64 else {
                    throw BrokerError(.queueNotFound, "queue '\(queue)' does not exist")
                }
                if let id = try connection.query("""
                    INSERT INTO broker_subscriptions (topic, queue_id, filter_policy) VALUES ($1, $2, $3)
                    ON CONFLICT (topic, queue_id) DO NOTHING RETURNING id
                    """, [.text(topic), .integer(queueID), SQLValue(policy?.json)]).first?["id"].int64
                {
                    return Subscription(id: id, topic: topic, queue: queue, filterPolicy: policy?.json)
                }
                guard let row = try connection.query(
                    "SELECT id, filter_policy FROM broker_subscriptions WHERE topic = $1 AND queue_id = $2", [.text(topic), .integer(queueID)]
                ).first, let id = row["id"].int64 else {
                    throw BrokerError(.subscriptionNotFound, "subscription of '\(queue)' to '\(topic)' vanished; try again")
                }
                let existing = row["filter_policy"].string
                guard Subscription.samePolicy(existing, policy) else {
                    throw BrokerError(.subscriptionConflict, "queue '\(queue)' is already subscribed to '\(topic)' with another filter policy")
                }
                return Subscription(id: id, topic: topic, queue: queue, filterPolicy: existing)
            }
        }
    }

    func unsubscribe(id: Int64) async throws -> Bool {
        try await pool.withConnection { connection in
            try await connection.update("DELETE FROM broker_subscriptions WHERE id = $1", [.integer(id)]) == 1
        }
    }

    func subscriptions(topic: String?, queue: String?) async throws -> [Subscription] {
        try await pool.withConnection { connection in
            try await connection.query("""
                SELECT s.id, s.topic, q.name AS queue, s.filter_policy FROM broker_subscriptions s JOIN broker_queues q ON q.id = s.queue_id
                WHERE ($1::text IS NULL OR s.topic = $1::text) AND ($2::text IS NULL OR q.name = $2::text)
                ORDER BY s.id
                """, [SQLValue(topic), SQLValue(queue)]).map(BrokerRow.subscription)
        }
    }

    func purgeExpired(limit: Int) async throws -> Int {
        try await pool.withConnection { connection in
            try await connection.query("""
                WITH expired AS (
                    SELECT m.id, q.name AS source, d.id AS dlq_id, q.retention_ms FROM broker_queues q
                    LEFT JOIN broker_queues d ON d.name = q.dead_letter_queue AND d.id <> q.id
                    CROSS JOIN LATERAL (
                        SELECT id FROM broker_messages m
                        WHERE m.queue_id = q.id AND m.visible_at <= now() - q.retention_ms * interval '1 millisecond'
                        ORDER BY m.visible_at, m.id LIMIT $1) m
                    LIMIT $1
                ),
                gone AS (
                    DELETE FROM broker_messages m USING expired e WHERE m.id = e.id
                    RETURNING m.message_id, m.body, m.attributes, m.event_id, e.source, e.dlq_id, e.retention_ms
                ),
                moved AS (
                    INSERT INTO broker_messages (queue_id, message_id, body, attributes, event_id, visible_at, source_queue)
                    SELECT dlq_id, message_id, body,
                           coalesce(attributes, '{}'::jsonb) || jsonb_build_object($2::text,
                               jsonb_build_object('type', 'String', 'value', (retention_ms / 1000)::text)),
                           event_id, now(), source
                    FROM gone WHERE dlq_id IS NOT NULL
                    RETURNING 1
                )
                SELECT (SELECT count(*) FROM gone) AS n, (SELECT count(*) FROM moved) AS moved
                """, [SQLValue(limit), .text(Broker.expiredAttribute)]).first?["n"].int ?? 0
        }
    }

    /// Deleted and re-leased messages leave dead entries at the head of broker_messages_ready
    /// that every receive walks until VACUUM removes them; autovacuum visits a database once a
    /// minute at best (`autovacuum_naptime` is server-wide), far too rarely for a busy queue.
    func vacuumIfNeeded(threshold: Int) async throws -> Bool {
        try await pool.withConnection { connection in
            let dead = try await connection.query(
                "SELECT coalesce(n_dead_tup, 0) AS dead FROM pg_stat_user_tables WHERE relid = 'broker_messages'::regclass"
            ).first?["dead"].int ?? 0
            guard dead >= threshold else { return false }
            // Session-level lock: VACUUM cannot run inside a transaction.
            guard try await connection.query("SELECT pg_try_advisory_lock(7345002) AS locked").first?["locked"].bool == true else {
                return false
            }
            do {
                try await connection.execute("VACUUM (ANALYZE) broker_messages")
            } catch {
                _ = try? await connection.query("SELECT pg_advisory_unlock(7345002)")
                throw error
            }
            try await connection.query("SELECT pg_advisory_unlock(7345002)")
            return true
        }
    }

    // MARK: Sessions

    func withSession<T: Sendable>(transactional: Bool, _ body: @Sendable (any BrokerSession) async throws -> T) async throws -> T {
        try await pool.withConnection { connection in
            guard transactional else {
                return try await body(PostgresSession(connection: connection, inTransaction: false, policies: policies))
            }
            return try await connection.transaction { connection in
                try await body(PostgresSession(connection: connection, inTransaction: true, policies: policies))
            }
        }
    }

    // MARK: Wake-ups

    /// One listener connection per process: LISTEN on the broker channel, signal the hub for each
    /// notified queue; on connection loss, wake everyone (they poll) and reconnect with backoff.
    func startWakeups(hub: WakeupHub, logger: Logger) -> WakeupTask {
        let url = self.url
        var settings = configuration.postgres
        settings.statementTimeout = nil
        settings.idleInTransactionTimeout = nil
        settings.applicationName = configuration.postgres.applicationName + "-listener"
        let initialDelay = configuration.listenerReconnectDelay
        return WakeupTask(task: Task {
            var delay = initialDelay
            while !Task.isCancelled {
                var listener: PostgresConnection?
                do {
                    let connection = try await PostgresConnection.connect(url: url, configuration: settings)
                    listener = connection
                    try await connection.listen(Self.channel)
                    delay = initialDelay
                    await hub.signalAll()  // anything sent while we were not listening
                    while !Task.isCancelled {
                        let notifications = try await connection.waitForNotifications(timeout: .milliseconds(250))
                        if !notifications.isEmpty { await hub.signal(notifications.map(\.payload)) }
                    }
                } catch {
                    if !Task.isCancelled {
                        logger.warning("broker listener lost its connection; reconnecting",
                            metadata: ["error": "\(error)", "retryInMs": "\(delay.milliseconds)"])
                    }
                }
                if let listener { await listener.close() }
                await hub.signalAll()
                if Task.isCancelled { break }
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        })
    }
}

/// Send / publish / delete on one PostgreSQL connection, inside a transaction or on its own.
struct PostgresSession: BrokerSession {
    let connection: PostgresConnection
    let inTransaction: Bool
    let policies: PolicyCache
    var dialect: SQLDialect { .postgres }

    static let sendSQL = """
        WITH q AS (
            SELECT id, delay_ms FROM broker_queues
            WHERE name = $1 AND NOT sealed AND max_message_bytes >= $7::int
            FOR SHARE
        ),
        ins AS (
            INSERT INTO broker_messages (queue_id, message_id, body, attributes, event_id, visible_at)
            SELECT q.id, m.message_id, m.body, m.attributes, m.event_id,
                   now() + coalesce(m.delay_ms, q.delay_ms) * interval '1 millisecond'
            FROM q, unnest($2::uuid[], $3::text[], $4::jsonb[], $5::text[], $6::bigint[])
                AS m(message_id, body, attributes, event_id, delay_ms)
            RETURNING visible_at
        ),
        -- Notify only when the queue had nothing visible before this send: a receiver can only be
        -- parked on an empty queue, and the send that made it non-empty woke it. (This statement's
        -- snapshot does not see its own inserts, so the NOT EXISTS looks at what was there before.)
        wake AS (
            SELECT pg_notify('\(PostgresBroker.channel)', $1)
            WHERE EXISTS (SELECT 1 FROM ins WHERE visible_at <= now())
              AND NOT EXISTS (
                  SELECT 1 FROM broker_messages m WHERE m.queue_id = (SELECT id FROM q) AND m.visible_at <= now())
        )
        SELECT (SELECT count(*) FROM ins) AS inserted, (SELECT count(*) FROM wake) AS woken
        """

    func send(_ queue: String, _ messages: [OutgoingMessage]) async throws -> [String] {
        let ids = messages.map { _ in MessageID.make() }
        let largest = messages.map(\.body.utf8.count).max() ?? 0
        let rows = try await connection.query(Self.sendSQL, [
            .text(queue),
            PostgresArray.text(ids),
            PostgresArray.text(messages.map(\.body)),
            PostgresArray.text(messages.map { AttributeCoding.encode($0.attributes) }),
            PostgresArray.text(messages.map(\.eventID)),
            PostgresArray.integers(messages.map { $0.delay?.milliseconds }),
            SQLValue(largest),
        ])
        guard rows.first?["inserted"].int == messages.count else {
            try await diagnoseRefusedSend(queue, largest: largest)
            throw BrokerError(.queueNotFound, "queue '\(queue)' refused the messages")
        }
        return ids
    }

    private func diagnoseRefusedSend(_ queue: String, largest: Int) async throws {
        guard let row = try await connection.query(
            "SELECT sealed, max_message_bytes FROM broker_queues WHERE name = $1", [.text(queue)]
        ).first else { throw BrokerError(.queueNotFound, "queue '\(queue)' does not exist") }
        if row["sealed"].bool == true { throw BrokerError(.queueSealed, "queue '\(queue)' is sealed and refuses new messages") }
        if let limit = row["max_message_bytes"].int, largest > limit {
            throw BrokerError(.messageTooLarge, "message body is \(largest) bytes; queue '\(queue)' allows \(limit)")
        }
    }

    func publish(_ topic: String, _ events: [TopicMessage]) async throws -> [PublishResult] {
        if !inTransaction {
            return try await connection.transaction { connection in
                try await PostgresSession(connection: connection, inTransaction: true, policies: policies).publish(topic, events)
            }
        }
        // Subscriptions of the topic whose queues are open; FOR SHARE makes a concurrent seal wait
        // for this transaction (and this publish skip a queue sealed before it).
        let subscriptions = try await connection.query("""
            SELECT s.id, s.filter_policy, q.id AS queue_id, q.name AS queue_name
            FROM broker_subscriptions s JOIN broker_queues q ON q.id = s.queue_id
            WHERE s.topic = $1 AND NOT q.sealed
            ORDER BY s.id
            FOR SHARE OF q
            """, [.text(topic)])
        var targets: [String: [(id: Int64, name: String)]] = [:]
        var seen = Set<String>()
        let unique = events.filter { seen.insert($0.eventID).inserted }
        for event in unique {
            for subscription in subscriptions {
                guard let subscriptionID = subscription["id"].int64, let queueID = subscription["queue_id"].int64,
                    let queueName = subscription["queue_name"].string,
                    policies.accepts(id: subscriptionID, json: subscription["filter_policy"].string, attributes: event.attributes)
                else { continue }
                targets[event.eventID, default: []].append((queueID, queueName))
            }
        }
        let stored = try await connection.query("""
            INSERT INTO broker_events (event_id, topic, body, attributes, delivered_to)
            SELECT e.event_id, $1, e.body, e.attributes, e.delivered_to
            FROM unnest($2::text[], $3::text[], $4::jsonb[], $5::int[]) AS e(event_id, body, attributes, delivered_to)
            ON CONFLICT (event_id) DO NOTHING
            RETURNING event_id
            """, [
                .text(topic), PostgresArray.text(unique.map(\.eventID)), PostgresArray.text(unique.map(\.body)),
                PostgresArray.text(unique.map { AttributeCoding.encode($0.attributes) }),
                PostgresArray.integers(unique.map { Int64(targets[$0.eventID]?.count ?? 0) }),
            ])
        let fresh = Set(stored.compactMap { $0["event_id"].string })
        var queueIDs: [Int64?] = [], bodies: [String?] = [], attributes: [String?] = [], eventIDs: [String?] = []
        var woken = Set<String>()
        for event in unique where fresh.contains(event.eventID) {
            for target in targets[event.eventID] ?? [] {
                queueIDs.append(target.id)
                bodies.append(event.body)
                attributes.append(AttributeCoding.encode(event.attributes))
                eventIDs.append(event.eventID)
                woken.insert(target.name)
            }
        }
        if !queueIDs.isEmpty {
            try await connection.query("""
                WITH ins AS (
                    INSERT INTO broker_messages (queue_id, message_id, body, attributes, event_id, visible_at)
                    SELECT d.queue_id, gen_random_uuid(), d.body, d.attributes, d.event_id,
                           now() + q.delay_ms * interval '1 millisecond'
                    FROM unnest($1::bigint[], $2::text[], $3::jsonb[], $4::text[]) AS d(queue_id, body, attributes, event_id)
                    JOIN broker_queues q ON q.id = d.queue_id
                    RETURNING 1
                )
                SELECT (SELECT count(*) FROM ins) AS inserted,
                       (SELECT count(*) FROM (SELECT pg_notify('\(PostgresBroker.channel)', n) FROM unnest($5::text[]) n) w) AS woken
                """, [
                    PostgresArray.integers(queueIDs), PostgresArray.text(bodies), PostgresArray.text(attributes),
                    PostgresArray.text(eventIDs), PostgresArray.text(woken.sorted()),
                ])
        }
        // Only the first occurrence of an id in the batch counts as published.
        var reported = Set<String>()
        return events.map { event in
            let isFresh = fresh.contains(event.eventID) && reported.insert(event.eventID).inserted
            return PublishResult(
                eventID: event.eventID, published: isFresh,
                deliveredTo: isFresh ? (targets[event.eventID] ?? []).map(\.name) : [])
        }
    }

    /// Receipt-matched statements compare `queue_id + 0`, which no index can serve, so the only
    /// plan left is a primary-key lookup per receipt. With the plain column, a table whose
    /// statistics still say "empty" gets a plan that reads the whole queue through
    /// broker_messages_ready and hash-joins it: every acknowledgement then costs O(queue length).
    static let deleteSQL = """
        DELETE FROM broker_messages m
        USING unnest($2::bigint[], $3::uuid[]) AS r(id, receipt)
        WHERE m.id = r.id AND m.receipt = r.receipt
          AND m.queue_id + 0 = (SELECT id FROM broker_queues WHERE name = $1)
        RETURNING m.id, m.receipt::text AS receipt
        """

    func delete(_ queue: String, _ receipts: [ReceiptHandle]) async throws -> Set<ReceiptHandle> {
        let rows = try await connection.query(Self.deleteSQL,
            [.text(queue), PostgresArray.integers(receipts.map(\.rowID)), PostgresArray.text(receipts.map(\.uuidString))])
        return Self.receipts(rows)
    }

    func changeVisibility(_ queue: String, _ receipts: [ReceiptHandle], _ timeout: Duration) async throws -> Set<ReceiptHandle> {
        let rows = try await connection.query("""
            WITH r AS (SELECT * FROM unnest($2::bigint[], $3::uuid[]) AS r(id, receipt)),
            changed AS (
                UPDATE broker_messages m SET visible_at = now() + $4::bigint * interval '1 millisecond'
                FROM r
                WHERE m.id = r.id AND m.receipt = r.receipt
                  AND m.queue_id + 0 = (SELECT id FROM broker_queues WHERE name = $1)
                RETURNING m.id, m.receipt::text AS receipt
            ),
            wake AS (SELECT pg_notify('\(PostgresBroker.channel)', $1) WHERE $4::bigint = 0 AND EXISTS (SELECT 1 FROM changed))
            SELECT id, receipt, (SELECT count(*) FROM wake) AS woken FROM changed
            """, [
                .text(queue), PostgresArray.integers(receipts.map(\.rowID)), PostgresArray.text(receipts.map(\.uuidString)),
                .integer(timeout.milliseconds),
            ])
        return Self.receipts(rows)
    }

    static func receipts(_ rows: [SQLRow]) -> Set<ReceiptHandle> {
        Set(rows.compactMap { row in
            guard let id = row["id"].int64, let receipt = row["receipt"].string else { return nil }
            return ReceiptHandle(rowID: id, token: ReceiptHandle.token(fromUUID: receipt))
        })
    }

    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow] {
        try await connection.query(sql, binds)
    }
}

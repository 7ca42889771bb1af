import DatabaseSupport
import Foundation
import Logging
import SQLiteClient

/// The SQLite backend for the embedded default: one file in WAL mode shared by several processes.
/// Every write is a `BEGIN IMMEDIATE` transaction, so writers queue on the file lock instead of
/// deadlocking; waiting receivers notice other processes' commits through `PRAGMA data_version`.
final class SQLiteBroker: BrokerBackend {
    let dialect = SQLDialect.sqlite
    let path: String
    let sqlite: SQLiteConfiguration
    let configuration: BrokerConfiguration
    let pool: ConnectionPool<SQLiteConnection>
    let policies = PolicyCache()

    init(url: String, configuration: BrokerConfiguration, logger: Logger) throws {
        let (path, sqlite) = try SQLiteConfiguration.parse(url: url)
        self.path = path
        self.sqlite = sqlite
        self.configuration = configuration
        pool = ConnectionPool(maxConnections: configuration.maxConnections, acquireTimeout: configuration.connectionAcquireTimeout) {
            try await SQLiteConnection.open(path: path, configuration: sqlite)
        }
    }

    func close() async { await pool.shutdown() }

    static var nowMs: Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded(.down)) }

    /// Runs `body` in a write transaction on a pooled connection.
    func write<T: Sendable>(_ body: @Sendable (isolated SQLiteConnection) async throws -> T) async throws -> T {
        try await pool.withConnection { connection in try await connection.transaction(.immediate, body) }
    }

    func read<T: Sendable>(_ body: @Sendable (isolated SQLiteConnection) async throws -> T) async throws -> T {
        try await pool.withConnection { connection in try await connection.transaction(.deferred, body) }
    }

    // MARK: Schema

    func migrate() async throws -> [Int] {
        try await write { connection in
            try connection.execute("""
                CREATE TABLE IF NOT EXISTS exchanger_migrations (
                    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)
                """)
            let done = Set(try connection.query("SELECT version FROM exchanger_migrations").compactMap { $0["version"].int })
            var applied: [Int] = []
            for migration in BrokerSchema.migrations where !done.contains(migration.version) {
                try connection.execute(migration.sqlite)
                try connection.query("INSERT INTO exchanger_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    [SQLValue(migration.version), .text(migration.name), .integer(Self.nowMs)])
                applied.append(migration.version)
            }
            return applied
        }
    }

    func schemaVersion() async throws -> Int {
        try await pool.withConnection { connection in
            let present = try await connection.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'exchanger_migrations'")
            guard !present.isEmpty else { return 0 }
            return try await connection.query("SELECT coalesce(max(version), 0) AS version FROM exchanger_migrations").first?["version"].int ?? 0
        }
    }

    // MARK: Queues

    static let queueColumns = """
        name, visibility_timeout_ms, max_receive_count, dead_letter_queue, delay_ms, retention_ms, max_message_bytes,
        exchange_id, program, sealed, created_at AS created_ms
        """

    /// Throws when the attributes name a dead-letter queue that does not exist.
    static func requireDeadLetterQueue(_ connection: isolated SQLiteConnection, _ attributes: QueueAttributes) throws {
        guard let dlq = attributes.deadLetterQueue else { return }
        if try connection.query("SELECT 1 FROM broker_queues WHERE name = ?", [.text(dlq)]).isEmpty {
            throw BrokerError(.queueNotFound, "dead-letter queue '\(dlq)' does not exist")
        }
    }

    func createQueue(_ name: String, _ attributes: QueueAttributes) async throws -> QueueInfo {
        try await write { connection in
            try Self.requireDeadLetterQueue(connection, attributes)
            if let row = try connection.query("SELECT \(Self.queueColumns) FROM broker_queues WHERE name = ?", [.text(name)]).first {
                let existing = try BrokerRow.queueInfo(row)
                guard existing.attributes == attributes else {
                    throw BrokerError(.queueAlreadyExists, "queue '\(name)' already exists with different attributes")
                }
                return existing
            }
            let now = Self.nowMs
            let row = try connection.query("""
                INSERT INTO broker_queues (name, visibility_timeout_ms, max_receive_count, dead_letter_queue, delay_ms,
                    retention_ms, max_message_bytes, exchange_id, program, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                RETURNING \(Self.queueColumns)
                """, [.text(name)] + BrokerRow.binds(attributes) + [.integer(now), .integer(now)]).first
            try connection.query("INSERT OR IGNORE INTO broker_queue_stats (queue_id, messages) SELECT id, 0 FROM broker_queues WHERE name = ?", [.text(name)])
            guard let row else { throw BrokerError(.queueNotFound, "queue '\(name)' was not created") }
            return try BrokerRow.queueInfo(row)
        }
    }

    func queue(named name: String) async throws -> QueueInfo? {
        try await pool.withConnection { connection in
            try await connection.query("SELECT \(Self.queueColumns) FROM broker_queues WHERE name = ?", [.text(name)]).first.map(BrokerRow.queueInfo)
        }
    }

    func listQueues(_ filter: QueueFilter) async throws -> [QueueInfo] {
        try await pool.withConnection { connection in
            try await connection.query("""
                SELECT \(Self.queueColumns) FROM broker_queues
                WHERE (?1 IS NULL OR substr(name, 1, length(?1)) = ?1)
                  AND (?2 IS NULL OR exchange_id = ?2)
                  AND (?3 IS NULL OR program = ?3)
                ORDER BY name
                """, [SQLValue(filter.namePrefix), SQLValue(filter.exchangeID), SQLValue(filter.program)]).map(BrokerRow.queueInfo)
        }
    }

    func setAttributes(_ name: String, _ attributes: QueueAttributes) async throws -> QueueInfo {
        try await write { connection in
            try Self.requireDeadLetterQueue(connection, attributes)
            guard let row = try connection.query("""
                UPDATE broker_queues SET visibility_timeout_ms = ?2, max_receive_count = ?3, dead_letter_queue = ?4, delay_ms = ?5,
                    retention_ms = ?6, max_message_bytes = ?7, exchange_id = ?8, program = ?9, updated_at = ?10
                WHERE name = ?1
                RETURNING \(Self.queueColumns)
                """, [.text(name)] + BrokerRow.binds(attributes) + [.integer(Self.nowMs)]).first
            else { throw BrokerError(.queueNotFound, "queue '\(name)' does not exist") }
            return try BrokerRow.queueInfo(row)
        }
    }

    func seal(_ names: [String], sealed: Bool, removeSubscriptions: Bool) async throws -> [String: QueueCounters] {
        let unique = Array(Set(names)).sorted()
        return try await write { connection in
            for name in unique {
                guard try connection.update("UPDATE broker_queues SET sealed = ?, updated_at = ? WHERE name = ?",
                    [.bool(sealed), .integer(Self.nowMs), .text(name)]) == 1
                else { throw BrokerError(.queueNotFound, "queue '\(name)' does not exist") }
                if removeSubscriptions {
                    try connection.query("DELETE FROM broker_subscriptions WHERE queue_id = (SELECT id FROM broker_queues WHERE name = ?)", [.text(name)])
                }
            }
            return try Self.counters(connection, unique)
        }
    }

    func deleteQueue(_ name: String) async throws {
        try await write { connection in
            guard let id = try connection.query("SELECT id FROM broker_queues WHERE name = ?", [.text(name)]).first?["id"].int64 else {
                throw BrokerError(.queueNotFound, "queue '\(name)' does not exist")
            }
            if let user = try connection.query(
                "SELECT name FROM broker_queues WHERE dead_letter_queue = ? AND name <> ? ORDER BY name LIMIT 1", [.text(name), .text(name)]
            ).first?["name"].string {
                throw BrokerError(.queueInUse, "queue '\(name)' is the dead-letter queue of '\(user)'")
            }
            try connection.query("DELETE FROM broker_messages WHERE queue_id = ?", [.integer(id)])
            try connection.query("DELETE FROM broker_subscriptions WHERE queue_id = ?", [.integer(id)])
            try connection.query("DELETE FROM broker_queue_stats WHERE queue_id = ?", [.integer(id)])
            try connection.query("DELETE FROM broker_queues WHERE id = ?", [.integer(id)])
        }
    }

    func purgeQueue(_ name: String, batchSize: Int) async throws -> Int {
        var total = 0
        while true {
            let deleted = try await write { connection in
                guard let id = try connection.query("SELECT id FROM broker_queues WHERE name = ?", [.text(name)]).first?["id"].int64 else {
                    throw BrokerError(.queueNotFound, "queue '\(name)' does not exist")
                }
                return try connection.update(
                    "DELETE FROM broker_messages WHERE id IN (SELECT id FROM broker_messages WHERE queue_id = ? LIMIT ?)",
                    [.integer(id), SQLValue(batchSize)])
            }
            total += deleted
            if deleted < batchSize { return total }
        }
    }

    func counters(_ names: [String]?) async throws -> [String: QueueCounters] {
        try await read { connection in try Self.counters(connection, names) }
    }

    static func counters(_ connection: isolated SQLiteConnection, _ names: [String]?) throws -> [String: QueueCounters] {
        let rows = try connection.query("""
            SELECT q.name, coalesce(s.messages, 0) AS total,
                (SELECT count(*) FROM broker_messages m WHERE m.queue_id = q.id AND m.visible_at > ?1 AND m.receive_count > 0) AS in_flight,
                (SELECT count(*) FROM broker_messages m WHERE m.queue_id = q.id AND m.visible_at > ?1 AND m.receive_count = 0) AS delayed
            FROM broker_queues q LEFT JOIN broker_queue_stats s ON s.queue_id = q.id
            WHERE ?2 IS NULL OR q.name IN (SELECT value FROM json_each(?2))
            """, [.integer(nowMs), names.map { .text(Self.jsonArray($0)) } ?? .null])
        return BrokerRow.counters(rows)
    }

    static func jsonArray(_ values: [String]) -> String {
        let data = (try? JSONEncoder().encode(values)) ?? Data("[]".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    static func jsonArray(_ values: [Int64]) -> String { "[" + values.map(String.init).joined(separator: ",") + "]" }

    // MARK: Receive

    static let messageColumns = """
        id, message_id, body, attributes, event_id, receive_count, receipt, sent_at AS sent_ms,
        first_received_at AS first_received_ms, source_queue
        """

    func receive(_ queue: String, max: Int, visibility: Duration?, acknowledging: [ReceiptHandle]) async throws
        -> (messages: [ReceivedMessage], acknowledged: Set<ReceiptHandle>)
    {
        try await pool.withConnection { connection in
            // Look before taking the write lock: an idle poll must not queue behind writers.
            let now = Self.nowMs
            let ready = try await connection.query("""
                SELECT q.id, EXISTS (SELECT 1 FROM broker_messages m WHERE m.queue_id = q.id AND m.visible_at <= ?2) AS ready
                FROM broker_queues q WHERE q.name = ?1
                """, [.text(queue), .integer(now)])
            guard let first = ready.first else { throw BrokerError(.queueNotFound, "queue '\(queue)' does not exist") }
            guard first["ready"].bool == true || !acknowledging.isEmpty else { return ([], []) }
            return try await connection.transaction(.immediate) { connection in
                let acknowledged = try SQLiteSession.delete(connection, queue, acknowledging)
                let now = Self.nowMs
                guard let q = try connection.query("""
                    SELECT q.id, q.visibility_timeout_ms, q.max_receive_count, d.id AS dlq_id
                    FROM broker_queues q LEFT JOIN broker_queues d ON d.name = q.dead_letter_queue WHERE q.name = ?
                    """, [.text(queue)]).first, let queueID = q["id"].int64
                else { throw BrokerError(.queueNotFound, "queue '\(queue)' does not exist") }
                let due = try connection.query("""
                    SELECT id, receive_count FROM broker_messages WHERE queue_id = ? AND visible_at <= ?
                    ORDER BY visible_at, id LIMIT ?
                    """, [.integer(queueID), .integer(now), SQLValue(max)])
                let maxReceives = q["max_receive_count"].int ?? Int.max
                let dlqID = q["dlq_id"].int64
                var dead: [Int64] = [], live: [Int64] = []
                for row in due {
                    guard let id = row["id"].int64 else { continue }
                    if dlqID != nil, (row["receive_count"].int ?? 0) >= maxReceives { dead.append(id) } else { live.append(id) }
                }
                if let dlqID, !dead.isEmpty {
                    let ids = Self.jsonArray(dead)
                    try connection.query("""
                        INSERT INTO broker_messages (queue_id, message_id, body, attributes, event_id, sent_at, visible_at, source_queue)
                        SELECT ?, message_id, body, attributes, event_id, ?, ?, ? FROM broker_messages
                        WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id
                        """, [.integer(dlqID), .integer(now), .integer(now), .text(queue), .text(ids)])
                    try connection.query("DELETE FROM broker_messages WHERE id IN (SELECT value FROM json_each(?))", [.text(ids)])
                }
                guard !live.isEmpty else { return ([], acknowledged) }
                let timeout = visibility?.milliseconds ?? q["visibility_timeout_ms"].int64 ?? 30_000
                let rows = try connection.query("""
                    UPDATE broker_messages
                    SET visible_at = ?1, receive_count = receive_count + 1, receipt = lower(hex(randomblob(16))),
                        first_received_at = coalesce(first_received_at, ?2)
                    WHERE id IN (SELECT value FROM json_each(?3))
                    RETURNING \(Self.messageColumns)
                    """, [.integer(now + timeout), .integer(now), .text(Self.jsonArray(live))])
                let order = Dictionary(uniqueKeysWithValues: live.enumerated().map { ($1, $0) })
                let messages = try rows.sorted { (order[$0["id"].int64 ?? 0] ?? 0) < (order[$1["id"].int64 ?? 0] ?? 0) }.map { row in
                    try BrokerRow.message(row, queue: queue, receiptToken: try row.require("receipt") { $0.string })
                }
                return (messages, acknowledged)
            }
        }
    }

    func redrive(from dlq: String, to target: String?, limit: Int) async throws -> [String] {
        try await write { connection in
            let now = Self.nowMs
            let picked = try connection.query("""
                SELECT m.id, t.id AS target_id, t.name AS target_name
                FROM broker_messages m
                JOIN broker_queues d ON d.id = m.queue_id
                JOIN broker_queues t ON t.name = coalesce(?2, m.source_queue)
                WHERE d.name = ?1 AND m.visible_at <= ?3 AND t.sealed = 0 AND t.id <> d.id
                ORDER BY m.id LIMIT ?4
                """, [.text(dlq), SQLValue(target), .integer(now), SQLValue(limit)])
            var targets: [String] = []
            for row in picked {
                guard let id = row["id"].int64, let targetID = row["target_id"].int64, let name = row["target_name"].string else { continue }
                try connection.query("""
                    INSERT INTO broker_messages (queue_id, message_id, body, attributes, event_id, sent_at, visible_at)
                    SELECT ?, lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-'
                        || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))),
                        body, attributes, event_id, ?, ? FROM broker_messages WHERE id = ?
                    """, [.integer(targetID), .integer(now), .integer(now), .integer(id)])
                try connection.query("DELETE FROM broker_messages WHERE id = ?", [.integer(id)])
                targets.append(name)
            }
            return targets
        }
    }

    // MARK: Topic

    func subscribe(topic: String, queue: String, policy: FilterPolicy?) async throws -> Subscription {
        try await write { connection in
            guard let queueID = try connection.query("SELECT id FROM broker_queues WHERE name = ?", [.text(queue)]).first?["id"].int64 else {
                throw BrokerError(.queueNotFound, "queue '\(queue)' does not exist")
            }
            if let row = try connection.query(
                "SELECT id, filter_policy FROM broker_subscriptions WHERE topic = ? AND queue_id = ?", [.text(topic), .integer(queueID)]
            ).first, let id = row["id"].int64 {
                let existing = row["filter_policy"].string
                guard Subscription.samePolicy(existing, policy) else {
                    throw BrokerError(.subscriptionConflict, "queue '\(queue)' is already subscribed to '\(topic)' with another filter policy")
                }
                return Subscription(id: id, topic: topic, queue: queue, filterPolicy: existing)
            }
            guard let id = try connection.query("""
                INSERT INTO broker_subscriptions (topic, queue_id, filter_policy, created_at) VALUES (?, ?, ?, ?) RETURNING id
                """, [.text(topic), .integer(queueID), SQLValue(policy?.json), .integer(Self.nowMs)]).first?["id"].int64
            else { throw BrokerError(.subscriptionNotFound, "subscription was not stored") }
            return Subscription(id: id, topic: topic, queue: queue, filterPolicy: policy?.json)
        }
    }

    func unsubscribe(id: Int64) async throws -> Bool {
        try await write { connection in try connection.update("DELETE FROM broker_subscriptions WHERE id = ?", [.integer(id)]) == 1 }
    }

    func subscriptions(topic: String?, queue: String?) async throws -> [Subscription] {
        try await pool.withConnection { connection in
            try await connection.query("""
                SELECT s.id, s.topic, q.name AS queue, s.filter_policy FROM broker_subscriptions s JOIN broker_queues q ON q.id = s.queue_id
                WHERE (?1 IS NULL OR s.topic = ?1) AND (?2 IS NULL OR q.name = ?2)
                ORDER BY s.id
                """, [SQLValue(topic), SQLValue(queue)]).map(BrokerRow.subscription)
        }
    }

    func purgeExpired(limit: Int) async throws -> Int {
        let now = Self.nowMs
        return try await write { connection in
            let cutoff = "m.visible_at <= ?1 - q.retention_ms"
            try connection.update("""
                    INSERT INTO broker_messages (queue_id, message_id, body, attributes, event_id, sent_at, visible_at, source_queue)
                    SELECT d.id, m.message_id, m.body,
                           json_set(coalesce(m.attributes, '{}'), '$."' || ?3 || '"',
                                    json_object('type', 'String', 'value', CAST(q.retention_ms / 1000 AS TEXT))),
                           m.event_id, ?1, ?1, q.name
                    FROM broker_messages m JOIN broker_queues q ON q.id = m.queue_id
                    JOIN broker_queues d ON d.name = q.dead_letter_queue AND d.id <> q.id
                    WHERE m.id IN (SELECT m.id FROM broker_queues q JOIN broker_messages m ON m.queue_id = q.id WHERE \(cutoff) ORDER BY m.id LIMIT ?2)
                    """, [.integer(now), SQLValue(limit), .text(Broker.expiredAttribute)])
                return try connection.update("""
                    DELETE FROM broker_messages WHERE id IN (
                        SELECT m.id FROM broker_queues q JOIN broker_messages m ON m.queue_id = q.id
                        WHERE \(cutoff) ORDER BY m.id LIMIT ?2)
                    """, [.integer(now), SQLValue(limit)])
        }
    }

    /// SQLite reuses freed pages itself; there is nothing to vacuum for a queue's churn.
    func vacuumIfNeeded(threshold: Int) async throws -> Bool { false }

    // MARK: Sessions

    func withSession<T: Sendable>(transactional: Bool, _ body: @Sendable (any BrokerSession) async throws -> T) async throws -> T {
        try await pool.withConnection { connection in
            guard transactional else {
                return try await body(SQLiteSession(connection: connection, inTransaction: false, policies: policies))
            }
            return try await connection.transaction(.immediate) { connection in
                try await body(SQLiteSession(connection: connection, inTransaction: true, policies: policies))
            }
        }
    }

    // MARK: Wake-ups

    /// `PRAGMA data_version` changes whenever another connection commits: polling it is a read of
    /// shared memory, so waiting receivers notice sends from other processes within one interval.
    func startWakeups(hub: WakeupHub, logger: Logger) -> WakeupTask {
        let path = self.path
        let sqlite = self.sqlite
        let interval = configuration.sqliteChangePollInterval
        return WakeupTask(task: Task {
            var watcher: SQLiteConnection?
            var last: Int64?
            while !Task.isCancelled {
                do {
                    let connection: SQLiteConnection
                    if let watcher { connection = watcher } else {
                        connection = try await SQLiteConnection.open(path: path, configuration: sqlite)
                        watcher = connection
                    }
                    let version = try await connection.query("PRAGMA data_version").first?[0].int64
                    if let version, version != last {
                        if last != nil { await hub.signalAll() }
                        last = version
                    }
                } catch {
                    logger.warning("SQLite change watcher failed; retrying", metadata: ["error": "\(error)"])
                    if let watcher { await watcher.close() }
                    watcher = nil
                    await hub.signalAll()
                }
                try? await Task.sleep(for: interval)
            }
            if let watcher { await watcher.close() }
        })
    }
}

/// Send / publish / delete on one SQLite connection; outside a caller's transaction each call is
/// its own `BEGIN IMMEDIATE` transaction.
struct SQLiteSession: BrokerSession {
    let connection: SQLiteConnection
    let inTransaction: Bool
    let policies: PolicyCache
    var dialect: SQLDialect { .sqlite }

    private func writing<T: Sendable>(_ body: @Sendable (isolated SQLiteConnection) async throws -> T) async throws -> T {
        if inTransaction { return try await body(connection) }
        return try await connection.transaction(.immediate, body)
    }

    func send(_ queue: String, _ messages: [OutgoingMessage]) async throws -> [String] {
        try await writing { connection in
            guard let q = try connection.query(
                "SELECT id, delay_ms, max_message_bytes, sealed FROM broker_queues WHERE name = ?", [.text(queue)]
            ).first, let queueID = q["id"].int64 else { throw BrokerError(.queueNotFound, "queue '\(queue)' does not exist") }
            if q["sealed"].bool == true { throw BrokerError(.queueSealed, "queue '\(queue)' is sealed and refuses new messages") }
            let limit = q["max_message_bytes"].int ?? 262_144
            for message in messages where message.body.utf8.count > limit {
                throw BrokerError(.messageTooLarge, "message body is \(message.body.utf8.count) bytes; queue '\(queue)' allows \(limit)")
            }
            let now = SQLiteBroker.nowMs
            let defaultDelay = q["delay_ms"].int64 ?? 0
            var ids: [String] = []
            ids.reserveCapacity(messages.count)
            for message in messages {
                let id = MessageID.make()
                try connection.query("""
                    INSERT INTO broker_messages (queue_id, message_id, body, attributes, event_id, sent_at, visible_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """, [
                        .integer(queueID), .text(id), .text(message.body), SQLValue(AttributeCoding.encode(message.attributes)),
                        SQLValue(message.eventID), .integer(now), .integer(now + (message.delay?.milliseconds ?? defaultDelay)),
                    ])
                ids.append(id)
            }
            return ids
        }
    }

    func publish(_ topic: String, _ events: [TopicMessage]) async throws -> [PublishResult] {
        let policies = self.policies
        return try await writing { connection in
            let subscriptions = try connection.query("""
                SELECT s.id, s.filter_policy, q.id AS queue_id, q.name AS queue_name, q.delay_ms
                FROM broker_subscriptions s JOIN broker_queues q ON q.id = s.queue_id
                WHERE s.topic = ? AND q.sealed = 0 ORDER BY s.id
                """, [.text(topic)])
            let now = SQLiteBroker.nowMs
            var results: [PublishResult] = []
            var seen = Set<String>()
            for event in events {
                guard seen.insert(event.eventID).inserted else {
                    results.append(PublishResult(eventID: event.eventID, published: false, deliveredTo: []))
                    continue
                }
                let targets = subscriptions.filter { row in
                    guard let id = row["id"].int64 else { return false }
                    return policies.accepts(id: id, json: row["filter_policy"].string, attributes: event.attributes)
                }
                let encoded = AttributeCoding.encode(event.attributes)
                let stored = try connection.update("""
                    INSERT INTO broker_events (event_id, topic, body, attributes, delivered_to, published_at) VALUES (?, ?, ?, ?, ?, ?)
                    ON CONFLICT (event_id) DO NOTHING
                    """, [.text(event.eventID), .text(topic), .text(event.body), SQLValue(encoded), SQLValue(targets.count), .integer(now)])
                guard stored == 1 else {
                    results.append(PublishResult(eventID: event.eventID, published: false, deliveredTo: []))
                    continue
                }
                for target in targets {
                    try connection.query("""
                        INSERT INTO broker_messages (queue_id, message_id, body, attributes, event_id, sent_at, visible_at)
                        VALUES (?, ?, ?, ?, ?, ?, ?)
                        """, [
                            target["queue_id"], .text(MessageID.make()), .text(event.body), SQLValue(encoded),
                            .text(event.eventID), .integer(now), .integer(now + (target["delay_ms"].int64 ?? 0)),
                        ])
                }
                results.append(PublishResult(eventID: event.eventID, published: true, deliveredTo: targets.compactMap { $0["queue_name"].string }))
            }
            return results
        }
    }

    func delete(_ queue: String, _ receipts: [ReceiptHandle]) async throws -> Set<ReceiptHandle> {
        try await writing { connection in try Self.delete(connection, queue, receipts) }
    }

    static func delete(_ connection: isolated SQLiteConnection, _ queue: String, _ receipts: [ReceiptHandle]) throws -> Set<ReceiptHandle> {
        var done = Set<ReceiptHandle>()
        for receipt in receipts where try connection.update("""
            DELETE FROM broker_messages WHERE id = ? AND receipt = ? AND queue_id = (SELECT id FROM broker_queues WHERE name = ?)
            """, [.integer(receipt.rowID), .text(receipt.token), .text(queue)]) == 1 {
            done.insert(receipt)
        }
        return done
    }

    func changeVisibility(_ queue: String, _ receipts: [ReceiptHandle], _ timeout: Duration) async throws -> Set<ReceiptHandle> {
        try await writing { connection in
            let visibleAt = SQLiteBroker.nowMs + timeout.milliseconds
            var done = Set<ReceiptHandle>()
            for receipt in receipts where try connection.update("""
                UPDATE broker_messages SET visible_at = ?
                WHERE id = ? AND receipt = ? AND queue_id = (SELECT id FROM broker_queues WHERE name = ?)
                """, [.integer(visibleAt), .integer(receipt.rowID), .text(receipt.token), .text(queue)]) == 1 {
                done.insert(receipt)
            }
            return done
        }
    }

    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow] {
        try await connection.query(sql, binds)
    }
}

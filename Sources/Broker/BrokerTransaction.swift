import DatabaseSupport

/// The operations available inside ``Broker/transaction(_:)``; they commit together.
public struct BrokerTransaction: Sendable {
    let session: any BrokerSession
    let defaultTopic: String

    /// The SQL dialect of ``query(_:_:)``.
    public var dialect: SQLDialect { session.dialect }

    /// Sends one message; returns its id.
    @discardableResult
    public func send(_ queue: String, _ message: OutgoingMessage) async throws -> String {
        try await translatingErrors { try await session.send(queue, [message])[0] }
    }

    /// Sends several messages.
    @discardableResult
    public func sendBatch(_ queue: String, _ messages: [OutgoingMessage]) async throws -> [String] {
        try await translatingErrors { try await session.send(queue, messages) }
    }

    /// Publishes an event (see ``Broker/publish(_:topic:)``).
    @discardableResult
    public func publish(_ event: TopicMessage, topic: String? = nil) async throws -> PublishResult {
        try await translatingErrors { try await session.publish(topic ?? defaultTopic, [event])[0] }
    }

    /// Publishes several events with three statements whatever their number (see ``Broker/publishBatch(_:topic:)``).
    @discardableResult
    public func publishBatch(_ events: [TopicMessage], topic: String? = nil) async throws -> [PublishResult] {
        try await translatingErrors { try await session.publish(topic ?? defaultTopic, events) }
    }

    /// Deletes a received message; a stale receipt throws and rolls the transaction back.
    public func delete(_ queue: String, _ receipt: ReceiptHandle) async throws {
        let done = try await translatingErrors { try await session.delete(queue, [receipt]) }
        if let error = Broker.outcome([receipt], done, action: "delete").failed[receipt] { throw error }
    }

    /// Deletes received messages; returns the per-receipt outcome.
    public func deleteBatch(_ queue: String, _ receipts: [ReceiptHandle]) async throws -> BatchOutcome {
        let done = try await translatingErrors { try await session.delete(queue, receipts) }
        return Broker.outcome(receipts, done, action: "delete")
    }

    /// Changes a received message's visibility timeout.
    public func changeVisibility(_ queue: String, _ receipt: ReceiptHandle, timeout: Duration) async throws {
        let done = try await translatingErrors { try await session.changeVisibility(queue, [receipt], timeout) }
        if let error = Broker.outcome([receipt], done, action: "change the visibility of").failed[receipt] { throw error }
    }

    /// Notifies the waiters of ``Broker/waitForNotification(_:timeout:)`` on `name` (a name like a
    /// queue's, `[A-Za-z0-9_.-]{1,80}`) in every process, when this transaction commits; nothing is
    /// sent if it rolls back. Several notifications of one name coalesce.
    ///
    /// PostgreSQL: `pg_notify` on the broker's channel with the payload `@name`, which no queue
    /// name can be. SQLite: counts the notification in `broker_notifications`; waiters look at the
    /// count whenever they notice a commit.
    public func notify(_ name: String) async throws {
        try BrokerName.validate(name, kind: "notification")
        switch dialect {
        case .postgres: try await query(BrokerNotification.postgresNotify, [.text(BrokerNotification.payload(name))])
        case .sqlite: try await query(BrokerNotification.sqliteNotify, [.text(name)])
        }
    }

    /// Runs one of the caller's own parameterised statements in this transaction (in ``dialect``).
    @discardableResult
    public func query(_ sql: String, _ binds: [SQLValue] = []) async throws -> [SQLRow] {
        try await translatingErrors { try await session.query(sql, binds) }
    }
}

/// The statements behind ``BrokerTransaction/notify(_:)`` and ``Broker/notificationMark(_:)``.
enum BrokerNotification {
    /// What the PostgreSQL listener receives: queue names never start with `@`.
    static func payload(_ name: String) -> String { "@" + name }
    static let postgresNotify = "SELECT pg_notify('\(PostgresBroker.channel)', $1)"
    static let sqliteNotify = "INSERT INTO broker_notifications (name, seq) VALUES (?1, 1) ON CONFLICT (name) DO UPDATE SET seq = seq + 1"
    static let sqliteSequence = "SELECT seq FROM broker_notifications WHERE name = ?1"
}

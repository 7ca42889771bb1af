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

    /// Runs one of the caller's own parameterised statements in this transaction (in ``dialect``).
    @discardableResult
    public func query(_ sql: String, _ binds: [SQLValue] = []) async throws -> [SQLRow] {
        try await translatingErrors { try await session.query(sql, binds) }
    }
}

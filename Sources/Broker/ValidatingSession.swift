import DatabaseSupport

/// Checks every argument before a backend session sees it, so both backends reject the same input
/// with the same errors and nothing half-valid reaches the database.
struct ValidatingSession: BrokerSession {
    let inner: any BrokerSession
    let maxBatch: Int

    var dialect: SQLDialect { inner.dialect }

    func send(_ queue: String, _ messages: [OutgoingMessage]) async throws -> [String] {
        try BrokerName.validate(queue)
        try checkBatch(messages.count, what: "messages")
        for message in messages { try message.validate(maxBytes: QueueAttributes.maxMessageBytesRange.upperBound) }
        return try await inner.send(queue, messages)
    }

    func publish(_ topic: String, _ events: [TopicMessage]) async throws -> [PublishResult] {
        try BrokerName.validate(topic, kind: "topic")
        try checkBatch(events.count, what: "events")
        for event in events {
            guard !event.eventID.isEmpty, event.eventID.utf8.count <= 200, !event.eventID.utf8.contains(0) else {
                throw BrokerError(.invalidMessage, "event id must be 1 to 200 characters")
            }
            try OutgoingMessage(body: event.body, attributes: event.attributes).validate(maxBytes: QueueAttributes.maxMessageBytesRange.upperBound)
        }
        return try await inner.publish(topic, events)
    }

    func delete(_ queue: String, _ receipts: [ReceiptHandle]) async throws -> Set<ReceiptHandle> {
        try BrokerName.validate(queue)
        try checkBatch(receipts.count, what: "receipts")
        return try await inner.delete(queue, receipts)
    }

    func changeVisibility(_ queue: String, _ receipts: [ReceiptHandle], _ timeout: Duration) async throws -> Set<ReceiptHandle> {
        try BrokerName.validate(queue)
        try checkBatch(receipts.count, what: "receipts")
        guard timeout >= .zero, timeout <= QueueAttributes.maxVisibilityTimeout else {
            throw BrokerError(.invalidAttribute, "visibility timeout must be between 0 s and 12 h, not \(timeout)")
        }
        return try await inner.changeVisibility(queue, receipts, timeout)
    }

    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow] {
        try await inner.query(sql, binds)
    }

    private func checkBatch(_ count: Int, what: String) throws(BrokerError) {
        guard count >= 1, count <= maxBatch else {
            throw BrokerError(.invalidAttribute, "a batch holds 1 to \(maxBatch) \(what), not \(count)")
        }
    }
}

import DatabaseSupport

/// Decoding and encoding shared by both backends: their SQL differs, their rows do not.
enum BrokerRow {
    static func queueInfo(_ row: SQLRow) throws -> QueueInfo {
        QueueInfo(
            name: try row.require("name") { $0.string },
            attributes: QueueAttributes(
                visibilityTimeout: .milliseconds(try row.require("visibility_timeout_ms") { $0.int64 }),
                maxReceiveCount: try row.require("max_receive_count") { $0.int },
                deadLetterQueue: row["dead_letter_queue"].string,
                delay: .milliseconds(try row.require("delay_ms") { $0.int64 }),
                retention: .milliseconds(try row.require("retention_ms") { $0.int64 }),
                maxMessageBytes: try row.require("max_message_bytes") { $0.int },
                exchangeID: row["exchange_id"].string,
                program: row["program"].string),
            sealed: row["sealed"].bool ?? false,
            createdAtMilliseconds: row["created_ms"].int64 ?? 0)
    }

    static func binds(_ attributes: QueueAttributes) -> [SQLValue] {
        [
            .integer(attributes.visibilityTimeout.milliseconds), SQLValue(attributes.maxReceiveCount),
            SQLValue(attributes.deadLetterQueue), .integer(attributes.delay.milliseconds),
            .integer(attributes.retention.milliseconds), SQLValue(attributes.maxMessageBytes),
            SQLValue(attributes.exchangeID), SQLValue(attributes.program),
        ]
    }

    static func subscription(_ row: SQLRow) throws -> Subscription {
        Subscription(
            id: try row.require("id") { $0.int64 }, topic: try row.require("topic") { $0.string },
            queue: try row.require("queue") { $0.string }, filterPolicy: row["filter_policy"].string)
    }

    /// Counters from rows of (name, total, in_flight, delayed): visible is what is neither.
    static func counters(_ rows: [SQLRow]) -> [String: QueueCounters] {
        var result: [String: QueueCounters] = [:]
        for row in rows {
            guard let name = row["name"].string else { continue }
            let total = row["total"].int ?? 0
            let inFlight = row["in_flight"].int ?? 0
            let delayed = row["delayed"].int ?? 0
            result[name] = QueueCounters(visible: max(0, total - inFlight - delayed), inFlight: inFlight, delayed: delayed)
        }
        return result
    }

    /// A received message; `receiptToken` is the 32-hex receipt token (each backend stores it its own way).
    static func message(_ row: SQLRow, queue: String, receiptToken: String) throws -> ReceivedMessage {
        ReceivedMessage(
            queue: queue,
            messageID: try row.require("message_id") { $0.string },
            body: try row.require("body") { $0.string },
            attributes: AttributeCoding.decode(row["attributes"]),
            receipt: ReceiptHandle(rowID: try row.require("id") { $0.int64 }, token: receiptToken),
            receiveCount: row["receive_count"].int ?? 1,
            sentAtMilliseconds: row["sent_ms"].int64 ?? 0,
            firstReceivedAtMilliseconds: row["first_received_ms"].int64 ?? 0,
            eventID: row["event_id"].string,
            sourceQueue: row["source_queue"].string)
    }
}

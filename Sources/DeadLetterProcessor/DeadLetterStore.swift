import Broker
import DatabaseSupport
import ExchangerEvents
import Foundation
import WorkerRuntime

/// The recorded dead letters, table `exchanger_dead_letters` of the broker database (schema
/// version 2): recording, listing, and redriving them.
public struct DeadLetterStore: Sendable {
    public let broker: Broker

    public init(broker: Broker) {
        self.broker = broker
    }

    /// The most rows a listing returns.
    public static let maxListLimit = 10_000

    /// Records a dead letter once per original message id.
    /// - Returns: true when it was recorded now, false when it had been recorded before (a
    ///   re-delivered dead letter).
    @discardableResult
    public func record(_ letter: DeadLetter) async throws -> Bool {
        let attributes = try Self.encode(letter.attributes)
        return try await broker.transaction { tx in
            let postgres = tx.dialect == .postgres
            let sql = """
                INSERT INTO exchanger_dead_letters (message_id, queue, program, exchange_id, job_id, case_id, source_case_id,
                    batch_id, document_id, body, attributes, receive_count, error, reason, failed_at, recorded_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
                    \(postgres ? "to_timestamp($15::bigint / 1000.0), now()" : "$15, $16"))
                ON CONFLICT (message_id) DO NOTHING
                RETURNING id
                """
            var binds: [SQLValue] = [
                .text(letter.messageID), .text(letter.queue), SQLValue(letter.program), SQLValue(letter.exchangeID),
                SQLValue(letter.jobID), Self.value(letter.caseID), Self.value(letter.sourceCaseID), Self.value(letter.batchID),
                Self.value(letter.documentID), .text(letter.body), SQLValue(attributes), SQLValue(letter.receiveCount),
                .text(letter.error), .text(letter.reason), .integer(Self.milliseconds(letter.failedAt)),
            ]
            if !postgres { binds.append(.integer(Self.milliseconds(Date()))) }
            return try await !tx.query(Self.placeholders(sql, tx.dialect), binds).isEmpty
        }
    }

    /// Dead letters matching `filter`, newest first.
    public func list(_ filter: DeadLetterFilter = .init(), limit: Int = 100) async throws -> [DeadLetterRecord] {
        guard limit >= 1, limit <= Self.maxListLimit else {
            throw DeadLetterError(.invalidArgument, "the limit must be 1…\(Self.maxListLimit), not \(limit)")
        }
        return try await broker.transaction { tx in
            let sql = """
                SELECT \(Self.columns(tx.dialect)) FROM exchanger_dead_letters
                WHERE (\(Self.nullableText(1, tx.dialect)) IS NULL OR queue = $1)
                  AND (\(Self.nullableText(2, tx.dialect)) IS NULL OR job_id = $2)
                  AND ($3 = 0 OR redriven_at IS NULL)
                ORDER BY id DESC LIMIT $4
                """
            let rows = try await tx.query(Self.placeholders(sql, tx.dialect), [
                SQLValue(filter.queue), SQLValue(filter.jobID), .integer(filter.onlyPending ? 1 : 0), SQLValue(limit),
            ])
            return try rows.map(Self.record)
        }
    }

    /// The dead letter with this id, or nil.
    public func get(id: Int64) async throws -> DeadLetterRecord? {
        try await broker.transaction { tx in
            let sql = "SELECT \(Self.columns(tx.dialect)) FROM exchanger_dead_letters WHERE id = $1"
            return try await tx.query(Self.placeholders(sql, tx.dialect), [.integer(id)]).first.map(Self.record)
        }
    }

    /// Re-sends dead letters: each record's original body and attributes (without the
    /// `exchanger.dead-letter` marker) go to its original queue, or to `target`, as a new
    /// message, in one transaction with setting `redriven_at` and counting `redrive_count`.
    ///
    /// Each record succeeds or fails on its own: a target queue that is missing or sealed, a body
    /// too large for it, or a concurrent redrive of the same record leaves the record unchanged
    /// and is reported in its result.
    public func redrive(ids: [Int64], to target: String? = nil) async throws -> [DeadLetterRedrive] {
        var results: [DeadLetterRedrive] = []
        for id in ids {
            guard let record = try await get(id: id) else {
                results.append(DeadLetterRedrive(id: id, target: nil, error: "no dead letter has id \(id)"))
                continue
            }
            results.append(await redrive(record, to: target))
        }
        return results
    }

    /// Redrives every dead letter matching `filter` that was never redriven, oldest first.
    public func redriveAll(_ filter: DeadLetterFilter = .init(), to target: String? = nil, limit: Int = maxListLimit) async throws
        -> [DeadLetterRedrive]
    {
        var pending = filter
        pending.onlyPending = true
        let records = try await list(pending, limit: limit).reversed()
        var results: [DeadLetterRedrive] = []
        for record in records { results.append(await redrive(record, to: target)) }
        return results
    }

    /// Redrives one record (see ``redrive(ids:to:)``).
    public func redrive(_ record: DeadLetterRecord, to target: String? = nil) async -> DeadLetterRedrive {
        let destination = target ?? record.queue
        var attributes = record.attributes
        attributes[DeadLetterEnvelope.attributeName] = nil
        let message = OutgoingMessage(body: record.body, attributes: attributes)
        let expected = record.redriveCount
        do {
            let messageID = try await broker.transaction { tx in
                let postgres = tx.dialect == .postgres
                let sql = """
                    UPDATE exchanger_dead_letters
                    SET redriven_at = \(postgres ? "now()" : "$3"), redrive_count = redrive_count + 1
                    WHERE id = $1 AND redrive_count = $2
                    RETURNING id
                    """
                var binds: [SQLValue] = [.integer(record.id), SQLValue(expected)]
                if !postgres { binds.append(.integer(Self.milliseconds(Date()))) }
                guard try await !tx.query(Self.placeholders(sql, tx.dialect), binds).isEmpty else {
                    throw DeadLetterError(.conflict, "dead letter \(record.id) was redriven by someone else at the same time")
                }
                return try await tx.send(destination, message)
            }
            return DeadLetterRedrive(id: record.id, target: destination, messageID: messageID)
        } catch let error as BrokerError where error.code == .queueNotFound && target == nil {
            return DeadLetterRedrive(id: record.id, target: destination, error: "\(error); " + Self.endedExchangeHint(record))
        } catch {
            return DeadLetterRedrive(id: record.id, target: destination, error: "\(error)")
        }
    }

    /// What to do when a dead letter's queue is gone: an exchange's queues are deleted when it
    /// ends, so its left-behind documents go through again in a retry of the exchange.
    static func endedExchangeHint(_ record: DeadLetterRecord) -> String {
        let source = (try? DocumentTask.decode(record.body)).map { " (source document \($0.sourceDocumentID))" } ?? ""
        guard let job = record.jobID else {
            return "its queue was removed; send the body to a queue that exists with --to"
        }
        return "the queue was removed when exchange \(job) ended: retry the exchange with `exchanger retry \(job)` "
            + "(POST /exchanges/\(job)/retry); it sends the documents it left behind\(source) through again, "
            + "reusing their destination rows"
    }

    // MARK: Rows

    static func columns(_ dialect: SQLDialect) -> String {
        let time: (String) -> String = { column in
            dialect == .postgres ? "(extract(epoch FROM \(column)) * 1000)::bigint AS \(column)_ms" : "\(column) AS \(column)_ms"
        }
        return """
            id, message_id, queue, program, exchange_id, job_id, case_id, source_case_id, batch_id, document_id, body, attributes,
            receive_count, error, reason, \(time("failed_at")), \(time("recorded_at")), \(time("redriven_at")), redrive_count
            """
    }

    static func record(_ row: SQLRow) throws -> DeadLetterRecord {
        var attributes: MessageAttributes = [:]
        if let text = row["attributes"].string, !text.isEmpty {
            do {
                attributes = try JSONDecoder().decode(MessageAttributes.self, from: Data(text.utf8))
            } catch {
                throw DeadLetterError(.corruptRecord, "dead letter \(row["id"]): attributes cannot be read: \(error)")
            }
        }
        var letter = DeadLetter(
            messageID: try row.require("message_id") { $0.string }, queue: try row.require("queue") { $0.string },
            program: row["program"].string, exchangeID: row["exchange_id"].string, body: try row.require("body") { $0.string },
            attributes: attributes, receiveCount: row["receive_count"].int ?? 0, error: row["error"].string ?? "",
            reason: row["reason"].string ?? "", failedAt: date(row["failed_at_ms"]) ?? Date(timeIntervalSince1970: 0))
        // The ids as they were recorded (not derived again from the body).
        letter.jobID = row["job_id"].string
        letter.caseID = row["case_id"].int64
        letter.sourceCaseID = row["source_case_id"].int64
        letter.batchID = row["batch_id"].int64
        letter.documentID = row["document_id"].int64
        return DeadLetterRecord(
            id: try row.require("id") { $0.int64 }, letter: letter,
            recordedAt: date(row["recorded_at_ms"]) ?? Date(timeIntervalSince1970: 0), redrivenAt: date(row["redriven_at_ms"]),
            redriveCount: row["redrive_count"].int ?? 0)
    }

    private static func date(_ value: SQLValue) -> Date? {
        value.int64.map { Date(timeIntervalSince1970: Double($0) / 1000) }
    }

    static func value(_ number: Int64?) -> SQLValue { number.map(SQLValue.integer) ?? .null }

    static func milliseconds(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }

    static func encode(_ attributes: MessageAttributes) throws -> String? {
        guard !attributes.isEmpty else { return nil }
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(attributes), as: UTF8.self)
    }

    /// A text parameter compared with NULL: PostgreSQL needs its type spelled out.
    static func nullableText(_ index: Int, _ dialect: SQLDialect) -> String {
        dialect == .postgres ? "$\(index)::text" : "$\(index)"
    }

    /// `$1` → `?1` for SQLite.
    static func placeholders(_ sql: String, _ dialect: SQLDialect) -> String {
        dialect.placeholders(sql)
    }
}

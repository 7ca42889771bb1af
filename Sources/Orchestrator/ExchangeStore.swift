import Broker
import DatabaseSupport
import ExchangerEvents
import Foundation

/// The `exchanges` and `exchange_resources` tables (broker schema version 4).
///
/// Every state change is a compare-and-set on the stored state (and optionally the version), so
/// two replicas racing to move an exchange cannot both succeed; any replica can resume an
/// exchange whose owner lease is free or expired (``claimNextWork(owner:lease:)``). Times are the
/// database clock (PostgreSQL) or the caller's clock in milliseconds (SQLite, one host).
public struct ExchangeStore: Sendable {
    /// The broker whose database holds the state.
    public let broker: Broker

    /// A value with the given fields.
    public init(broker: Broker) {
        self.broker = broker
    }

    // MARK: Accept

    /// Inserts a new exchange in ACCEPTED under `idempotencyKey`, or returns the exchange already
    /// stored under that key (`created` false). Concurrent accepts with one key make one exchange.
    /// - Throws: ``OrchestratorError/Code/idempotencyConflict`` when the key's exchange has another
    ///   request; ``OrchestratorError/Code/invalidRequest`` for an invalid request.
    public func accept(
        _ request: ExchangeRequest, idempotencyKey: String, limits: RequestLimits = .init()
    ) async throws -> (record: ExchangeRecord, created: Bool) {
        try request.validate(limits: limits)
        guard !idempotencyKey.isEmpty else { throw OrchestratorError(.invalidRequest, "is empty", field: "Idempotency-Key") }
        let body = try EventCoding.string(request)
        let jobID = UUID().uuidString.lowercased()
        let result: (ExchangeRecord, Bool) = try await transaction { st in
            let inserted = try await st.query([
                .text(jobID), .text(idempotencyKey), .text(body), .integer(request.sourceCaseID),
                .integer(request.destinationCaseID), .integer(request.batchID),
            ]) { t in
                """
                INSERT INTO exchanges (job_id, idempotency_key, request, source_case_id, destination_case_id, batch_id, state,
                    created_at, updated_at)
                VALUES ($1, $2, $3, $4, $5, $6, 'ACCEPTED', \(t.now), \(t.now))
                ON CONFLICT (idempotency_key) DO NOTHING
                RETURNING \(Self.columns(t))
                """
            }
            if let row = inserted.first { return (try Self.record(row), true) }
            let existing = try await st.query([.text(idempotencyKey)]) { t in
                "SELECT \(Self.columns(t)) FROM exchanges WHERE idempotency_key = $1"
            }
            guard let row = existing.first else {
                throw OrchestratorError(.stateConflict, "the exchange of idempotency key '\(idempotencyKey)' vanished meanwhile")
            }
            return (try Self.record(row), false)
        }
        if !result.1, !result.0.request.isEquivalent(to: request) {
            throw OrchestratorError(.idempotencyConflict,
                "idempotency key '\(idempotencyKey)' belongs to exchange \(result.0.jobID), which has another request")
        }
        return result
    }

    // MARK: Reading

    /// The exchange with this job id, or nil.
    public func get(_ jobID: String) async throws -> ExchangeRecord? {
        try await transaction { st in try await Self.get(st, jobID) }
    }

    static func get(_ st: StoreStatement, _ jobID: String) async throws -> ExchangeRecord? {
        try await st.query([.text(jobID)]) { t in "SELECT \(columns(t)) FROM exchanges WHERE job_id = $1" }.first.map(record)
    }

    /// Exchanges, newest first: all, or those in `state`, and/or those whose source or destination
    /// case is `caseID`; at most `limit`.
    public func list(state: ExchangeState? = nil, caseID: Int64? = nil, limit: Int = 100) async throws -> [ExchangeRecord] {
        try await transaction { st in
            try await st.query([
                SQLValue(state?.name), SQLValue(state?.teardownTarget?.rawValue), caseID.map { .integer($0) } ?? .null,
                SQLValue(max(1, limit)),
            ]) { t in
                """
                SELECT \(Self.columns(t)) FROM exchanges
                WHERE (\(t.nullableText(1)) IS NULL OR (state = $1 AND (\(t.nullableText(2)) IS NULL OR teardown_target = $2)))
                  AND (\(t.bigint(3)) IS NULL OR source_case_id = $3 OR destination_case_id = $3)
                ORDER BY created_at DESC, job_id
                LIMIT $4
                """
            }.map(Self.record)
        }
    }

    // MARK: Transitions

    /// Moves the exchange from `from` to `to` if it is still in `from` (and at `expectedVersion`
    /// when given), bumping its version; `error` is stored when given.
    /// - Throws: ``OrchestratorError/Code/invalidTransition`` when the state machine forbids it;
    ///   ``OrchestratorError/Code/stateConflict`` when the exchange is no longer in `from` (someone
    ///   moved it first); ``OrchestratorError/Code/notFound``.
    @discardableResult
    public func transition(
        _ jobID: String, from: ExchangeState, to: ExchangeState, expectedVersion: Int64? = nil, error: String? = nil
    ) async throws -> ExchangeRecord {
        try await transaction { st in
            try await Self.transition(st, jobID, from: from, to: to, expectedVersion: expectedVersion, error: error)
        }
    }

    /// ``transition(_:from:to:expectedVersion:error:)`` inside the caller's broker transaction, so
    /// the transition commits together with what else the caller does (a publish, a send).
    @discardableResult
    public func transition(
        in tx: BrokerTransaction, _ jobID: String, from: ExchangeState, to: ExchangeState, expectedVersion: Int64? = nil,
        error: String? = nil
    ) async throws -> ExchangeRecord {
        try await Self.transition(StoreStatement(tx: tx), jobID, from: from, to: to, expectedVersion: expectedVersion, error: error)
    }

    static func transition(
        _ st: StoreStatement, _ jobID: String, from: ExchangeState, to: ExchangeState, expectedVersion: Int64?, error: String?
    ) async throws -> ExchangeRecord {
        _ = try from.transition(to: to)
        let rows = try await st.query([
            .text(jobID), .text(from.name), SQLValue(from.teardownTarget?.rawValue), .text(to.name),
            SQLValue(to.teardownTarget?.rawValue), expectedVersion.map { .integer($0) } ?? .null, SQLValue(error),
            .bool(to.isFinal),
        ]) { t in
            """
            UPDATE exchanges
            SET state = $4, teardown_target = \(t.nullableText(5)), version = version + 1, updated_at = \(t.now),
                error = coalesce(\(t.nullableText(7)), error),
                finished_at = CASE WHEN \(t.bool(8)) THEN \(t.now) ELSE finished_at END
            WHERE job_id = $1 AND state = $2 AND teardown_target \(t.notDistinct) \(t.nullableText(3))
              AND (\(t.bigint(6)) IS NULL OR version = $6)
            RETURNING \(columns(t))
            """
        }
        if let row = rows.first { return try record(row) }
        guard let current = try await get(st, jobID) else {
            throw OrchestratorError(.notFound, "no exchange has job id '\(jobID)'")
        }
        throw OrchestratorError(.stateConflict,
            "exchange \(jobID) is \(current.state) at version \(current.version), not \(from)"
                + (expectedVersion.map { " at version \($0)" } ?? "") + "; it cannot move to \(to)")
    }

    /// Records why the step in hand is being retried (or clears it with nil), without moving the
    /// exchange: `GET /exchanges/{jobId}` shows it as `error` while the exchange waits to retry.
    /// A final exchange is left alone; its error is the one its final transition stored.
    public func noteStepError(_ jobID: String, _ error: String?) async throws {
        try await transaction { st in
            try await st.query([.text(jobID), SQLValue(error)]) { t in
                """
                UPDATE exchanges SET error = \(t.nullableText(2)), updated_at = \(t.now)
                WHERE job_id = $1 AND finished_at IS NULL
                """
            }
        }
    }

    // MARK: Counts

    /// Records the number of documents the payload covers, and how many selected documents the
    /// copy skipped (`skipExchanged`).
    public func setTotalDocuments(_ jobID: String, _ total: Int, skipped: Int = 0) async throws {
        try await transaction { st in
            try await st.query([.text(jobID), SQLValue(total), SQLValue(skipped)]) { t in
                "UPDATE exchanges SET total_documents = $2, documents_skipped = $3, updated_at = \(t.now) WHERE job_id = $1"
            }
        }
    }

    /// Advances the payload cursor from `from` to `to` in the caller's transaction (with the sends
    /// it covers); false when the cursor was not at `from` (another run sent these), and then the
    /// caller must roll back.
    static func advancePayloadCursor(_ tx: BrokerTransaction, _ jobID: String, from: Int, to: Int) async throws -> Bool {
        try await StoreStatement(tx: tx).query([.text(jobID), SQLValue(from), SQLValue(to)]) { t in
            "UPDATE exchanges SET payload_sent = $3, updated_at = \(t.now) WHERE job_id = $1 AND payload_sent = $2 RETURNING job_id"
        }.count == 1
    }

    /// Stores the result counts in the caller's transaction.
    static func setResult(
        _ tx: BrokerTransaction, _ jobID: String, summary: ExchangeSummary, stages: [String: StageCount], leftBehind: LeftBehindDocuments
    ) async throws {
        let stageText = try EventCoding.string(stages)
        let leftText = try EventCoding.string(leftBehind)
        try await StoreStatement(tx: tx).query([
            .text(jobID), SQLValue(summary.copied), SQLValue(summary.notFound), SQLValue(summary.failed), .text(stageText), .text(leftText),
        ]) { t in
            """
            UPDATE exchanges SET documents_copied = $2, documents_not_found = $3, documents_failed = $4, stage_counts = $5,
                document_outcomes = $6, updated_at = \(t.now)
            WHERE job_id = $1
            """
        }
    }

    // MARK: Resources

    /// Records a resource of the exchange (again: no change). Record before creating it, so a
    /// crash in between leaves nothing teardown does not know about.
    public func record(jobID: String, kind: ExchangeResource.Kind, name: String, detail: String? = nil) async throws {
        try await transaction { st in
            try await st.query([.text(jobID), .text(kind.rawValue), .text(name), SQLValue(detail)]) { t in
                """
                INSERT INTO exchange_resources (job_id, kind, name, detail, created_at) VALUES ($1, $2, $3, $4, \(t.now))
                ON CONFLICT (job_id, kind, name) DO UPDATE SET removed_at = NULL
                """
            }
        }
    }

    /// Marks a recorded resource removed.
    public func markRemoved(jobID: String, kind: ExchangeResource.Kind, name: String) async throws {
        try await transaction { st in
            try await st.query([.text(jobID), .text(kind.rawValue), .text(name)]) { t in
                "UPDATE exchange_resources SET removed_at = \(t.now) WHERE job_id = $1 AND kind = $2 AND name = $3 AND removed_at IS NULL"
            }
        }
    }

    /// The exchange's recorded resources in creation order (without the removed ones unless asked).
    public func resources(_ jobID: String, includeRemoved: Bool = false) async throws -> [ExchangeResource] {
        try await transaction { st in
            try await st.query([.text(jobID), .bool(includeRemoved)]) { t in
                """
                SELECT kind, name, detail, \(t.milliseconds("created_at")) AS created_ms, \(t.milliseconds("removed_at")) AS removed_ms
                FROM exchange_resources WHERE job_id = $1 AND (\(t.bool(2)) OR removed_at IS NULL)
                ORDER BY created_at, kind, name
                """
            }.map { row in
                guard let kind = row["kind"].string.flatMap(ExchangeResource.Kind.init(rawValue:)), let name = row["name"].string else {
                    throw OrchestratorError(.corruptRecord, "exchange_resources row of \(jobID) cannot be read")
                }
                return ExchangeResource(
                    kind: kind, name: name, detail: row["detail"].string, createdAt: Self.date(row["created_ms"]) ?? Date(),
                    removedAt: Self.date(row["removed_ms"]))
            }
        }
    }

    // MARK: Leases

    /// Takes the lease of one exchange in a non-final state whose lease is free or expired (the
    /// least recently updated first) for `owner`, until `lease` from now; nil when there is none.
    /// A replica that crashed loses its exchanges to the others once its leases expire.
    public func claimNextWork(owner: String, lease: Duration) async throws -> ExchangeRecord? {
        try Self.validateLease(owner: owner, lease: lease)
        return try await transaction { st in
            try await st.query([.text(owner), .integer(lease.milliseconds)]) { t in
                """
                UPDATE exchanges SET owner = $1, lease_expires_at = \(t.plus(2))
                WHERE job_id = (
                    SELECT job_id FROM exchanges
                    WHERE state NOT IN ('FINISHED', 'FAILED', 'CANCELLED')
                      AND (lease_expires_at IS NULL OR lease_expires_at <= \(t.now))
                    ORDER BY updated_at, job_id
                    LIMIT 1 \(t.lock("FOR UPDATE SKIP LOCKED")))
                RETURNING \(Self.columns(t))
                """
            }.first.map(Self.record)
        }
    }

    /// Extends `owner`'s lease on the exchange; false when `owner` does not hold it any more.
    public func renewLease(_ jobID: String, owner: String, lease: Duration) async throws -> Bool {
        try Self.validateLease(owner: owner, lease: lease)
        return try await transaction { st in
            try await st.query([.text(jobID), .text(owner), .integer(lease.milliseconds)]) { t in
                """
                UPDATE exchanges SET lease_expires_at = \(t.plus(3))
                WHERE job_id = $1 AND owner = $2 AND lease_expires_at > \(t.now)
                RETURNING job_id
                """
            }.count == 1
        }
    }

    /// Gives the lease back (another replica may claim the exchange at once); false when `owner` did not hold it.
    @discardableResult
    public func releaseLease(_ jobID: String, owner: String) async throws -> Bool {
        try await transaction { st in
            try await st.query([.text(jobID), .text(owner)]) { _ in
                "UPDATE exchanges SET owner = NULL, lease_expires_at = NULL WHERE job_id = $1 AND owner = $2 RETURNING job_id"
            }.count == 1
        }
    }

    /// Brings the next completion check of a PROCESSING exchange forward to now, when it is only
    /// waiting for that check: its lease (if any) ends within `idleLease` (the completion-check
    /// interval) — an exchange a replica is actively working on holds a full, renewed lease and is
    /// left alone. Returns whether the check was brought forward. Called when a document of the
    /// exchange reaches the end of its path, so completion is seen at once, not a timer later.
    @discardableResult
    public func expediteCompletionCheck(_ jobID: String, idleLease: Duration) async throws -> Bool {
        try await transaction { st in
            try await st.query([.text(jobID), .integer(idleLease.milliseconds)]) { t in
                """
                UPDATE exchanges SET lease_expires_at = \(t.now)
                WHERE job_id = $1 AND state = 'PROCESSING'
                  AND lease_expires_at IS NOT NULL AND lease_expires_at > \(t.now) AND lease_expires_at <= \(t.plus(2))
                RETURNING job_id
                """
            }.count == 1
        }
    }

    private static func validateLease(owner: String, lease: Duration) throws(OrchestratorError) {
        guard !owner.isEmpty, owner.utf8.count <= 200 else {
            throw OrchestratorError(.invalidRequest, "an owner is 1–200 bytes", field: "owner")
        }
        guard lease >= .milliseconds(100), lease <= .seconds(3600) else {
            throw OrchestratorError(.invalidRequest, "a lease must be between 100 ms and 1 hour, not \(lease)", field: "lease")
        }
    }

    // MARK: Rows

    static func columns(_ t: SQLTime) -> String {
        """
        job_id, idempotency_key, request, state, teardown_target, version, total_documents, payload_sent, documents_copied,
        documents_not_found, documents_failed, documents_skipped, document_outcomes, stage_counts, error, owner, \(t.milliseconds("lease_expires_at")) AS lease_ms,
        \(t.milliseconds("created_at")) AS created_ms, \(t.milliseconds("updated_at")) AS updated_ms, \(t.milliseconds("finished_at")) AS finished_ms
        """
    }

    static func record(_ row: SQLRow) throws -> ExchangeRecord {
        let jobID = row["job_id"].string ?? "?"
        guard let key = row["idempotency_key"].string, let requestText = row["request"].string,
            let stateName = row["state"].string,
            let state = ExchangeState(name: stateName, teardownTarget: row["teardown_target"].string),
            let version = row["version"].int64
        else { throw OrchestratorError(.corruptRecord, "exchange \(jobID) cannot be read") }
        let request: ExchangeRequest
        do {
            request = try EventCoding.decode(ExchangeRequest.self, from: requestText)
        } catch {
            throw OrchestratorError(.corruptRecord, "the stored request of exchange \(jobID) cannot be read: \(error)")
        }
        var summary: ExchangeSummary?
        if let copied = row["documents_copied"].int, let notFound = row["documents_not_found"].int,
            let failed = row["documents_failed"].int
        {
            summary = ExchangeSummary(
                documents: row["total_documents"].int ?? 0, copied: copied, notFound: notFound, failed: failed,
                skipped: row["documents_skipped"].int.flatMap { $0 > 0 ? $0 : nil })
        }
        let leftBehind = row["document_outcomes"].string.flatMap { try? EventCoding.decode(LeftBehindDocuments.self, from: $0) }
        let stages = row["stage_counts"].string.flatMap { try? EventCoding.decode([String: StageCount].self, from: $0) } ?? [:]
        return ExchangeRecord(
            jobID: jobID, idempotencyKey: key, request: request, state: state, version: version,
            totalDocuments: row["total_documents"].int, payloadSent: row["payload_sent"].int ?? 0, summary: summary,
            skippedDocuments: row["documents_skipped"].int, leftBehind: leftBehind,
            stageCounts: stages, error: row["error"].string, owner: row["owner"].string, leaseExpiresAt: date(row["lease_ms"]),
            createdAt: date(row["created_ms"]) ?? Date(timeIntervalSince1970: 0),
            updatedAt: date(row["updated_ms"]) ?? Date(timeIntervalSince1970: 0), finishedAt: date(row["finished_ms"]))
    }

    static func date(_ value: SQLValue) -> Date? {
        value.int64.map { Date(timeIntervalSince1970: Double($0) / 1000) }
    }

    // MARK: Transactions

    /// One broker transaction with the store's statement conventions. PostgreSQL: broker sessions
    /// turn sequential scans off (for the queue tables); these small tables plan normally again,
    /// without JIT, as in `DeploymentStore`.
    @discardableResult
    func transaction<T: Sendable>(_ body: @Sendable (StoreStatement) async throws -> T) async throws -> T {
        try await broker.transaction { tx in
            if tx.dialect == .postgres {
                try await tx.query("SELECT set_config('enable_seqscan', 'on', true), set_config('jit', 'off', true)")
            }
            return try await body(StoreStatement(tx: tx))
        }
    }
}

/// Runs statements written with PostgreSQL's `$n` placeholders in either dialect (SQLite gets
/// `?n`, and its clock as one more parameter when the statement reads the time).
struct StoreStatement: Sendable {
    let tx: BrokerTransaction
    let clock: Int64

    init(tx: BrokerTransaction, clock: Date = Date()) {
        self.tx = tx
        self.clock = Int64((clock.timeIntervalSince1970 * 1000).rounded())
    }

    @discardableResult
    func query(_ binds: [SQLValue] = [], _ sql: (SQLTime) -> String) async throws -> [SQLRow] {
        try await tx.query(clock: clock, binds, sql)
    }
}

import DatabaseSupport
import Logging

/// The batch status table of the destination case databases, `document_exchange_batches`.
///
/// The table is created on first use of a case database when it is missing. Every change is one
/// upsert guarded by the status rank, so events may arrive in any order and any number of times:
/// the row only ever moves from `INITIATED` to a final status, and the first final status wins.
public struct BatchStatusStore: Sendable {
    /// The connections to the case databases (their setup creates the table).
    public let pool: CaseDatabasePool

    /// A store over its own connection cache.
    public init(settings: CaseDatabaseSettings, logger: Logger = Logger(label: "exchanger.case-database")) {
        self.pool = CaseDatabasePool(settings: settings, logger: logger, setup: { try await Self.ensureSchema($0) })
    }

    /// A store over a cache whose setup already runs ``ensureSchema(_:)``.
    public init(pool: CaseDatabasePool) {
        self.pool = pool
    }

    /// Closes the connections.
    public func shutdown() async { await pool.shutdown() }

    /// Creates `document_exchange_batches` when it is missing (safe when several processes race).
    public static func ensureSchema(_ connection: CaseDatabaseConnection) async throws {
        do {
            try await connection.execute(connection.kind == .postgres ? postgresSchema : sqliteSchema)
        } catch let error where error.isUniqueViolation {
            // Two sessions created the table at once (PostgreSQL's catalog race): it exists now.
        }
    }

    /// Records a status change.
    /// - Returns: true when the row changed; false when it already had this or a final status
    ///   (a duplicate or a late event).
    /// - Throws: ``CaseDatabaseError`` (`.notFound` when the case has no database).
    @discardableResult
    public func record(_ update: BatchStatusUpdate, caseID: Int64) async throws -> Bool {
        try await pool.withConnection(caseID: caseID) { connection in
            let rows = try await connection.query(connection.kind == .postgres ? Self.postgresUpsert : Self.sqliteUpsert, [
                .integer(update.batchID), SQLValue(update.jobID), update.sourceCaseID.map(SQLValue.integer) ?? .null,
                .text(update.status.rawValue), SQLValue(update.status.rank), .text(update.eventID), SQLValue(update.reason),
                SQLValue(update.summary),
            ])
            return !rows.isEmpty
        }
    }

    /// The batch's row, or nil when no status was recorded for it.
    public func status(caseID: Int64, batchID: Int64) async throws -> BatchStatusRecord? {
        try await pool.withConnection(caseID: caseID) { connection in
            let updated = connection.kind == .postgres ? "(extract(epoch FROM updated_at) * 1000)::bigint" : "updated_at"
            let rows = try await connection.query("""
                SELECT batch_id, job_id, source_case_id, status, status_rank, last_event_id, reason, summary, \(updated) AS updated_ms
                FROM document_exchange_batches WHERE batch_id = $1
                """, [.integer(batchID)])
            guard let row = rows.first else { return nil }
            let text = try row.require("status") { $0.string }
            guard let status = BatchStatus(rawValue: text) else {
                throw CaseDatabaseError(.database, "batch \(batchID) has an unknown status '\(text)'")
            }
            return BatchStatusRecord(
                batchID: try row.require("batch_id") { $0.int64 }, jobID: row["job_id"].string,
                sourceCaseID: row["source_case_id"].int64, status: status, statusRank: try row.require("status_rank") { $0.int },
                lastEventID: try row.require("last_event_id") { $0.string }, reason: row["reason"].string,
                summary: row["summary"].string, updatedAtMilliseconds: row["updated_ms"].int64 ?? 0)
        }
    }

    // MARK: SQL

    static let postgresSchema = """
        CREATE TABLE IF NOT EXISTS document_exchange_batches (
            batch_id bigint PRIMARY KEY,
            job_id text NULL,
            source_case_id bigint NULL,
            status text NOT NULL CHECK (status IN ('INITIATED', 'FINISHED', 'FAILED')),
            status_rank smallint NOT NULL CHECK (status_rank BETWEEN 1 AND 2),
            last_event_id text NOT NULL,
            reason text NULL,
            summary text NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """

    static let sqliteSchema = """
        CREATE TABLE IF NOT EXISTS document_exchange_batches (
            batch_id INTEGER PRIMARY KEY,
            job_id TEXT NULL,
            source_case_id INTEGER NULL,
            status TEXT NOT NULL CHECK (status IN ('INITIATED', 'FINISHED', 'FAILED')),
            status_rank INTEGER NOT NULL CHECK (status_rank BETWEEN 1 AND 2),
            last_event_id TEXT NOT NULL,
            reason TEXT NULL,
            summary TEXT NULL,
            updated_at INTEGER NOT NULL
        )
        """

    /// The rank guard: an existing row changes only for a higher rank. RETURNING yields a row
    /// only when something was written.
    static let upsertTail = """
        ON CONFLICT (batch_id) DO UPDATE SET
            job_id = coalesce(excluded.job_id, document_exchange_batches.job_id),
            source_case_id = coalesce(excluded.source_case_id, document_exchange_batches.source_case_id),
            status = excluded.status,
            status_rank = excluded.status_rank,
            last_event_id = excluded.last_event_id,
            reason = excluded.reason,
            summary = coalesce(excluded.summary, document_exchange_batches.summary),
            updated_at = excluded.updated_at
        WHERE excluded.status_rank > document_exchange_batches.status_rank
        RETURNING status
        """

    static let postgresUpsert = """
        INSERT INTO document_exchange_batches
            (batch_id, job_id, source_case_id, status, status_rank, last_event_id, reason, summary, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
        """ + "\n" + upsertTail

    static let sqliteUpsert = """
        INSERT INTO document_exchange_batches
            (batch_id, job_id, source_case_id, status, status_rank, last_event_id, reason, summary, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER))
        """ + "\n" + upsertTail
}

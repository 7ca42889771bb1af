import CaseDatabase
import DatabaseSupport
import Foundation
import Logging

/// One page of a document's text, as the full-text index keeps it.
public struct SearchIndexEntry: Sendable, Hashable {
    /// The destination document.
    public var documentID: Int64
    /// The attachment position (page index).
    public var position: Int
    public var batchID: Int64?
    public var text: String

    public init(documentID: Int64, position: Int, batchID: Int64?, text: String) {
        self.documentID = documentID
        self.position = position
        self.batchID = batchID
        self.text = text
    }
}

/// One match of ``SearchIndexStore/search(caseID:terms:limit:)``.
public struct SearchHit: Sendable, Hashable, Codable {
    public var documentID: Int64
    public var position: Int
    /// Higher is better (PostgreSQL `ts_rank`; SQLite the negated FTS5 `bm25`).
    public var rank: Double
    /// The matching passage, terms in `[` `]`.
    public var snippet: String

    enum CodingKeys: String, CodingKey { case documentID = "documentId", position, rank, snippet }

    public init(documentID: Int64, position: Int, rank: Double, snippet: String) {
        self.documentID = documentID
        self.position = position
        self.rank = rank
        self.snippet = snippet
    }
}

/// The full-text index of a case database (`document_search_text`, case migration 3): PostgreSQL
/// `tsvector` with a GIN index, SQLite FTS5.
///
/// Writes are bulk upserts keyed by (document id, position): indexing a page again replaces its
/// text, never adds a row. On PostgreSQL a bulk write is one `INSERT … SELECT FROM unnest(…)`
/// statement per ``bulkSize`` rows; on SQLite multi-row `INSERT`s of ``sqliteRowsPerStatement``
/// rows. Every statement is an idempotent upsert, so a write interrupted half-way is completed by
/// repeating it.
///
/// Connections come from a ``CaseDatabasePool``: a connection found dead (a server restart, an idle
/// connection closed by a proxy) is dropped and the call reconnects and repeats once — the
/// reference's stale cached pool (review item 13) cannot happen. A case database older than
/// migration 3 is migrated on first use.
public struct SearchIndexStore: Sendable {
    /// The default of ``bulkSize``, the reference's bulk update size.
    public static let defaultBulkSize = 20_000
    /// Rows per SQLite statement (4 parameters each, far below SQLite's parameter limit).
    public static let sqliteRowsPerStatement = 500
    /// The table.
    public static let table = "document_search_text"

    public let pool: CaseDatabasePool
    /// Most rows written by one statement (PostgreSQL) or one call of the pool (SQLite).
    public let bulkSize: Int
    private let ownsPool: Bool

    /// A store over its own connection cache (its setup migrates a case database that lacks the index).
    public init(settings: CaseDatabaseSettings, bulkSize: Int = Self.defaultBulkSize, logger: Logger = Logger(label: "exchanger.search-index")) {
        let locator = settings.locator
        self.pool = CaseDatabasePool(settings: settings, logger: logger, setup: { connection in
            try await Self.ensureSchema(connection, locator: locator)
        })
        self.bulkSize = max(1, bulkSize)
        self.ownsPool = true
    }

    /// Closes the connections.
    public func shutdown() async {
        if ownsPool { await pool.shutdown() }
    }

    /// Applies the case migrations when the connection's database has no index table yet.
    static func ensureSchema(_ connection: CaseDatabaseConnection, locator: CaseDatabaseLocator) async throws {
        let present = connection.kind == .postgres
            ? "SELECT to_regclass('document_search_text') IS NOT NULL AS present"
            : "SELECT count(*) > 0 AS present FROM sqlite_master WHERE type = 'table' AND name = 'document_search_text'"
        if try await connection.query(present).first?["present"].bool == true { return }
        try await CaseDatabases(locator: locator).migrate(caseID: connection.caseID)
    }

    // MARK: Writing

    /// Upserts the entries (a later entry for the same document and position wins).
    /// - Returns: the number of rows written.
    /// - Throws: ``CaseDatabaseError`` (`.notFound` when the case has no database).
    @discardableResult
    public func write(_ entries: [SearchIndexEntry], caseID: Int64) async throws -> Int {
        // One row per key: PostgreSQL refuses an upsert touching the same row twice.
        var latest: [Key: Int] = [:]
        for (index, entry) in entries.enumerated() { latest[Key(documentID: entry.documentID, position: entry.position)] = index }
        let rows = latest.values.sorted().map { entries[$0] }
        if rows.isEmpty { return 0 }
        return try await pool.withConnection(caseID: caseID) { connection in
            switch connection.kind {
            case .postgres:
                var start = 0
                while start < rows.count {
                    let chunk = rows[start..<min(start + bulkSize, rows.count)]
                    try await connection.query(Self.postgresUpsert, [
                        .text(PostgresArrayLiteral.integers(chunk.map(\.documentID))),
                        .text(PostgresArrayLiteral.integers(chunk.map { Int64($0.position) })),
                        .text(PostgresArrayLiteral.optionalIntegers(chunk.map(\.batchID))),
                        .text(PostgresArrayLiteral.texts(chunk.map { Self.clean($0.text) })),
                    ])
                    start += chunk.count
                }
            case .sqlite:
                var start = 0
                while start < rows.count {
                    let chunk = rows[start..<min(start + Self.sqliteRowsPerStatement, rows.count)]
                    var binds: [SQLValue] = []
                    binds.reserveCapacity(chunk.count * 4)
                    var tuples: [String] = []
                    for entry in chunk {
                        let base = binds.count
                        tuples.append("($\(base + 1), $\(base + 2), $\(base + 3), $\(base + 4))")
                        binds.append(.integer(entry.documentID))
                        binds.append(.integer(Int64(entry.position)))
                        binds.append(entry.batchID.map(SQLValue.integer) ?? .null)
                        binds.append(.text(Self.clean(entry.text)))
                    }
                    try await connection.query(
                        "INSERT INTO document_search_text (document_id, position, batch_id, content) VALUES "
                            + tuples.joined(separator: ", ") + "\n" + Self.sqliteUpsertTail, binds)
                    start += chunk.count
                }
            }
            return rows.count
        }
    }

    /// Removes a document's pages beyond `pageCount` (a document re-indexed with fewer pages).
    public func removePages(documentID: Int64, from pageCount: Int, caseID: Int64) async throws {
        try await pool.withConnection(caseID: caseID) { connection -> Void in
            _ = try await connection.query(
                "DELETE FROM document_search_text WHERE document_id = $1 AND position >= $2", [.integer(documentID), .integer(Int64(pageCount))])
        }
    }

    /// The rows of one document, by position (for tests and checks).
    public func pages(documentID: Int64, caseID: Int64) async throws -> [SearchIndexEntry] {
        try await pool.withConnection(caseID: caseID) { connection in
            try await connection.query(
                "SELECT document_id, position, batch_id, content FROM document_search_text WHERE document_id = $1 ORDER BY position",
                [.integer(documentID)]
            ).map { row in
                SearchIndexEntry(
                    documentID: try row.require("document_id") { $0.int64 }, position: try row.require("position") { $0.int },
                    batchID: row["batch_id"].int64, text: try row.require("content") { $0.string })
            }
        }
    }

    /// Rows in the index of the case.
    public func count(caseID: Int64) async throws -> Int {
        try await pool.withConnection(caseID: caseID) { connection in
            try await connection.query("SELECT count(*) AS n FROM document_search_text").first?["n"].int ?? 0
        }
    }

    // MARK: Searching

    /// The pages matching every term of `terms` (words; punctuation ignored), best first.
    public func search(caseID: Int64, terms: String, limit: Int = 20) async throws -> [SearchHit] {
        let words = Self.words(terms)
        if words.isEmpty { return [] }
        return try await pool.withConnection(caseID: caseID) { connection in
            let rows: [SQLRow]
            switch connection.kind {
            case .postgres:
                rows = try await connection.query("""
                    SELECT t.document_id, t.position, ts_rank(t.content_tsv, q) AS score,
                           ts_headline('english', t.content, q, 'StartSel="[", StopSel="]", MaxWords=20, MinWords=5') AS snippet
                    FROM document_search_text t, plainto_tsquery('english', $1) q
                    WHERE t.content_tsv @@ q
                    ORDER BY score DESC, t.document_id, t.position
                    LIMIT $2
                    """, [.text(words.joined(separator: " ")), .integer(Int64(max(1, limit)))])
            case .sqlite:
                let match = words.map { "\"" + $0 + "\"" }.joined(separator: " ")
                rows = try await connection.query("""
                    SELECT t.document_id, t.position, -bm25(document_search_fts) AS score,
                           snippet(document_search_fts, 0, '[', ']', '…', 16) AS snippet
                    FROM document_search_fts JOIN document_search_text t ON t.id = document_search_fts.rowid
                    WHERE document_search_fts MATCH $1
                    ORDER BY score DESC, t.document_id, t.position
                    LIMIT $2
                    """, [.text(match), .integer(Int64(max(1, limit)))])
            }
            return try rows.map { row in
                SearchHit(
                    documentID: try row.require("document_id") { $0.int64 }, position: try row.require("position") { $0.int },
                    rank: row["score"].double ?? 0, snippet: row["snippet"].string ?? "")
            }
        }
    }

    /// The words of a query: letters and digits, everything else separates.
    static func words(_ terms: String) -> [String] {
        terms.split(whereSeparator: { !($0.isLetter || $0.isNumber) }).map(String.init)
    }

    // MARK: SQL

    private struct Key: Hashable {
        var documentID: Int64
        var position: Int
    }

    /// Text as both databases store it: no NUL characters (PostgreSQL text cannot hold them).
    static func clean(_ text: String) -> String {
        text.contains("\u{0}") ? text.replacingOccurrences(of: "\u{0}", with: " ") : text
    }

    static let postgresUpsert = """
        INSERT INTO document_search_text (document_id, position, batch_id, content)
        SELECT * FROM unnest($1::bigint[], $2::integer[], $3::bigint[], $4::text[])
        ON CONFLICT (document_id, position) DO UPDATE SET
            content = excluded.content, batch_id = excluded.batch_id, indexed_at = now()
        WHERE document_search_text.content IS DISTINCT FROM excluded.content
            OR document_search_text.batch_id IS DISTINCT FROM excluded.batch_id
        """

    static let sqliteUpsertTail = """
        ON CONFLICT (document_id, position) DO UPDATE SET
            content = excluded.content, batch_id = excluded.batch_id, indexed_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
        WHERE document_search_text.content IS NOT excluded.content OR document_search_text.batch_id IS NOT excluded.batch_id
        """
}

/// PostgreSQL array literals (`{1,2,NULL}`, `{"a","b"}`) for binding whole columns as one parameter.
enum PostgresArrayLiteral {
    static func optionalIntegers(_ values: [Int64?]) -> String {
        "{" + values.map { $0.map(String.init) ?? "NULL" }.joined(separator: ",") + "}"
    }

    static func integers(_ values: [Int64]) -> String {
        "{" + values.map(String.init).joined(separator: ",") + "}"
    }

    static func texts(_ values: [String]) -> String {
        var output = "{"
        output.reserveCapacity(values.reduce(2) { $0 + $1.utf8.count + 3 })
        for (index, value) in values.enumerated() {
            if index > 0 { output += "," }
            output += "\""
            for character in value.unicodeScalars {
                if character == "\"" || character == "\\" { output.unicodeScalars.append("\\") }
                output.unicodeScalars.append(character)
            }
            output += "\""
        }
        return output + "}"
    }
}

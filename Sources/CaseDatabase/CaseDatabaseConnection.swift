import DatabaseSupport
import PostgresClient
import SQLiteClient

/// An open connection to one case database, PostgreSQL or SQLite.
///
/// Each statement is one parameterised call. Write placeholders as `$1`, `$2`, …: for SQLite they
/// are rewritten to `?1`, `?2`, … (which SQLite reads the same way).
public struct CaseDatabaseConnection: Sendable {
    enum Backend: Sendable {
        case postgres(PostgresConnection)
        case sqlite(SQLiteConnection)
    }

    let backend: Backend
    /// The case this connection belongs to.
    public let caseID: Int64

    init(_ backend: Backend, caseID: Int64) {
        self.backend = backend
        self.caseID = caseID
    }

    /// The database kind (SQL differs in places: types, timestamps).
    public var kind: CaseDatabaseKind {
        switch backend {
        case .postgres: .postgres
        case .sqlite: .sqlite
        }
    }

    /// Runs one parameterised statement and returns its rows.
    @discardableResult
    public func query(_ sql: String, _ binds: [SQLValue] = []) async throws(DatabaseError) -> [SQLRow] {
        switch backend {
        case .postgres(let connection): try await connection.query(sql, binds)
        case .sqlite(let connection): try await connection.query(SQLPlaceholders.sqlite(sql), binds)
        }
    }

    /// Runs SQL text without parameters (schema statements).
    public func execute(_ sql: String) async throws(DatabaseError) {
        switch backend {
        case .postgres(let connection): try await connection.execute(sql)
        case .sqlite(let connection): try await connection.execute(sql)
        }
    }

    func close() async {
        switch backend {
        case .postgres(let connection): await connection.close()
        case .sqlite(let connection): await connection.close()
        }
    }

}

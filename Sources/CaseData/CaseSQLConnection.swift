import CaseDatabase
import DatabaseSupport
import Foundation
import PostgresClient
import SQLiteClient

/// A dedicated connection to one case database, PostgreSQL or SQLite (not pooled: the copy engine
/// holds a snapshot on it, the seeder a long transaction).
///
/// Statements use `$1`, `$2`, … placeholders in both dialects (rewritten to `?1`, … for SQLite).
enum CaseSQLConnection: Sendable {
    case postgres(PostgresConnection)
    case sqlite(SQLiteConnection)

    var kind: CaseDatabaseKind {
        switch self {
        case .postgres: .postgres
        case .sqlite: .sqlite
        }
    }

    @discardableResult
    func query(_ sql: String, _ binds: [SQLValue] = []) async throws -> [SQLRow] {
        switch self {
        case .postgres(let connection): try await connection.query(sql, binds)
        case .sqlite(let connection): try await connection.query(SQLPlaceholders.sqlite(sql), binds)
        }
    }

    @discardableResult
    func update(_ sql: String, _ binds: [SQLValue] = []) async throws -> Int {
        switch self {
        case .postgres(let connection): try await connection.update(sql, binds)
        case .sqlite(let connection): try await connection.update(SQLPlaceholders.sqlite(sql), binds)
        }
    }

    func execute(_ sql: String) async throws {
        switch self {
        case .postgres(let connection): try await connection.execute(sql)
        case .sqlite(let connection): try await connection.execute(sql)
        }
    }

    /// A write transaction (PostgreSQL READ COMMITTED unless told otherwise, SQLite IMMEDIATE).
    func transaction<T: Sendable>(
        postgres isolation: PostgresIsolationLevel = .readCommitted, sqlite mode: SQLiteTransactionMode = .immediate,
        _ body: @Sendable @escaping (CaseSQLConnection) async throws -> T
    ) async throws -> T {
        switch self {
        case .postgres(let connection):
            try await connection.transaction(isolation: isolation) { isolated in try await body(.postgres(isolated)) }
        case .sqlite(let connection):
            try await connection.transaction(mode) { isolated in try await body(.sqlite(isolated)) }
        }
    }

    func close() async {
        switch self {
        case .postgres(let connection): await connection.close()
        case .sqlite(let connection): await connection.close()
        }
    }

    /// Quotes an identifier taken from the catalog (both dialects accept double quotes).
    static func quote(_ identifier: String) -> String {
        "\"" + identifier.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

}

/// Creating, opening, migrating and dropping per-case databases.
public struct CaseDatabases: Sendable {
    /// Where the case databases are.
    public let locator: CaseDatabaseLocator
    /// Session settings of the PostgreSQL connections this opens (the copy engine's long
    /// transactions need generous timeouts; see ``CaseCopySettings``).
    public var postgresConfiguration: PostgresConfiguration
    /// The database a PostgreSQL connection uses to run `CREATE DATABASE` / `DROP DATABASE`.
    public var maintenanceDatabase: String

    /// The default of ``maintenanceDatabase``.
    public static let defaultMaintenanceDatabase = "postgres"

    /// Case databases found by `locator`.
    public init(
        locator: CaseDatabaseLocator, postgresConfiguration: PostgresConfiguration = CaseDatabasePool.defaultPostgresConfiguration,
        maintenanceDatabase: String = Self.defaultMaintenanceDatabase
    ) {
        self.locator = locator
        self.postgresConfiguration = postgresConfiguration
        self.maintenanceDatabase = maintenanceDatabase
    }

    /// The locator from `EXCHANGER_CASE_DATABASE_URL` / `EXCHANGER_CASE_DATABASE_PREFIX` (see
    /// `CaseDatabaseSettings`), each overridden by the argument when given.
    /// - Throws: `CaseDatabaseError` with `.invalidConfiguration` naming the setting at fault.
    public init(urlTemplate: String?, prefix: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        var environment = environment
        if let urlTemplate, !urlTemplate.isEmpty { environment["EXCHANGER_CASE_DATABASE_URL"] = urlTemplate }
        if let prefix, !prefix.isEmpty { environment["EXCHANGER_CASE_DATABASE_PREFIX"] = prefix }
        self.init(locator: try CaseDatabaseSettings(environment: environment).locator)
    }

    /// Creates the case's database when it does not exist (PostgreSQL: `CREATE DATABASE
    /// {prefix}_{caseId}` through the maintenance database of the same server; SQLite: the file)
    /// and applies the pending case migrations.
    /// - Returns: the migration versions applied now.
    @discardableResult
    public func create(caseID: Int64) async throws -> [Int] {
        let name = try locator.databaseName(caseID: caseID)
        switch locator.kind {
        case .postgres:
            let admin = try await connectMaintenance()
            do {
                try await admin.execute("CREATE DATABASE \(CaseSQLConnection.quote(name))")
            } catch where error.sqlState == "42P04" {
                // Already there.
            } catch where error.isUniqueViolation {
                // Created concurrently (pg_database's unique index).
            } catch {
                await admin.close()
                throw Self.wrap(error, "cannot create case database \(name)")
            }
            await admin.close()
        case .sqlite:
            guard let path = try locator.sqlitePath(caseID: caseID) else {
                throw CaseDataError(.invalidArgument, "no SQLite path for case \(caseID)")
            }
            let connection = try await SQLiteConnection.open(path: path)
            await connection.close()
        }
        return try await migrate(caseID: caseID)
    }

    /// Applies the pending case migrations to an existing case database.
    @discardableResult
    public func migrate(caseID: Int64) async throws -> [Int] {
        let connection = try await open(caseID: caseID)
        do {
            let applied = try await CaseSchema.migrate(connection)
            await connection.close()
            return applied
        } catch {
            await connection.close()
            throw Self.wrap(error, "case \(caseID): migration failed")
        }
    }

    /// The case's schema version (0 when never migrated).
    public func schemaVersion(caseID: Int64) async throws -> Int {
        let connection = try await open(caseID: caseID)
        do {
            let version = try await CaseSchema.version(connection)
            await connection.close()
            return version
        } catch {
            await connection.close()
            throw Self.wrap(error, "case \(caseID): cannot read the schema version")
        }
    }

    /// Drops the case's database (PostgreSQL `DROP DATABASE … WITH (FORCE)`; SQLite: removes the
    /// file and its WAL files). Dropping a missing database is not an error.
    public func drop(caseID: Int64) async throws {
        let name = try locator.databaseName(caseID: caseID)
        switch locator.kind {
        case .postgres:
            let admin = try await connectMaintenance()
            do {
                try await admin.execute("DROP DATABASE IF EXISTS \(CaseSQLConnection.quote(name)) WITH (FORCE)")
                await admin.close()
            } catch {
                await admin.close()
                throw Self.wrap(error, "cannot drop case database \(name)")
            }
        case .sqlite:
            guard let path = try locator.sqlitePath(caseID: caseID) else { return }
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        }
    }

    /// The URL of the maintenance database on the case databases' server.
    public func maintenanceURL() throws -> String {
        locator.template.replacingOccurrences(of: CaseDatabaseLocator.placeholder, with: maintenanceDatabase)
    }

    // MARK: Connections

    func open(caseID: Int64) async throws -> CaseSQLConnection {
        let name = try locator.databaseName(caseID: caseID)
        switch locator.kind {
        case .postgres:
            do {
                return .postgres(try await PostgresConnection.connect(url: try locator.url(caseID: caseID), configuration: postgresConfiguration))
            } catch let error as DatabaseError {
                if error.sqlState == "3D000" || error.message.contains("database \"\(name)\" does not exist") {
                    throw CaseDataError(.notFound, "case database \(name) does not exist", underlying: error)
                }
                throw CaseDataError(.database, "cannot connect to case database \(name): \(error.message)", underlying: error)
            }
        case .sqlite:
            guard let path = try locator.sqlitePath(caseID: caseID) else {
                throw CaseDataError(.invalidArgument, "no SQLite path for case \(caseID)")
            }
            guard FileManager.default.fileExists(atPath: path) else {
                throw CaseDataError(.notFound, "case database \(name) does not exist (no file \(path))")
            }
            let configuration = try SQLiteConfiguration.parse(url: try locator.url(caseID: caseID)).configuration
            return .sqlite(try await SQLiteConnection.open(path: path, configuration: configuration))
        }
    }

    /// A connection for `CREATE DATABASE` / `DROP DATABASE`: without a statement timeout, since a
    /// drop waits for a checkpoint, which on a busy server may take longer than any query should.
    private func connectMaintenance() async throws -> PostgresConnection {
        var configuration = postgresConfiguration
        configuration.statementTimeout = nil
        do {
            return try await PostgresConnection.connect(url: try maintenanceURL(), configuration: configuration)
        } catch {
            throw Self.wrap(error, "cannot connect to the case-database server")
        }
    }

    static func wrap(_ error: any Error, _ context: String) -> any Error {
        switch error {
        case let error as CaseDataError: error
        case let error as DatabaseError: CaseDataError(.database, "\(context): \(error.description)", underlying: error)
        default: error
        }
    }
}

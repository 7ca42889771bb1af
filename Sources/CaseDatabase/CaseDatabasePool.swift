import DatabaseSupport
import Foundation
import Logging
import PostgresClient
import SQLiteClient

/// A small cache of open case-database connections, one per case, keyed by case id.
///
/// At most ``maxOpenConnections`` connections stay open: when a new case is opened beyond the
/// limit, the least recently used idle connection is closed (a connection in use is never closed
/// under its user; the cache goes over the limit until it is released). A connection whose call
/// failed with a connection error is dropped, and the next call reconnects.
///
/// Concurrent calls for the same case share its connection (each connection runs one statement at
/// a time); two callers asking for a case that is not open yet wait for the same connect.
public actor CaseDatabasePool {
    /// Runs once on every new connection (for example to create a table if it is missing).
    public typealias Setup = @Sendable (CaseDatabaseConnection) async throws -> Void

    public nonisolated let locator: CaseDatabaseLocator
    public nonisolated let maxOpenConnections: Int
    private let setup: Setup
    private let postgresConfiguration: PostgresConfiguration
    private let logger: Logger

    private enum State {
        case opening(Task<CaseDatabaseConnection, any Error>)
        case open(CaseDatabaseConnection)
    }

    private struct Entry {
        var generation: UInt64
        var state: State
        var lastUsed: UInt64
        var users: Int
    }

    private var entries: [Int64: Entry] = [:]
    private var clock: UInt64 = 0
    private var nextGeneration: UInt64 = 0
    private var closed = false

    /// - Parameters:
    ///   - settings: where the databases are and the connection limit.
    ///   - postgres: session settings of PostgreSQL connections.
    ///   - setup: runs on every new connection before it is used.
    public init(
        settings: CaseDatabaseSettings, postgres: PostgresConfiguration = CaseDatabasePool.defaultPostgresConfiguration,
        logger: Logger = Logger(label: "exchanger.case-database"), setup: @escaping Setup = { _ in }
    ) {
        self.locator = settings.locator
        self.maxOpenConnections = settings.maxOpenConnections
        self.postgresConfiguration = postgres
        self.logger = logger
        self.setup = setup
        if let warning = ConnectionSecurity.weakTLSWarning(settings.locator.template) { logger.warning("case databases: \(warning)") }
    }

    /// PostgreSQL session settings of case-database connections (application name `exchanger-case`).
    public static var defaultPostgresConfiguration: PostgresConfiguration {
        var configuration = PostgresConfiguration()
        configuration.applicationName = "exchanger-case"
        return configuration
    }

    /// Runs `body` with the case's connection.
    ///
    /// - Parameter retryOnConnectionLoss: when the connection turns out to be lost (a server
    ///   restart), reconnect and run `body` once more. Only for bodies that are safe to repeat.
    /// - Throws: ``CaseDatabaseError``: `.notFound` when the database does not exist,
    ///   `.unavailable` when it cannot be reached, `.database` when a statement failed; any
    ///   other error of `body` as it is.
    public nonisolated func withConnection<T: Sendable>(
        caseID: Int64, retryOnConnectionLoss: Bool = true, _ body: (CaseDatabaseConnection) async throws -> T
    ) async throws -> T {
        var attempt = 0
        while true {
            attempt += 1
            let (connection, generation) = try await acquire(caseID)
            do {
                let result = try await body(connection)
                await release(caseID, generation: generation, broken: false)
                return result
            } catch {
                let lost = Self.isConnectionLoss(error)
                await release(caseID, generation: generation, broken: lost)
                if lost, retryOnConnectionLoss, attempt == 1 {
                    logger.info("case database connection lost; reconnecting", metadata: ["caseId": "\(caseID)", "error": "\(error)"])
                    continue
                }
                throw Self.translate(error, caseID: caseID)
            }
        }
    }

    /// Open connections (idle or in use) and connects in progress, for tests and metrics.
    public var openCount: Int { entries.count }

    /// The cases with an open connection or a connect in progress.
    public var openCases: Set<Int64> { Set(entries.keys) }

    /// Closes every connection; later calls fail with ``CaseDatabaseError/Code/closed``.
    public func shutdown() async {
        closed = true
        let all = entries.values
        entries.removeAll()
        for entry in all {
            switch entry.state {
            case .open(let connection): await connection.close()
            case .opening(let task):
                if let connection = try? await task.value { await connection.close() }
            }
        }
    }

    // MARK: Internals

    private func acquire(_ caseID: Int64) async throws -> (CaseDatabaseConnection, UInt64) {
        guard !closed else { throw CaseDatabaseError(.closed, "the case-database connection cache is shut down") }
        clock += 1
        if var entry = entries[caseID] {
            entry.users += 1
            entry.lastUsed = clock
            entries[caseID] = entry
            switch entry.state {
            case .open(let connection):
                return (connection, entry.generation)
            case .opening(let task):
                // The opener removes the entry when the connect fails; nothing to release then.
                return (try await task.value, entry.generation)
            }
        }
        nextGeneration += 1
        let generation = nextGeneration
        let locator = self.locator
        let configuration = postgresConfiguration
        let setup = self.setup
        let task = Task { try await Self.open(locator, caseID: caseID, postgres: configuration, setup: setup) }
        entries[caseID] = Entry(generation: generation, state: .opening(task), lastUsed: clock, users: 1)
        do {
            let connection = try await task.value
            if var entry = entries[caseID], entry.generation == generation {
                entry.state = .open(connection)
                entries[caseID] = entry
            } else {
                // Shut down while connecting.
                await connection.close()
                throw CaseDatabaseError(.closed, "the case-database connection cache is shut down")
            }
            await evictIfNeeded()
            return (connection, generation)
        } catch {
            if entries[caseID]?.generation == generation { entries[caseID] = nil }
            throw error
        }
    }

    private func release(_ caseID: Int64, generation: UInt64, broken: Bool) async {
        guard var entry = entries[caseID], entry.generation == generation else { return }
        entry.users -= 1
        if broken {
            entries[caseID] = nil
            if case .open(let connection) = entry.state { await connection.close() }
        } else {
            entries[caseID] = entry
        }
        await evictIfNeeded()
    }

    /// Closes the least recently used idle connections while more than the limit are open.
    private func evictIfNeeded() async {
        var victims: [CaseDatabaseConnection] = []
        while entries.count > maxOpenConnections {
            let idle = entries.filter { entry in
                if case .open = entry.value.state { return entry.value.users == 0 }
                return false
            }
            guard let (caseID, entry) = idle.min(by: { $0.value.lastUsed < $1.value.lastUsed }) else { break }
            entries[caseID] = nil
            if case .open(let connection) = entry.state { victims.append(connection) }
        }
        for connection in victims {
            logger.debug("closing least recently used case database connection", metadata: ["caseId": "\(connection.caseID)"])
            await connection.close()
        }
    }

    private static func open(
        _ locator: CaseDatabaseLocator, caseID: Int64, postgres: PostgresConfiguration, setup: Setup
    ) async throws -> CaseDatabaseConnection {
        let name = try locator.databaseName(caseID: caseID)
        let connection: CaseDatabaseConnection
        switch locator.kind {
        case .postgres:
            let url = try locator.url(caseID: caseID)
            do {
                connection = CaseDatabaseConnection(.postgres(try await PostgresConnection.connect(url: url, configuration: postgres)), caseID: caseID)
            } catch let error as DatabaseError {
                if isMissingDatabase(error, name: name) {
                    throw CaseDatabaseError(.notFound, "case database \(name) does not exist", underlying: error)
                }
                throw CaseDatabaseError(.unavailable, "cannot connect to case database \(name): \(error.message)", underlying: error)
            }
        case .sqlite:
            // Opening creates a missing file, which would hide a wrong case id: look first.
            guard let path = try locator.sqlitePath(caseID: caseID) else {
                throw CaseDatabaseError(.invalidConfiguration, "no SQLite path for case \(caseID)")
            }
            guard FileManager.default.fileExists(atPath: path) else {
                throw CaseDatabaseError(.notFound, "case database \(name) does not exist (no file \(path))")
            }
            let configuration: SQLiteConfiguration
            do {
                configuration = try SQLiteConfiguration.parse(url: try locator.url(caseID: caseID)).configuration
            } catch let error as DatabaseError {
                throw CaseDatabaseError(.invalidConfiguration, "case-database URL: \(error.message)", underlying: error)
            }
            do {
                connection = CaseDatabaseConnection(.sqlite(try await SQLiteConnection.open(path: path, configuration: configuration)), caseID: caseID)
            } catch let error as DatabaseError {
                throw CaseDatabaseError(.unavailable, "cannot open case database \(name): \(error.message)", underlying: error)
            }
        }
        do {
            try await setup(connection)
        } catch {
            await connection.close()
            throw translate(error, caseID: caseID)
        }
        return connection
    }

    /// PostgreSQL reports a missing database as SQLSTATE 3D000; libpq gives no SQLSTATE for a
    /// failed connect, so its message (`database "case_42" does not exist`) is matched too.
    static func isMissingDatabase(_ error: DatabaseError, name: String) -> Bool {
        if error.sqlState == "3D000" { return true }
        return error.message.contains("database \"\(name)\" does not exist")
    }

    static func isConnectionLoss(_ error: any Error) -> Bool {
        if let error = error as? DatabaseError {
            return error.code == .connectionClosed || error.code == .connectionFailed
                || (error.sqlState.map { $0.hasPrefix("08") || $0.hasPrefix("57P") } ?? false)
        }
        return false
    }

    static func translate(_ error: any Error, caseID: Int64) -> any Error {
        guard let error = error as? DatabaseError else { return error }
        if isConnectionLoss(error) {
            return CaseDatabaseError(.unavailable, "case \(caseID): connection lost: \(error.message)", underlying: error)
        }
        return CaseDatabaseError(.database, "case \(caseID): \(error.description)", underlying: error)
    }
}

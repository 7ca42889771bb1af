import ConcurrencySupport
import CSQLite
import DatabaseSupport
import Foundation

/// Settings for SQLite connections.
public struct SQLiteConfiguration: Sendable, Hashable {
    /// How long a writer waits for another process's write lock before failing with `busy`.
    public var busyTimeout: Duration = .seconds(10)
    /// `PRAGMA synchronous`: `FULL` (default: a committed transaction survives power loss) or `NORMAL`.
    public var synchronous: String = "FULL"
    /// Prepared statements kept per connection.
    public var statementCacheSize: Int = 128

    public init() {}

    /// Parses `sqlite:///absolute/path.db?busy_timeout_ms=…&synchronous=normal` (or a plain path)
    /// into a file path and settings.
    public static func parse(url: String) throws(DatabaseError) -> (path: String, configuration: SQLiteConfiguration) {
        var configuration = SQLiteConfiguration()
        guard url.hasPrefix("sqlite://") || url.hasPrefix("/") else {
            throw DatabaseError(.invalidURL, message: "an SQLite URL looks like sqlite:///path/to/file.db")
        }
        var rest = url.hasPrefix("sqlite://") ? String(url.dropFirst("sqlite://".count)) : url
        var query = ""
        if let mark = rest.firstIndex(of: "?") {
            query = String(rest[rest.index(after: mark)...])
            rest = String(rest[..<mark])
        }
        let path = rest.removingPercentEncoding ?? rest
        guard !path.isEmpty, path != "/" else {
            throw DatabaseError(.invalidURL, message: "the SQLite URL '\(url)' names no file")
        }
        for pair in query.split(separator: "&") where !pair.isEmpty {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            let key = parts[0]
            let value = parts.count > 1 ? parts[1] : ""
            switch key {
            case "busy_timeout_ms":
                guard let milliseconds = Int(value), milliseconds >= 0 else {
                    throw DatabaseError(.invalidURL, message: "busy_timeout_ms must be a whole number of milliseconds, not '\(value)'")
                }
                configuration.busyTimeout = .milliseconds(milliseconds)
            case "synchronous":
                let upper = value.uppercased()
                guard ["OFF", "NORMAL", "FULL", "EXTRA"].contains(upper) else {
                    throw DatabaseError(.invalidURL, message: "synchronous must be off, normal, full or extra, not '\(value)'")
                }
                configuration.synchronous = upper
            default:
                throw DatabaseError(.invalidURL, message: "unknown SQLite URL option '\(key)'")
            }
        }
        return (path, configuration)
    }
}

/// How a transaction takes SQLite's locks.
public enum SQLiteTransactionMode: String, Sendable {
    /// Takes the write lock at once (`BEGIN IMMEDIATE`): every transaction that writes uses this, so
    /// two writers never deadlock upgrading a read lock.
    case immediate = "IMMEDIATE"
    /// Read-only transactions: one consistent snapshot, no write lock.
    case deferred = "DEFERRED"
}

private let transientDestructor = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// One SQLite connection in WAL mode, running on a thread of its own; several processes may open
/// the same file. Writers use `BEGIN IMMEDIATE` and wait up to the busy timeout for the lock.
public actor SQLiteConnection: PoolableConnection {
    private let executor: ThreadExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    private var handle: OpaquePointer?
    private let configuration: SQLiteConfiguration
    private var statements: [String: OpaquePointer] = [:]
    private var inTransactionFlag = false
    public let path: String

    private init(path: String, configuration: SQLiteConfiguration) {
        self.executor = ThreadExecutor(name: "exch-sqlite")
        self.path = path
        self.configuration = configuration
    }

    /// Opens (creating if needed) the database file named by an `sqlite:///path` URL or path.
    public static func open(url: String) async throws -> SQLiteConnection {
        let (path, configuration) = try SQLiteConfiguration.parse(url: url)
        return try await open(path: path, configuration: configuration)
    }

    /// Opens (creating if needed) the database file at `path`.
    public static func open(path: String, configuration: SQLiteConfiguration = .init()) async throws -> SQLiteConnection {
        let connection = SQLiteConnection(path: path, configuration: configuration)
        do {
            try await connection.openFile()
        } catch {
            await connection.close()
            throw error
        }
        return connection
    }

    private func openFile() throws(DatabaseError) {
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty { try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        var db: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let status = sqlite3_open_v2(path, &db, flags, nil)
        handle = db
        guard status == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            throw DatabaseError(.connectionFailed, sqlState: "SQLITE_\(status)", message: "cannot open \(path): \(message)")
        }
        sqlite3_extended_result_codes(db, 1)
        sqlite3_busy_timeout(db, Int32(clamping: configuration.busyTimeout.milliseconds))
        try execute("PRAGMA journal_mode = WAL")
        try execute("PRAGMA synchronous = \(configuration.synchronous)")
        try execute("PRAGMA foreign_keys = ON")
    }

    public var isUsable: Bool { handle != nil && !inTransactionFlag }

    /// Closes the connection (finalising its statements) and ends its thread.
    public func close() {
        for statement in statements.values { sqlite3_finalize(statement) }
        statements.removeAll()
        if let handle { sqlite3_close_v2(handle) }
        handle = nil
        executor.shutdown()
    }

    // MARK: Statements

    /// Runs one parameterised statement and returns its rows.
    /// - Throws: `DatabaseError` `.decoding` when a text value is not valid UTF-8 (it is never
    ///   returned with replacement characters).
    @discardableResult
    public func query(_ sql: String, _ binds: [SQLValue] = []) throws(DatabaseError) -> [SQLRow] {
        try run(sql, binds).rows
    }

    /// Runs one parameterised statement and returns the number of rows it changed.
    @discardableResult
    public func update(_ sql: String, _ binds: [SQLValue] = []) throws(DatabaseError) -> Int {
        try run(sql, binds).changes
    }

    /// Runs SQL text without parameters, possibly several statements (migrations, pragmas).
    public func execute(_ sql: String) throws(DatabaseError) {
        let db = try requireHandle()
        var errorMessage: UnsafeMutablePointer<CChar>?
        let status = sqlite3_exec(db, sql, nil, nil, &errorMessage)
        if status != SQLITE_OK {
            let message = errorMessage.map { String(cString: $0) } ?? String(cString: sqlite3_errmsg(db))
            sqlite3_free(errorMessage)
            throw error(status: status, message: message, statement: sql)
        }
    }

    private func run(_ sql: String, _ binds: [SQLValue]) throws(DatabaseError) -> (rows: [SQLRow], changes: Int) {
        let db = try requireHandle()
        let statement = try prepared(sql, db: db)
        defer {
            sqlite3_reset(statement)
            sqlite3_clear_bindings(statement)
        }
        let expected = Int(sqlite3_bind_parameter_count(statement))
        guard expected == binds.count else {
            throw DatabaseError(.misuse, message: "statement takes \(expected) parameters, \(binds.count) given", statement: sql)
        }
        for (offset, value) in binds.enumerated() {
            let index = Int32(offset + 1)
            let status: Int32 = switch value {
            case .null: sqlite3_bind_null(statement, index)
            case .integer(let value): sqlite3_bind_int64(statement, index, value)
            case .double(let value): sqlite3_bind_double(statement, index, value)
            case .bool(let value): sqlite3_bind_int64(statement, index, value ? 1 : 0)
            case .text(let value):
                // Bind by byte count, not as a C string, so text containing NUL is kept whole.
                value.isEmpty
                    ? sqlite3_bind_text(statement, index, "", 0, transientDestructor)
                    : Array(value.utf8).withUnsafeBufferPointer { buffer in
                        buffer.withMemoryRebound(to: CChar.self) {
                            sqlite3_bind_text(statement, index, $0.baseAddress, Int32($0.count), transientDestructor)
                        }
                    }
            case .blob(let value):
                value.withUnsafeBytes { sqlite3_bind_blob(statement, index, $0.baseAddress, Int32($0.count), transientDestructor) }
            }
            guard status == SQLITE_OK else {
                throw error(status: status, message: String(cString: sqlite3_errmsg(db)), statement: sql)
            }
        }
        var rows: [SQLRow] = []
        var columns: [String]?
        while true {
            let status = sqlite3_step(statement)
            if status == SQLITE_DONE { break }
            guard status == SQLITE_ROW else {
                throw error(status: status, message: String(cString: sqlite3_errmsg(db)), statement: sql)
            }
            let count = sqlite3_column_count(statement)
            let names = columns ?? (0..<count).map { String(cString: sqlite3_column_name(statement, $0)) }
            columns = names
            var values: [SQLValue] = []
            values.reserveCapacity(Int(count))
            for column in 0..<count {
                switch sqlite3_column_type(statement, column) {
                case SQLITE_INTEGER: values.append(.integer(sqlite3_column_int64(statement, column)))
                case SQLITE_FLOAT: values.append(.double(sqlite3_column_double(statement, column)))
                case SQLITE_TEXT:
                    // Text is returned only when its bytes are valid UTF-8: a Swift String cannot hold
                    // other bytes, and replacing them (U+FFFD) would hand on a value the database
                    // does not hold. Read such values as bytes: `CAST(column AS BLOB)` or `hex(column)`.
                    let length = Int(sqlite3_column_bytes(statement, column))
                    if let text = sqlite3_column_text(statement, column) {
                        guard let string = String(validating: UnsafeBufferPointer(start: text, count: length), as: UTF8.self) else {
                            let name = String(cString: sqlite3_column_name(statement, column))
                            throw DatabaseError(
                                .decoding, message: "column '\(name)' holds text that is not valid UTF-8 (\(length) bytes); read it as a blob",
                                statement: sql)
                        }
                        values.append(.text(string))
                    } else {
                        values.append(.text(""))
                    }
                case SQLITE_BLOB:
                    let length = Int(sqlite3_column_bytes(statement, column))
                    if let blob = sqlite3_column_blob(statement, column), length > 0 {
                        values.append(.blob(Array(UnsafeRawBufferPointer(start: blob, count: length))))
                    } else {
                        values.append(.blob([]))
                    }
                default: values.append(.null)
                }
            }
            rows.append(SQLRow(columns: names, values: values))
        }
        return (rows, Int(sqlite3_changes(db)))
    }

    private func prepared(_ sql: String, db: OpaquePointer) throws(DatabaseError) -> OpaquePointer {
        if let statement = statements[sql] { return statement }
        if statements.count >= configuration.statementCacheSize {
            for statement in statements.values { sqlite3_finalize(statement) }
            statements.removeAll()
        }
        var statement: OpaquePointer?
        let status = sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard status == SQLITE_OK, let statement else {
            throw error(status: status, message: String(cString: sqlite3_errmsg(db)), statement: sql)
        }
        statements[sql] = statement
        return statement
    }

    // MARK: Transactions

    /// Runs `body` in a transaction, committing when it returns and rolling back when it throws.
    /// Use `.immediate` (the default) for anything that writes.
    public func transaction<T: Sendable>(
        _ mode: SQLiteTransactionMode = .immediate,
        _ body: @Sendable (isolated SQLiteConnection) async throws -> T
    ) async throws -> T {
        guard !inTransactionFlag else { throw DatabaseError(.misuse, message: "transactions do not nest on one connection") }
        try execute("BEGIN \(mode.rawValue)")
        inTransactionFlag = true
        do {
            let result = try await body(self)
            inTransactionFlag = false
            do {
                try execute("COMMIT")
            } catch {
                if let handle, sqlite3_get_autocommit(handle) == 0 { _ = try? execute("ROLLBACK") }
                throw error
            }
            return result
        } catch {
            inTransactionFlag = false
            if let handle, sqlite3_get_autocommit(handle) == 0 { _ = try? execute("ROLLBACK") }
            throw error
        }
    }

    /// True inside ``transaction(_:_:)``.
    public var inTransaction: Bool { inTransactionFlag }

    // MARK: Helpers

    private func requireHandle() throws(DatabaseError) -> OpaquePointer {
        guard let handle else { throw DatabaseError(.connectionClosed, message: "the SQLite connection is closed") }
        return handle
    }

    private func error(status: Int32, message: String, statement: String?) -> DatabaseError {
        let primary = status & 0xFF
        let code: DatabaseError.Code = primary == SQLITE_BUSY || primary == SQLITE_LOCKED ? .busy : .queryFailed
        return DatabaseError(code, sqlState: "SQLITE_\(status)", message: message, statement: statement)
    }
}

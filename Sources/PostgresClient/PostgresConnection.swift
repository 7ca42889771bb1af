import ConcurrencySupport
import CLibPQ
import DatabaseSupport
import Foundation

/// Settings applied to every new PostgreSQL connection.
public struct PostgresConfiguration: Sendable {
    /// Seconds libpq waits for the server to accept a connection.
    public var connectTimeoutSeconds: Int = 10
    /// TCP keepalives of the connection (libpq's `keepalives_idle`, `keepalives_interval`,
    /// `keepalives_count`): a peer that stops answering is noticed after about
    /// idle + interval × count seconds (60 s by default) instead of the kernel's two hours.
    /// The URL's own `keepalives*` parameters win. Ignored on Unix-domain sockets.
    public var keepalivesIdleSeconds: Int = 30
    /// Seconds between unanswered keepalive probes.
    public var keepalivesIntervalSeconds: Int = 10
    /// Unanswered probes before the connection counts as dead.
    public var keepalivesCount: Int = 3
    /// libpq's `tcp_user_timeout`: how long sent data may stay unacknowledged before the
    /// connection is closed (a cut network link during a commit ends the wait instead of the
    /// kernel's retransmission backoff of many minutes); `nil` leaves the system's. The URL's
    /// `tcp_user_timeout` wins.
    public var tcpUserTimeout: Duration? = .seconds(30)
    /// `statement_timeout` for the session; `nil` leaves the server's setting.
    public var statementTimeout: Duration? = .seconds(60)
    /// `idle_in_transaction_session_timeout`; `nil` leaves the server's setting.
    public var idleInTransactionTimeout: Duration? = .seconds(60)
    /// `lock_timeout`; `nil` leaves the server's setting.
    public var lockTimeout: Duration? = nil
    /// `application_name`, shown in `pg_stat_activity`.
    public var applicationName: String = "exchanger"
    /// Prepared statements kept per connection before the cache is reset.
    public var preparedStatementCacheSize: Int = 256
    /// Further session parameters (name, value), applied with `set_config` after connecting.
    public var sessionParameters: [(name: String, value: String)] = []

    public init() {}
}

/// A transaction isolation level.
public enum PostgresIsolationLevel: String, Sendable {
    case readCommitted = "READ COMMITTED"
    /// One snapshot for the whole transaction (the case-data copy reads its source this way).
    case repeatableRead = "REPEATABLE READ"
    case serializable = "SERIALIZABLE"
}

/// One PostgreSQL connection through libpq, running on a thread of its own.
///
/// Every call blocks only this connection's thread (see ``ThreadExecutor``); callers `await` it
/// from any task. A connection is used by one task at a time: take it from a ``ConnectionPool``.
/// Statements with parameters are prepared once per connection and reused.
public actor PostgresConnection: PoolableConnection {
    private let executor: ThreadExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    private var handle: OpaquePointer?
    private let configuration: PostgresConfiguration
    private var statements: [String: String] = [:]
    private var statementCounter = 0
    private var transactionDepth = 0

    private init(executor: ThreadExecutor, configuration: PostgresConfiguration) {
        self.executor = executor
        self.configuration = configuration
    }

    /// Opens a connection.
    /// - Parameters:
    ///   - url: a libpq connection URI (`postgres://user@host:port/db?sslmode=…`) or key/value
    ///     string. A password may come from `PGPASSWORD` or `PGPASSFILE` instead of the URL.
    ///   - configuration: session settings.
    public static func connect(url: String, configuration: PostgresConfiguration = .init()) async throws -> PostgresConnection {
        let connection = PostgresConnection(
            executor: ThreadExecutor(name: "exch-postgres"), configuration: configuration)
        do {
            try await connection.open(url: url)
        } catch {
            await connection.close()
            throw error
        }
        return connection
    }

    private func open(url: String) throws(DatabaseError) {
        // Keys before `dbname` are defaults: libpq applies the URL's expansion after them, so a
        // parameter in the URL overrides the same one here.
        var keys = ["connect_timeout", "application_name", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count"]
        var values = [
            String(configuration.connectTimeoutSeconds), configuration.applicationName, "1", String(configuration.keepalivesIdleSeconds),
            String(configuration.keepalivesIntervalSeconds), String(configuration.keepalivesCount),
        ]
        if let timeout = configuration.tcpUserTimeout {
            keys.append("tcp_user_timeout")
            values.append(String(timeout.milliseconds))
        }
        keys.append("dbname")
        values.append(url)
        let conn = withCStringArray(keys) { keyPointers in
            withCStringArray(values) { valuePointers in
                PQconnectdbParams(keyPointers, valuePointers, 1)
            }
        }
        guard let conn else { throw DatabaseError(.connectionFailed, message: "libpq could not allocate a connection") }
        handle = conn
        guard PQstatus(conn) == CONNECTION_OK else {
            let message = Self.trimmed(PQerrorMessage(conn))
            throw DatabaseError(.connectionFailed, message: message.isEmpty ? "could not connect" : message)
        }
        var settings: [String] = ["SET client_min_messages = warning"]
        if let timeout = configuration.statementTimeout { settings.append("SET statement_timeout = \(timeout.milliseconds)") }
        if let timeout = configuration.idleInTransactionTimeout {
            settings.append("SET idle_in_transaction_session_timeout = \(timeout.milliseconds)")
        }
        if let timeout = configuration.lockTimeout { settings.append("SET lock_timeout = \(timeout.milliseconds)") }
        if !settings.isEmpty { try execute(settings.joined(separator: "; ")) }
        for parameter in configuration.sessionParameters {
            try query("SELECT set_config($1, $2, false)", [.text(parameter.name), .text(parameter.value)])
        }
    }

    /// The TCP settings of the connection's socket as the kernel holds them (`getsockopt`); nil
    /// on a Unix-domain socket or without a connection.
    public var tcpSettings: PostgresTCPSettings? {
        guard let handle else { return nil }
        let socket = PQsocket(handle)
        guard socket >= 0 else { return nil }
        func option(_ level: Int32, _ name: Int32) -> Int32? {
            var value: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            return getsockopt(socket, level, name, &value, &length) == 0 ? value : nil
        }
        guard let keepalive = option(SOL_SOCKET, SO_KEEPALIVE), let idle = option(Int32(IPPROTO_TCP), TCP_KEEPIDLE),
            let interval = option(Int32(IPPROTO_TCP), TCP_KEEPINTVL), let count = option(Int32(IPPROTO_TCP), TCP_KEEPCNT),
            let userTimeout = option(Int32(IPPROTO_TCP), Int32(TCP_USER_TIMEOUT))
        else { return nil }
        return PostgresTCPSettings(
            keepalive: keepalive != 0, idleSeconds: Int(idle), intervalSeconds: Int(interval), count: Int(count),
            userTimeoutMilliseconds: Int(userTimeout))
    }

    /// True while libpq reports the connection healthy.
    public var isUsable: Bool {
        guard let handle else { return false }
        return PQstatus(handle) == CONNECTION_OK && transactionDepth == 0
    }

    /// Closes the connection and ends its thread.
    public func close() {
        if let handle { PQfinish(handle) }
        handle = nil
        statements.removeAll()
        executor.shutdown()
    }

    // MARK: Statements

    /// Runs one parameterised statement and returns its rows. The statement is prepared on first
    /// use and reused afterwards.
    @discardableResult
    public func query(_ sql: String, _ binds: [SQLValue] = []) throws(DatabaseError) -> [SQLRow] {
        try run(sql, binds, retryStalePlan: true).rows
    }

    /// Runs one parameterised statement and returns the number of rows it affected.
    @discardableResult
    public func update(_ sql: String, _ binds: [SQLValue] = []) throws(DatabaseError) -> Int {
        try run(sql, binds, retryStalePlan: true).affected
    }

    /// Runs SQL text with no parameters through the simple-query protocol: several statements may be
    /// separated by semicolons (migrations, `SET`). Never build this text from values.
    public func execute(_ sql: String) throws(DatabaseError) {
        let conn = try requireHandle()
        let result = PQexec(conn, sql)
        defer { PQclear(result) }
        try check(result, statement: sql)
    }

    private func run(_ sql: String, _ binds: [SQLValue], retryStalePlan: Bool) throws(DatabaseError) -> (rows: [SQLRow], affected: Int) {
        let conn = try requireHandle()
        // Text parameters travel as C strings: a NUL would silently cut the value short.
        for bind in binds {
            if case .text(let text) = bind, text.utf8.contains(0) {
                throw DatabaseError(.misuse, sqlState: "22021", message: "text values cannot contain NUL characters", statement: sql)
            }
        }
        let name = try prepared(sql, conn: conn, parameterCount: binds.count)
        let encoded = binds.map(Self.encode)
        let result: OpaquePointer? = withParameters(encoded) { values, lengths, formats in
            PQexecPrepared(conn, name, Int32(binds.count), values, lengths, formats, 0)
        }
        defer { PQclear(result) }
        do {
            try check(result, statement: sql)
        } catch {
            // A schema change can invalidate a cached plan ("cached plan must not change result type").
            if retryStalePlan, error.sqlState == "0A000", transactionDepth == 0 {
                forget(sql)
                return try run(sql, binds, retryStalePlan: false)
            }
            if error.sqlState == "26000" { forget(sql) }  // prepared statement vanished
            throw error
        }
        return (Self.rows(of: result), Int(String(cString: PQcmdTuples(result))) ?? 0)
    }

    private func prepared(_ sql: String, conn: OpaquePointer, parameterCount: Int) throws(DatabaseError) -> String {
        if let name = statements[sql] { return name }
        if statements.count >= configuration.preparedStatementCacheSize {
            try execute("DEALLOCATE ALL")
            statements.removeAll()
        }
        statementCounter += 1
        let name = "exs\(statementCounter)"
        let result = PQprepare(conn, name, sql, Int32(parameterCount), nil)
        defer { PQclear(result) }
        try check(result, statement: sql)
        statements[sql] = name
        return name
    }

    private func forget(_ sql: String) {
        guard let name = statements.removeValue(forKey: sql), let handle else { return }
        PQclear(PQexec(handle, "DEALLOCATE \(name)"))
    }

    // MARK: Transactions

    /// Runs `body` in a transaction: `BEGIN`, then `COMMIT` when it returns or `ROLLBACK` when it
    /// throws. Transactions do not nest.
    public func transaction<T: Sendable>(
        isolation: PostgresIsolationLevel = .readCommitted,
        _ body: @Sendable (isolated PostgresConnection) async throws -> T
    ) async throws -> T {
        guard transactionDepth == 0 else {
            throw DatabaseError(.misuse, message: "transactions do not nest on one connection")
        }
        try execute("BEGIN ISOLATION LEVEL \(isolation.rawValue)")
        transactionDepth = 1
        do {
            let result = try await body(self)
            transactionDepth = 0
            try commit()
            return result
        } catch {
            transactionDepth = 0
            if let handle, PQstatus(handle) == CONNECTION_OK { PQclear(PQexec(handle, "ROLLBACK")) }
            throw error
        }
    }

    /// COMMIT, failing when the server rolled back instead (a statement in the transaction failed).
    private func commit() throws(DatabaseError) {
        let conn = try requireHandle()
        let result = PQexec(conn, "COMMIT")
        defer { PQclear(result) }
        try check(result, statement: "COMMIT")
        if String(cString: PQcmdStatus(result)) == "ROLLBACK" {
            throw DatabaseError(.queryFailed, sqlState: "25P02", message: "the transaction was aborted by an earlier error and rolled back", statement: "COMMIT")
        }
    }

    /// True inside ``transaction(isolation:_:)``.
    public var inTransaction: Bool { transactionDepth > 0 }

    // MARK: LISTEN / NOTIFY

    /// A notification received on a channel this connection listens to.
    public struct Notification: Sendable, Hashable {
        public var channel: String
        public var payload: String
        public var senderPID: Int32
    }

    /// Starts listening on a channel.
    public func listen(_ channel: String) throws(DatabaseError) {
        try execute("LISTEN \(try quoteIdentifier(channel))")
    }

    /// Stops listening on a channel.
    public func unlisten(_ channel: String) throws(DatabaseError) {
        try execute("UNLISTEN \(try quoteIdentifier(channel))")
    }

    /// Sends a notification (`pg_notify`, delivered when the surrounding transaction commits).
    public func notify(_ channel: String, payload: String = "") throws(DatabaseError) {
        try query("SELECT pg_notify($1, $2)", [.text(channel), .text(payload)])
    }

    /// Waits up to `timeout` for notifications on this connection's socket and returns all that
    /// arrived (possibly none). Blocks only this connection's thread.
    public func waitForNotifications(timeout: Duration) throws(DatabaseError) -> [Notification] {
        let conn = try requireHandle()
        var received = drainNotifications(conn)
        if !received.isEmpty { return received }
        let socket = PQsocket(conn)
        guard socket >= 0 else { throw DatabaseError(.connectionClosed, message: "the connection has no socket") }
        var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        let ready = poll(&descriptor, 1, Int32(clamping: timeout.milliseconds))
        if ready < 0 && errno != EINTR {
            throw DatabaseError(.connectionClosed, message: "poll failed: \(String(cString: strerror(errno)))")
        }
        if ready > 0 {
            guard PQconsumeInput(conn) == 1 else {
                throw DatabaseError(.connectionClosed, message: Self.trimmed(PQerrorMessage(conn)))
            }
            received = drainNotifications(conn)
        }
        if PQstatus(conn) != CONNECTION_OK {
            throw DatabaseError(.connectionClosed, message: "the listener connection was lost")
        }
        return received
    }

    private func drainNotifications(_ conn: OpaquePointer) -> [Notification] {
        var received: [Notification] = []
        while let notify = PQnotifies(conn) {
            let value = notify.pointee
            received.append(Notification(
                channel: String(cString: value.relname), payload: String(cString: value.extra), senderPID: value.be_pid))
            PQfreemem(notify)
        }
        return received
    }

    // MARK: COPY

    /// Streams the output of a `COPY … TO STDOUT` statement to `consumer` in chunks of about
    /// `chunkSize` bytes. Returns the number of bytes read.
    @discardableResult
    public func copyOut(
        _ sql: String, chunkSize: Int = 64 * 1024, into consumer: ([UInt8]) async throws -> Void
    ) async throws -> Int {
        let conn = try requireHandle()
        let start = PQexec(conn, sql)
        let status = PQresultStatus(start)
        if status != PGRES_COPY_OUT {
            defer { PQclear(start) }
            try check(start, statement: sql)
            throw DatabaseError(.copyFailed, message: "statement did not start COPY TO STDOUT", statement: sql)
        }
        PQclear(start)
        var chunk: [UInt8] = []
        chunk.reserveCapacity(chunkSize)
        var total = 0
        while true {
            var buffer: UnsafeMutablePointer<CChar>?
            let length = PQgetCopyData(conn, &buffer, 0)
            if length > 0, let buffer {
                buffer.withMemoryRebound(to: UInt8.self, capacity: Int(length)) { bytes in
                    chunk.append(contentsOf: UnsafeBufferPointer(start: bytes, count: Int(length)))
                }
                PQfreemem(buffer)
                total += Int(length)
                if chunk.count >= chunkSize {
                    try await consumer(chunk)
                    chunk.removeAll(keepingCapacity: true)
                }
            } else if length == -1 {
                break
            } else {
                throw DatabaseError(.copyFailed, message: Self.trimmed(PQerrorMessage(conn)), statement: sql)
            }
        }
        if !chunk.isEmpty { try await consumer(chunk) }
        try finishCopy(conn, statement: sql)
        return total
    }

    /// Runs a `COPY … FROM STDIN` statement, feeding it every chunk of `source`. If `source`
    /// throws, the COPY is aborted and nothing is written. Returns the rows copied.
    @discardableResult
    public func copyIn<Source: AsyncSequence & Sendable>(_ sql: String, from source: Source) async throws -> Int
    where Source.Element == [UInt8] {
        let conn = try requireHandle()
        let start = PQexec(conn, sql)
        if PQresultStatus(start) != PGRES_COPY_IN {
            defer { PQclear(start) }
            try check(start, statement: sql)
            throw DatabaseError(.copyFailed, message: "statement did not start COPY FROM STDIN", statement: sql)
        }
        PQclear(start)
        do {
            for try await chunk in source {
                let sent = chunk.withUnsafeBufferPointer { buffer in
                    buffer.withMemoryRebound(to: CChar.self) { PQputCopyData(conn, $0.baseAddress, Int32(buffer.count)) }
                }
                guard sent == 1 else {
                    throw DatabaseError(.copyFailed, message: Self.trimmed(PQerrorMessage(conn)), statement: sql)
                }
            }
        } catch {
            _ = PQputCopyEnd(conn, "aborted by client: \(error)")
            _ = try? finishCopy(conn, statement: sql)
            throw error
        }
        guard PQputCopyEnd(conn, nil) == 1 else {
            throw DatabaseError(.copyFailed, message: Self.trimmed(PQerrorMessage(conn)), statement: sql)
        }
        return try finishCopy(conn, statement: sql)
    }

    @discardableResult
    private func finishCopy(_ conn: OpaquePointer, statement: String) throws(DatabaseError) -> Int {
        var affected = 0
        var failure: DatabaseError?
        while let result = PQgetResult(conn) {
            do {
                try check(result, statement: statement)
                affected = Int(String(cString: PQcmdTuples(result))) ?? affected
            } catch {
                failure = failure ?? error
            }
            PQclear(result)
        }
        if let failure { throw failure }
        return affected
    }

    // MARK: Helpers

    /// Quotes an identifier (table, channel) for SQL text; rejects empty names and NUL bytes.
    public func quoteIdentifier(_ identifier: String) throws(DatabaseError) -> String {
        guard !identifier.isEmpty, !identifier.utf8.contains(0) else {
            throw DatabaseError(.misuse, message: "invalid identifier")
        }
        return "\"" + identifier.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// The server's process id for this connection (for tests and diagnostics).
    public var backendPID: Int32 {
        guard let handle else { return 0 }
        return PQbackendPID(handle)
    }

    private func requireHandle() throws(DatabaseError) -> OpaquePointer {
        guard let handle else { throw DatabaseError(.connectionClosed, message: "the connection is closed") }
        guard PQstatus(handle) == CONNECTION_OK else {
            throw DatabaseError(.connectionClosed, message: "the connection to the server was lost")
        }
        return handle
    }

    private func check(_ result: OpaquePointer?, statement: String) throws(DatabaseError) {
        guard let result else {
            throw DatabaseError(.connectionClosed, message: Self.trimmed(PQerrorMessage(handle)), statement: statement)
        }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_COPY_IN, PGRES_COPY_OUT, PGRES_EMPTY_QUERY, PGRES_SINGLE_TUPLE:
            return
        default:
            let sqlState = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
            var message = PQresultErrorField(result, Int32(UInt8(ascii: "M"))).map { String(cString: $0) }
                ?? Self.trimmed(PQresultErrorMessage(result))
            if let detail = PQresultErrorField(result, Int32(UInt8(ascii: "D"))) {
                message += " (\(String(cString: detail)))"
            }
            let lost = handle.map { PQstatus($0) != CONNECTION_OK } ?? true
            let code: DatabaseError.Code = lost || (sqlState?.hasPrefix("08") ?? false) || (sqlState?.hasPrefix("57P") ?? false)
                ? .connectionClosed : .queryFailed
            throw DatabaseError(code, sqlState: sqlState, message: message.isEmpty ? "statement failed" : message, statement: statement)
        }
    }

    private static func trimmed(_ message: UnsafePointer<CChar>?) -> String {
        guard let message else { return "" }
        return String(cString: message).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Parameter encoding: text format for everything but `bytea`, which goes binary.
    private static func encode(_ value: SQLValue) -> (bytes: [UInt8]?, binary: Bool) {
        switch value {
        case .null: (nil, false)
        case .integer(let value): (Array(String(value).utf8), false)
        case .double(let value): (Array(value.description.utf8), false)
        case .text(let value): (Array(value.utf8), false)
        case .bool(let value): (Array((value ? "true" : "false").utf8), false)
        case .blob(let value): (value, true)
        }
    }

    private static func rows(of result: OpaquePointer?) -> [SQLRow] {
        guard let result else { return [] }
        let rowCount = PQntuples(result)
        let columnCount = PQnfields(result)
        guard rowCount > 0 else { return [] }
        let columns = (0..<columnCount).map { String(cString: PQfname(result, $0)) }
        let types = (0..<columnCount).map { PQftype(result, $0) }
        var rows: [SQLRow] = []
        rows.reserveCapacity(Int(rowCount))
        for row in 0..<rowCount {
            var values: [SQLValue] = []
            values.reserveCapacity(Int(columnCount))
            for column in 0..<columnCount {
                if PQgetisnull(result, row, column) == 1 {
                    values.append(.null)
                    continue
                }
                let length = Int(PQgetlength(result, row, column))
                let raw = PQgetvalue(result, row, column)
                let text = raw.map { pointer in
                    pointer.withMemoryRebound(to: UInt8.self, capacity: length) {
                        String(decoding: UnsafeBufferPointer(start: $0, count: length), as: UTF8.self)
                    }
                } ?? ""
                values.append(decode(text, type: types[Int(column)]))
            }
            rows.append(SQLRow(columns: columns, values: values))
        }
        return rows
    }

    private static func decode(_ text: String, type: Oid) -> SQLValue {
        switch type {
        case 16: .bool(text == "t")
        case 20, 21, 23, 26: Int64(text).map(SQLValue.integer) ?? .text(text)
        case 700, 701: Double(text).map(SQLValue.double) ?? .text(text)
        case 17: .blob(decodeHexBytea(text) ?? Array(text.utf8))
        default: .text(text)
        }
    }

    private static func decodeHexBytea(_ text: String) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count >= 2, utf8[0] == UInt8(ascii: "\\"), utf8[1] == UInt8(ascii: "x"), utf8.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity((utf8.count - 2) / 2)
        var index = 2
        while index < utf8.count {
            guard let high = hexValue(utf8[index]), let low = hexValue(utf8[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// Keeps C strings alive for the duration of `body`, as a NULL-terminated array.
func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let pointers = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: strings.count + 1)
    var owned: [UnsafeMutablePointer<CChar>?] = []
    for (index, string) in strings.enumerated() {
        let copy = strdup(string)
        owned.append(copy)
        (pointers + index).initialize(to: copy.map { UnsafePointer($0) })
    }
    (pointers + strings.count).initialize(to: nil)
    defer {
        owned.forEach { free($0) }
        pointers.deallocate()
    }
    return body(pointers)
}

/// Builds libpq's parallel parameter arrays (values, lengths, formats) for the call.
func withParameters<R>(
    _ parameters: [(bytes: [UInt8]?, binary: Bool)],
    _ body: (UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<Int32>?, UnsafePointer<Int32>?) -> R
) -> R {
    var buffers: [UnsafeMutablePointer<CChar>?] = []
    buffers.reserveCapacity(parameters.count)
    for parameter in parameters {
        guard let bytes = parameter.bytes else { buffers.append(nil); continue }
        let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count + 1)
        for (index, byte) in bytes.enumerated() { buffer[index] = CChar(bitPattern: byte) }
        buffer[bytes.count] = 0
        buffers.append(buffer)
    }
    defer { buffers.forEach { $0?.deallocate() } }
    let lengths = parameters.map { Int32($0.bytes?.count ?? 0) }
    let formats = parameters.map { Int32($0.binary ? 1 : 0) }
    return buffers.withUnsafeBufferPointer { values in
        values.withMemoryRebound(to: UnsafePointer<CChar>?.self) { valuePointers in
            lengths.withUnsafeBufferPointer { lengthPointers in
                formats.withUnsafeBufferPointer { formatPointers in
                    body(valuePointers.baseAddress, lengthPointers.baseAddress, formatPointers.baseAddress)
                }
            }
        }
    }
}

/// The keepalive and user-timeout settings of a connection's TCP socket, as the kernel reports them.
public struct PostgresTCPSettings: Sendable, Hashable {
    /// `SO_KEEPALIVE`.
    public var keepalive: Bool
    /// `TCP_KEEPIDLE`.
    public var idleSeconds: Int
    /// `TCP_KEEPINTVL`.
    public var intervalSeconds: Int
    /// `TCP_KEEPCNT`.
    public var count: Int
    /// `TCP_USER_TIMEOUT` (0: the system's).
    public var userTimeoutMilliseconds: Int

    /// Settings with the given values.
    public init(keepalive: Bool, idleSeconds: Int, intervalSeconds: Int, count: Int, userTimeoutMilliseconds: Int) {
        self.keepalive = keepalive
        self.idleSeconds = idleSeconds
        self.intervalSeconds = intervalSeconds
        self.count = count
        self.userTimeoutMilliseconds = userTimeoutMilliseconds
    }
}

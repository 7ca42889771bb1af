/// An error from a database client, carrying the server's SQLSTATE where there is one.
public struct DatabaseError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure this is.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case invalidURL, connectionFailed, connectionClosed, queryFailed, busy, decoding, copyFailed
            case poolClosed, poolTimeout, misuse
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The connection URL could not be understood.
        public static let invalidURL = Code(.invalidURL)
        /// No connection could be made.
        public static let connectionFailed = Code(.connectionFailed)
        /// The connection was lost or closed during the call.
        public static let connectionClosed = Code(.connectionClosed)
        /// The server rejected the statement (see ``DatabaseError/sqlState``).
        public static let queryFailed = Code(.queryFailed)
        /// SQLite: the database stayed locked longer than the busy timeout.
        public static let busy = Code(.busy)
        /// A result value did not have the expected type.
        public static let decoding = Code(.decoding)
        /// A COPY stream failed.
        public static let copyFailed = Code(.copyFailed)
        /// The pool was shut down.
        public static let poolClosed = Code(.poolClosed)
        /// No connection became free in time.
        public static let poolTimeout = Code(.poolTimeout)
        /// The API was used in a way it does not allow (for example a nested transaction).
        public static let misuse = Code(.misuse)

        public var description: String { base.rawValue }
    }

    public var code: Code
    /// SQLSTATE (PostgreSQL) or extended result code (SQLite, as "SQLITE_<n>").
    public var sqlState: String?
    public var message: String
    /// The statement, when the error came from one (never its parameter values).
    public var statement: String?

    public init(_ code: Code, sqlState: String? = nil, message: String, statement: String? = nil) {
        self.code = code
        self.sqlState = sqlState
        self.message = message
        self.statement = statement
    }

    public var description: String {
        var text = "\(code)"
        if let sqlState { text += " [\(sqlState)]" }
        text += ": \(message)"
        return text
    }

    /// True when retrying on a new connection may succeed: connection loss, server shutting down,
    /// serialization failure, deadlock, SQLite busy.
    public var isTransient: Bool {
        if code == .connectionFailed || code == .connectionClosed || code == .busy || code == .poolTimeout { return true }
        guard let sqlState else { return false }
        // 08 connection exception, 57P01-57P03 admin shutdown / crash shutdown / cannot connect now,
        // 40001 serialization failure, 40P01 deadlock, 53300 too many connections.
        return sqlState.hasPrefix("08") || sqlState.hasPrefix("57P") || sqlState == "40001"
            || sqlState == "40P01" || sqlState == "53300"
    }

    /// PostgreSQL unique violation / SQLite constraint-unique.
    public var isUniqueViolation: Bool { sqlState == "23505" || sqlState == "SQLITE_2067" || sqlState == "SQLITE_1555" }
}

import DatabaseSupport

/// An error reaching or using a per-case database.
public struct CaseDatabaseError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case invalidConfiguration, invalidCaseID, notFound, unavailable, database, closed
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// A setting (URL template, prefix, connection limit) is malformed.
        public static let invalidConfiguration = Code(.invalidConfiguration)
        /// A case id is not a positive number.
        public static let invalidCaseID = Code(.invalidCaseID)
        /// The case database does not exist (PostgreSQL SQLSTATE 3D000, or no SQLite file): a wrong
        /// case id, or a case that was removed. Retrying does not help.
        public static let notFound = Code(.notFound)
        /// The database server could not be reached or the connection was lost; retrying may help.
        public static let unavailable = Code(.unavailable)
        /// A statement failed; see ``CaseDatabaseError/underlying``.
        public static let database = Code(.database)
        /// The connection cache was shut down.
        public static let closed = Code(.closed)

        public var description: String { base.rawValue }
    }

    public var code: Code
    public var message: String
    /// The database client's error, when there is one.
    public var underlying: DatabaseError?

    public init(_ code: Code, _ message: String, underlying: DatabaseError? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var description: String { "\(code): \(message)" }

    /// True when the same call may succeed later: the server is unreachable, the connection was
    /// lost, or the statement failed for a transient reason (serialization failure, busy, …).
    public var isTransient: Bool {
        if code == .unavailable { return true }
        if code == .database { return underlying?.isTransient ?? false }
        return false
    }
}

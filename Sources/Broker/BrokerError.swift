import DatabaseSupport

/// An error from the broker. Bad input always ends here, never in a crash or a half-written state.
public struct BrokerError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case invalidURL, invalidName, invalidAttribute, invalidMessage, invalidReceipt, invalidFilterPolicy
            case queueNotFound, queueAlreadyExists, queueSealed, queueInUse, messageTooLarge, staleReceipt
            case subscriptionConflict, subscriptionNotFound, schemaOutdated, database, closed
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The database URL is neither `postgres://…` nor `sqlite:///…`.
        public static let invalidURL = Code(.invalidURL)
        /// A queue or topic name is not `[A-Za-z0-9_.-]{1,80}`.
        public static let invalidName = Code(.invalidName)
        /// A queue attribute or call parameter is out of range.
        public static let invalidAttribute = Code(.invalidAttribute)
        /// A message body or message attribute is not acceptable.
        public static let invalidMessage = Code(.invalidMessage)
        /// A receipt handle could not be parsed.
        public static let invalidReceipt = Code(.invalidReceipt)
        /// A filter policy was rejected at subscribe time.
        public static let invalidFilterPolicy = Code(.invalidFilterPolicy)
        /// No queue has this name.
        public static let queueNotFound = Code(.queueNotFound)
        /// A queue of this name exists with different attributes.
        public static let queueAlreadyExists = Code(.queueAlreadyExists)
        /// The queue is sealed: it refuses sends.
        public static let queueSealed = Code(.queueSealed)
        /// The queue is another queue's dead-letter queue and cannot be deleted.
        public static let queueInUse = Code(.queueInUse)
        /// A message body is larger than the queue's maximum message size.
        public static let messageTooLarge = Code(.messageTooLarge)
        /// The receipt handle no longer matches: the message was received again, or deleted.
        public static let staleReceipt = Code(.staleReceipt)
        /// The queue is already subscribed to the topic with a different filter policy.
        public static let subscriptionConflict = Code(.subscriptionConflict)
        /// No subscription has this id.
        public static let subscriptionNotFound = Code(.subscriptionNotFound)
        /// The control database is not migrated to the schema this build needs (`exchanger migrate`).
        public static let schemaOutdated = Code(.schemaOutdated)
        /// The database failed; see ``BrokerError/underlying``.
        public static let database = Code(.database)
        /// The broker was closed.
        public static let closed = Code(.closed)

        public var description: String { base.rawValue }
    }

    public var code: Code
    public var message: String
    /// The database error behind a `.database` error.
    public var underlying: DatabaseError?

    public init(_ code: Code, _ message: String, underlying: DatabaseError? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var description: String { "\(code): \(message)" }

    /// True when the same call may succeed later: connection loss, database restart, lock timeouts.
    public var isTransient: Bool { underlying?.isTransient ?? false }

    static func wrap(_ error: any Error) -> any Error {
        if let error = error as? DatabaseError {
            return BrokerError(.database, error.description, underlying: error)
        }
        return error
    }
}

/// Runs `body`, turning database errors into ``BrokerError`` with code `.database`.
func translatingErrors<T>(_ body: () async throws -> T) async throws -> T {
    do { return try await body() } catch { throw BrokerError.wrap(error) }
}

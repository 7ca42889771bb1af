/// An error of the orchestrator: a refused request, a transition that lost its race, a resource
/// that could not be provisioned or torn down.
public struct OrchestratorError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case invalidRequest, idempotencyConflict, notFound, invalidTransition, stateConflict, leaseLost
            case resourceConflict, workersStillRunning, copyFailed, corruptRecord
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The request is malformed or a field is out of range; ``OrchestratorError/field`` names it.
        public static let invalidRequest = Code(.invalidRequest)
        /// The idempotency key belongs to an exchange with another request.
        public static let idempotencyConflict = Code(.idempotencyConflict)
        /// No exchange has this job id.
        public static let notFound = Code(.notFound)
        /// The state machine does not allow this transition.
        public static let invalidTransition = Code(.invalidTransition)
        /// A compare-and-set transition found the exchange in another state (or version): someone
        /// else moved it first.
        public static let stateConflict = Code(.stateConflict)
        /// The caller no longer holds the exchange's lease.
        public static let leaseLost = Code(.leaseLost)
        /// A resource the exchange needs exists for something else (for example a queue of another
        /// exchange with the same destination case and batch).
        public static let resourceConflict = Code(.resourceConflict)
        /// Workers of the exchange were still running when the wait for them ended; teardown is
        /// retried later.
        public static let workersStillRunning = Code(.workersStillRunning)
        /// The case-data copy failed after its retries.
        public static let copyFailed = Code(.copyFailed)
        /// A stored row cannot be read.
        public static let corruptRecord = Code(.corruptRecord)

        public var description: String { base.rawValue }
    }

    /// What went wrong.
    public var code: Code
    /// A description for people.
    public var message: String
    /// The request field at fault (``Code/invalidRequest`` only), in its JSON spelling.
    public var field: String?

    /// A value with the given fields.
    public init(_ code: Code, _ message: String, field: String? = nil) {
        self.code = code
        self.message = message
        self.field = field
    }

    public var description: String {
        if let field { return "\(code): \(field): \(message)" }
        return "\(code): \(message)"
    }
}

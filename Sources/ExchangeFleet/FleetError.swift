/// An error of a local fleet run (`exchanger run`, `exchanger submit|status|watch`).
public struct FleetError: Error, CustomStringConvertible, Sendable {
    /// What went wrong.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case workspace, executableNotFound, supervisor, orchestratorUnavailable, http, unauthorized, invalidRequest, notFound
            case timeout, interrupted, verificationFailed, exchangeFailed
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The workspace could not be created or read.
        public static let workspace = Code(.workspace)
        /// A program of the fleet is neither next to this executable nor on `PATH`.
        public static let executableNotFound = Code(.executableNotFound)
        /// The supervisor did not start or exited early.
        public static let supervisor = Code(.supervisor)
        /// The orchestrator's API did not answer.
        public static let orchestratorUnavailable = Code(.orchestratorUnavailable)
        /// The API answered with an unexpected status.
        public static let http = Code(.http)
        /// The API refused the token (401).
        public static let unauthorized = Code(.unauthorized)
        /// The API refused the request (400, 413, 422).
        public static let invalidRequest = Code(.invalidRequest)
        /// No exchange has the job id.
        public static let notFound = Code(.notFound)
        /// The exchange did not end in time.
        public static let timeout = Code(.timeout)
        /// Interrupted by a signal.
        public static let interrupted = Code(.interrupted)
        /// The finished exchange is not an exact copy.
        public static let verificationFailed = Code(.verificationFailed)
        /// The exchange ended FAILED or CANCELLED.
        public static let exchangeFailed = Code(.exchangeFailed)

        public var description: String { base.rawValue }
    }

    /// The code.
    public var code: Code
    /// A sentence for the operator.
    public var message: String

    /// An error with the given code and message.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(message) [\(code)]" }
}

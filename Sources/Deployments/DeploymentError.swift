/// An error of the deployment store.
public struct DeploymentError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case invalidArgument, conflict, workersRunning, leaseLost, corruptRecord
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// An argument is empty, malformed or out of range (min > max, a negative count, …).
        public static let invalidArgument = Code(.invalidArgument)
        /// The deployment id exists for another exchange, program or queue, or the exchange already
        /// has a deployment of the program under another id.
        public static let conflict = Code(.conflict)
        /// A live worker is still recorded for the deployment; stop it first.
        public static let workersRunning = Code(.workersRunning)
        /// The supervisor is not registered, or its lease expired: it must stop its per-exchange
        /// workers (another supervisor may own their deployments now) and register again.
        public static let leaseLost = Code(.leaseLost)
        /// A stored row cannot be read.
        public static let corruptRecord = Code(.corruptRecord)

        public var description: String { base.rawValue }
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}

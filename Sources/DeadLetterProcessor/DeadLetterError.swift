/// An error of the dead-letter store.
public struct DeadLetterError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable { case notFound, conflict, invalidArgument, corruptRecord }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// No dead letter has this id.
        public static let notFound = Code(.notFound)
        /// Another redrive changed the record at the same time; nothing was sent.
        public static let conflict = Code(.conflict)
        /// An argument is out of range.
        public static let invalidArgument = Code(.invalidArgument)
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

/// A search-text processor error that is not about one message.
public struct SearchTextError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable { case invalidConfiguration }
        private let base: Base
        private init(_ base: Base) { self.base = base }
        /// A setting is malformed.
        public static let invalidConfiguration = Code(.invalidConfiguration)
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

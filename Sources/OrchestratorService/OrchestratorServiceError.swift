/// An error of the orchestrator's service: a setting that cannot be used, missing API tokens, no
/// case-data copy engine.
public struct OrchestratorServiceError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case invalidSetting, noAPITokens, noCopyEngine
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// A setting (environment variable or option) is malformed or out of range.
        public static let invalidSetting = Code(.invalidSetting)
        /// No API token is configured and `--insecure-no-auth` was not given.
        public static let noAPITokens = Code(.noAPITokens)
        /// No case-data copy engine could be configured.
        public static let noCopyEngine = Code(.noCopyEngine)

        public var description: String { base.rawValue }
    }

    /// What went wrong.
    public var code: Code
    /// A description for people.
    public var message: String

    /// A value with the given fields.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}

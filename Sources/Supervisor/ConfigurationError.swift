/// An error in `supervisor.conf`: where it is (file, line, section, key) and why.
///
/// The description reads like a compiler message, e.g.
/// `supervisor.conf:12: [program:s3-copy] key 'stopwaitsecs': expected a non-negative number of seconds, got 'soon'`.
public struct ConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of mistake it is.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case syntax, unknownSection, unknownKey, duplicateKey, duplicateSection, badValue, missingKey, unreadable
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// A line is neither a section header, a `key = value` pair, a continuation, a comment nor blank.
        public static let syntax = Code(.syntax)
        /// A section other than `[supervisor]` and `[program:NAME]`.
        public static let unknownSection = Code(.unknownSection)
        /// A key the section does not know.
        public static let unknownKey = Code(.unknownKey)
        /// The same key twice in one section.
        public static let duplicateKey = Code(.duplicateKey)
        /// The same section twice: two `[supervisor]` sections, or two programs of one name.
        public static let duplicateSection = Code(.duplicateSection)
        /// A value that does not parse or is out of range, a bad program name, an unknown or
        /// unset `%(name)s` expansion.
        public static let badValue = Code(.badValue)
        /// A required key (`command`) is missing.
        public static let missingKey = Code(.missingKey)
        /// The file could not be read.
        public static let unreadable = Code(.unreadable)

        /// The code's name, e.g. `badValue`.
        public var description: String { base.rawValue }
    }

    /// What kind of mistake it is.
    public var code: Code
    /// The configuration file, as it was given to ``SupervisorConfiguration/load(path:)`` or ``SupervisorConfiguration/parse(_:file:)``.
    public var file: String
    /// The 1-based line, when the error belongs to one.
    public var line: Int?
    /// The section as written between the brackets (`supervisor`, `program:s3-copy`), when known.
    public var section: String?
    /// The key, when the error belongs to one.
    public var key: String?
    /// Why the input was rejected.
    public var reason: String

    /// Creates an error.
    public init(_ code: Code, file: String, line: Int? = nil, section: String? = nil, key: String? = nil, reason: String) {
        self.code = code
        self.file = file
        self.line = line
        self.section = section
        self.key = key
        self.reason = reason
    }

    /// `file:line: [section] key 'key': reason`, leaving out the parts that are not known.
    public var description: String {
        var text = file
        if let line { text += ":\(line)" }
        text += ":"
        if let section { text += " [\(section)]" }
        if let key { text += " key '\(key)'" }
        return text + (section == nil && key == nil ? " " : ": ") + reason
    }
}

import DatabaseSupport

/// An error of the case schema, the synthetic-case seeder or the case-data copy engine.
public struct CaseDataError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case invalidArgument, invalidSchema, notFound, database, storage, interrupted, inconsistentSource, conflict
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// A parameter is out of range (a case id, a document count, an empty job id, …).
        public static let invalidArgument = Code(.invalidArgument)
        /// The catalog does not allow a copy: a foreign-key cycle, a table without a single
        /// `bigint` primary key, a missing table the rules need.
        public static let invalidSchema = Code(.invalidSchema)
        /// The case database does not exist.
        public static let notFound = Code(.notFound)
        /// A statement failed; see ``CaseDataError/underlying``.
        public static let database = Code(.database)
        /// Writing a document's files into object storage failed.
        public static let storage = Code(.storage)
        /// The copy stopped before its last table (cancelled or a hook threw); a re-run resumes it.
        public static let interrupted = Code(.interrupted)

        /// A row to copy references a parent row the job did not copy: the source changed between
        /// two runs of the job, or a self-reference points outside the selection.
        public static let inconsistentSource = Code(.inconsistentSource)

        /// The source and the destination disagree in a way the copy does not resolve: a row
        /// merged by name whose defining columns differ (a custom field of another type). Found
        /// before anything is written.
        public static let conflict = Code(.conflict)

        /// The code's name.
        public var description: String { base.rawValue }
    }

    /// What went wrong.
    public var code: Code
    /// A sentence for people.
    public var message: String
    /// The database client's error, when there is one.
    public var underlying: DatabaseError?

    /// An error with its code and message.
    public init(_ code: Code, _ message: String, underlying: DatabaseError? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    /// `code: message`.
    public var description: String { "\(code): \(message)" }

    /// True when the same call may succeed later (connection loss, serialization failure, busy).
    public var isTransient: Bool { underlying?.isTransient ?? false }
}

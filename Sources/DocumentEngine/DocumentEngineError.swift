import ObjectStorage

/// A document-engine operation failed.
public struct DocumentEngineError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable {
            case notFound, sourceNotFound, invalidDocumentID, invalidAnnotations, invalidURL, unsupported, transient, permanent
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }
        /// The engine has no (complete) document with this id.
        public static let notFound = Code(.notFound)
        /// The PDF to ingest does not exist in the case storage.
        public static let sourceNotFound = Code(.sourceNotFound)
        /// A document id is not `document_{caseId}_{batchId}_{documentId}_{exhibitId}` with valid numbers.
        public static let invalidDocumentID = Code(.invalidDocumentID)
        /// Annotations are not Instant JSON (not an object, an annotation that is not an object, a bad attachment).
        public static let invalidAnnotations = Code(.invalidAnnotations)
        /// A document-engine URL could not be understood.
        public static let invalidURL = Code(.invalidURL)
        /// The engine lacks what the operation needs (the local engine without qpdf, an annotation it cannot draw).
        public static let unsupported = Code(.unsupported)
        /// Worth retrying: the storage or engine is unavailable, throttling, or was misconfigured by an operator.
        public static let transient = Code(.transient)
        /// Any other failure: retrying will not help.
        public static let permanent = Code(.permanent)
        public var description: String { base.rawValue }
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
    /// Whether retrying later may succeed.
    public var isTransient: Bool { code == .transient }

    /// Maps a storage error met while working on `what`: transient (and operator-fixable
    /// configuration / access problems) stay retryable, a missing object becomes `missing`,
    /// everything else is permanent.
    static func storage(_ error: ObjectStorageError, _ what: String, missing: Code = .notFound) -> DocumentEngineError {
        if error.isTransient { return DocumentEngineError(.transient, "\(what): \(error)") }
        switch error.code {
        case .notFound: return DocumentEngineError(missing, "\(what): \(error.message)")
        case .configuration, .accessDenied: return DocumentEngineError(.transient, "\(what): \(error)")
        default: return DocumentEngineError(.permanent, "\(what): \(error)")
        }
    }
}

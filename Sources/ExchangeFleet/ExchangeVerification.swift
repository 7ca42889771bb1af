import Foundation

/// The outcome of ``ExchangeVerifier/verify(jobID:expectedDocumentEvents:)``: what was checked and
/// every problem found (empty when the exchange is an exact copy).
public struct ExchangeVerification: Sendable, Codable, Hashable {
    /// The exchange checked.
    public var jobID: String
    /// Its state (`FINISHED` for a finished exchange).
    public var state: String
    /// Documents the case-data copy mapped (rows of the job's id map for `documents`).
    public var documents: Int
    /// Destination rows compared column by column with their source rows.
    public var rowsChecked: Int
    /// Tables of the copy plan checked.
    public var tablesChecked: Int
    /// Destination files compared byte for byte (SHA-256 and size) with their source files.
    public var filesChecked: Int
    /// Bytes of destination files hashed.
    public var bytesChecked: Int64
    /// Event rows of the job read and checked.
    public var eventsChecked: Int
    /// Documents with a DOCUMENT_NOT_FOUND event (their files and events are not expected).
    public var documentsNotFound: Int
    /// Selected documents the job skipped (`skipExchanged`), each checked against the earlier
    /// job's delivery in the destination's ledger.
    public var documentsSkipped = 0
    /// Annotation exchanges: documents whose engine document, annotations, page texts and index rows were checked.
    public var annotatedDocuments = 0
    /// Annotation exchanges: layer annotations compared with their source annotations.
    public var layerAnnotationsChecked = 0
    /// Annotation exchanges: source annotations the request had branded into the destination PDFs.
    public var brandedInAnnotations = 0
    /// Annotation exchanges: page text files compared with the engine's page text.
    public var pageTextsChecked = 0
    /// Annotation exchanges: full-text index rows compared with the page text.
    public var indexedPagesChecked = 0
    /// Annotation exchanges: branded-in redactions proven (with poppler) to leave no covered word
    /// in the destination PDF's text, its page text or its index.
    public var redactionsChecked = 0
    /// Each problem as one sentence naming the table / id / column, object key or event at fault;
    /// capped at ``ExchangeVerifier/Settings/maxProblems`` plus a final "… and N more problems".
    public var problems: [String]
    /// What the copy did not carry over and the verifier does not count as a problem (the copy
    /// reports it too), one sentence each: confidentiality bits with no code in the source case.
    public var warnings: [String] = []
    /// Seconds the verification took.
    public var seconds: Double

    /// True when nothing is wrong.
    public var isExact: Bool { problems.isEmpty }

    /// An empty result for `jobID`.
    public init(jobID: String, state: String = "") {
        self.jobID = jobID
        self.state = state
        self.documents = 0
        self.rowsChecked = 0
        self.tablesChecked = 0
        self.filesChecked = 0
        self.bytesChecked = 0
        self.eventsChecked = 0
        self.documentsNotFound = 0
        self.problems = []
        self.seconds = 0
    }

    /// One line for humans: `exact` or the problem count, with the counts.
    public var summary: String {
        let verdict = isExact ? "exact" : "\(problems.count) problem(s)"
        return "exchange \(jobID) \(state): \(verdict); \(documents) documents (\(documentsNotFound) not found), "
            + "\(rowsChecked) rows in \(tablesChecked) tables, \(filesChecked) files (\(bytesChecked) bytes), \(eventsChecked) events"
            + (annotatedDocuments > 0
                ? "; \(annotatedDocuments) annotated documents: \(layerAnnotationsChecked) layer annotations, \(brandedInAnnotations) branded in, "
                    + "\(pageTextsChecked) page texts, \(indexedPagesChecked) indexed pages, \(redactionsChecked) redactions checked for leaks" : "")
            + (warnings.isEmpty ? "" : "; \(warnings.count) warning(s): " + warnings.joined(separator: "; "))
    }
}

/// The verification could not run (as opposed to finding problems, which it reports).
public struct ExchangeVerifierError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable { case notFound, invalidArgument, database, storage }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// No exchange has the job id.
        public static let notFound = Code(.notFound)
        /// An argument or setting is out of range.
        public static let invalidArgument = Code(.invalidArgument)
        /// A broker or case database could not be read.
        public static let database = Code(.database)
        /// Object storage failed (other than a missing object, which is a problem, not an error).
        public static let storage = Code(.storage)

        public var description: String { base.rawValue }
    }

    /// What went wrong.
    public var code: Code
    /// A sentence for humans.
    public var message: String

    /// An error with the given fields.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}

/// Problems collected during one verification, capped.
struct ProblemList: Sendable {
    let limit: Int
    private(set) var items: [String] = []
    private(set) var dropped = 0

    init(limit: Int) { self.limit = limit }

    mutating func add(_ problem: String) {
        if items.count < limit { items.append(problem) } else { dropped += 1 }
    }

    var isEmpty: Bool { items.isEmpty }

    /// Adds another list's problems (and its dropped count).
    mutating func merge(_ other: ProblemList) {
        for item in other.items { add(item) }
        dropped += other.dropped
    }

    /// The problems with the "and N more" line.
    var final: [String] { dropped > 0 ? items + ["… and \(dropped) more problems"] : items }
}

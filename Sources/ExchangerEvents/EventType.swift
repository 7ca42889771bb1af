/// The name of an event, exactly as the reference system spells it (`DOCUMENT_COPIED`, …).
///
/// An open set: a consumer can decode any name, and decides itself what to do with one it does
/// not know. The names the exchanger publishes and consumes are the static members.
public struct EventType: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }
    public var description: String { rawValue }

    public init(from decoder: any Decoder) throws {
        self.rawValue = try decoder.singleValueContainer().decode(String.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }

    // Exchange lifecycle (orchestrator).
    /// The exchange was accepted and its resources are being provisioned.
    public static let exchangerInitiated: EventType = "EXCHANGER_INITIATED"
    /// The case-database rows were copied.
    public static let dbCopyFinished: EventType = "DB_COPY_FINISHED"
    /// The case-database copy failed after its retries (the reference's GLUE_JOB_FAILED).
    public static let dbCopyFailed: EventType = "DB_COPY_FAILED"
    /// One message per document was sent; the total is in the detail.
    public static let payloadConstructionFinished: EventType = "PAYLOAD_CONSTRUCTION_FINISHED"
    /// Teardown of the exchange's queues and workers began.
    public static let exchangerDeleteInitiated: EventType = "EXCHANGER_DELETE_INITIATED"
    /// The exchange finished; the summary is in the detail.
    public static let exchangerFinished: EventType = "EXCHANGER_FINISHED"
    /// The exchange failed (or a global error was attributed to it).
    public static let exchangerFailed: EventType = "EXCHANGER_FAILED"

    // Per-document facts.
    /// The document's PDF rendition was copied to the destination case.
    public static let documentCopied: EventType = "DOCUMENT_COPIED"
    /// One of the document's native files was copied to the destination case.
    public static let nativeDocumentCopied: EventType = "NATIVE_DOCUMENT_COPIED"
    /// A file of the document is missing in the source case; the document is skipped, not retried.
    public static let documentNotFound: EventType = "DOCUMENT_NOT_FOUND"
    /// The pre-uploader produced the destination PDF and annotation layers.
    public static let documentPreProcessed: EventType = "DOCUMENT_PRE_PROCESSED"
    /// The document was ingested into the destination document engine.
    public static let documentUploaded: EventType = "DOCUMENT_UPLOADED"
    /// The document's text was indexed in the destination case.
    public static let documentIndexed: EventType = "DOCUMENT_INDEXED"

    // Error events of the dead-letter mapping (detail.status = "ERROR").
    /// s3-copy gave up on a document.
    public static let s3DocCopied: EventType = "S3_DOC_COPIED"
    /// The pre-uploader gave up on a document.
    public static let preUploaderFinished: EventType = "PRE_UPLOADER_FINISHED"
    /// The uploader gave up on a document.
    public static let uploaderFinished: EventType = "UPLOADER_FINISHED"
    /// The re-OCR processor gave up on a document.
    public static let reOCRFinished: EventType = "RE_OCR_FINISHED"
    /// The search-text processor gave up on a document.
    public static let searchTextFinished: EventType = "SEARCH_TEXT_FINISHED"

    /// Every name above.
    public static let known: [EventType] = [
        exchangerInitiated, dbCopyFinished, dbCopyFailed, payloadConstructionFinished, exchangerDeleteInitiated,
        exchangerFinished, exchangerFailed, documentCopied, nativeDocumentCopied, documentNotFound, documentPreProcessed,
        documentUploaded, documentIndexed, s3DocCopied, preUploaderFinished, uploaderFinished, reOCRFinished,
        searchTextFinished,
    ]
}

import Foundation
import ObjectStorage

/// A PDF document engine: keeps each document's PDF with its annotations (Instant JSON) under a
/// vendor-style ``EngineDocumentID``.
///
/// Semantics follow Nutrient Document Engine's: a document is uploaded with a given id and a
/// re-upload with the same id replaces it. Implementations make ``ingest(_:pdf:annotations:)``
/// idempotent — ingesting the same PDF and annotations again changes nothing — and never show a
/// half-ingested document: until an ingest completed, ``exists(_:)`` reports the document absent
/// and the read operations throw ``DocumentEngineError/Code/notFound``.
///
/// Errors are ``DocumentEngineError``s; ``DocumentEngineError/isTransient`` tells whether a retry
/// may succeed. Every operation is safe to call concurrently for different documents.
public protocol DocumentEngine: Sendable {
    /// Uploads the PDF with its annotations as document `id`, replacing any document of that id.
    /// - Parameters:
    ///   - pdf: the PDF, as an object in the case storage the engine was opened with, or as bytes.
    ///   - annotations: annotations (and their attachments) to put on the document; ``InstantJSON/empty`` for none.
    /// - Returns: what the engine now holds and whether anything changed.
    /// - Throws: ``DocumentEngineError/Code/sourceNotFound`` when the PDF object does not exist.
    @discardableResult
    func ingest(_ id: EngineDocumentID, pdf: PDFSource, annotations: InstantJSON) async throws -> IngestResult

    /// Whether a completely ingested document `id` exists.
    func exists(_ id: EngineDocumentID) async throws -> Bool

    /// What the engine records about document `id`; throws ``DocumentEngineError/Code/notFound`` when absent.
    func info(_ id: EngineDocumentID) async throws -> EngineDocumentInfo

    /// The document's PDF bytes; throws ``DocumentEngineError/Code/notFound`` when absent.
    func document(_ id: EngineDocumentID) async throws -> Data

    /// The document's annotations and their attachments; throws ``DocumentEngineError/Code/notFound`` when absent.
    func annotations(_ id: EngineDocumentID) async throws -> InstantJSON

    /// Removes the document and everything kept with it; removing an absent document is not an error.
    func delete(_ id: EngineDocumentID) async throws

    /// Releases what the engine holds (connections, a store it opened itself); call once when done.
    func shutdown() async throws

    /// The number of pages of document `id`; throws ``DocumentEngineError/Code/notFound`` when absent.
    func pageCount(_ id: EngineDocumentID) async throws -> Int
    /// The text of page `pageIndex` (0-based) of document `id`, as Nutrient's `GET /api/documents/{id}/pages/{pageIndex}/text` gives it (its `textLines` joined by "\n"); throws ``DocumentEngineError/Code/notFound`` for an absent document or page.
    func pageText(_ id: EngineDocumentID, pageIndex: Int) async throws -> String
}

/// Where the PDF to ingest comes from.
public enum PDFSource: Sendable, Hashable {
    /// An object in the case storage the engine was opened with (for the uploader: the destination
    /// case's `case_{caseId}/documents/{documentId}/{file}`). The local engine copies it server-side.
    case object(ObjectKey)
    /// The PDF itself.
    case bytes(Data)
}

/// What an engine records about one ingested document (the local engine's `document.json`).
public struct EngineDocumentInfo: Sendable, Hashable, Codable {
    /// The record's schema version.
    public static let currentVersion = 1

    /// A kept attachment.
    public struct Attachment: Sendable, Hashable, Codable {
        public var id: String
        public var contentType: String
        public var bytes: Int64
        public var sha256: String

        public init(id: String, contentType: String, bytes: Int64, sha256: String) {
            self.id = id
            self.contentType = contentType
            self.bytes = bytes
            self.sha256 = sha256
        }
    }

    public var version: Int
    public var id: EngineDocumentID
    /// The PDF's size in bytes.
    public var bytes: Int64
    /// The PDF's SHA-256, lower-case hex.
    public var sha256: String
    public var annotationCount: Int
    /// SHA-256 of the annotations as an Instant JSON document (``InstantJSON/documentData()``), attachments included.
    public var annotationsSHA256: String
    /// In id order.
    public var attachments: [Attachment]
    /// When the content last changed.
    public var ingestedAt: Date

    enum CodingKeys: String, CodingKey {
        case version, id = "documentId", bytes, sha256, annotationCount, annotationsSHA256 = "annotationsSha256", attachments, ingestedAt
    }

    public init(
        id: EngineDocumentID, bytes: Int64, sha256: String, annotationCount: Int, annotationsSHA256: String,
        attachments: [Attachment], ingestedAt: Date
    ) {
        self.version = Self.currentVersion
        self.id = id
        self.bytes = bytes
        self.sha256 = sha256
        self.annotationCount = annotationCount
        self.annotationsSHA256 = annotationsSHA256
        self.attachments = attachments
        self.ingestedAt = ingestedAt
    }
}

/// The result of ``DocumentEngine/ingest(_:pdf:annotations:)``.
public struct IngestResult: Sendable, Hashable {
    /// What the ingest did.
    public enum Outcome: String, Sendable, Hashable, Codable {
        /// There was no (complete) document of this id.
        case created
        /// A document of this id with other content was replaced.
        case replaced
        /// The engine already held exactly this PDF and these annotations; nothing was written.
        case unchanged
    }

    public var outcome: Outcome
    public var document: EngineDocumentInfo

    public init(outcome: Outcome, document: EngineDocumentInfo) {
        self.outcome = outcome
        self.document = document
    }
}

import Broker

/// The message body that carries one document through the per-exchange queues (s3-copy →
/// uploader, pre-uploader → uploader → re-OCR → search-text). The orchestrator builds it once per
/// document; each stage forwards it unchanged to the next queue named in ``routes``.
///
/// Queue names come in the message (the orchestrator records every resource it creates), so no
/// processor reconstructs a name from a convention.
public struct DocumentTask: Sendable, Hashable, Codable {
    public static let currentVersion = 1

    public var version: Int
    public var jobID: String
    public var sourceCaseID: Int64
    /// The destination case.
    public var caseID: Int64
    public var batchID: Int64
    /// The document in the source case.
    public var sourceDocumentID: Int64
    /// The same document's new id in the destination case.
    public var documentID: Int64
    public var exhibitID: Int64?
    /// The document's files, by name under `case_{caseId}/documents/{documentId}/`.
    public var files: [DocumentFile]
    /// Annotations go through the pre-uploader (which then produces the destination PDF).
    public var requiresAnnotations: Bool
    /// Native files are copied too.
    public var includeNatives: Bool
    /// Where the next stages are: `uploader`, `preUploader`, `reOCR`, `searchText` → queue name.
    public var routes: [String: String]
    public var correlationID: String?
    /// How the pre-uploader treats each annotation kind (``AnnotationKind`` raw value → `brand_in`
    /// or `layer`); absent (older tasks) or a kind missing from it means `layer`.
    public var annotationRouting: [String: String]?
    /// The source document's batch in the source case (part of its engine id
    /// `document_{sourceCaseId}_{sourceBatchId}_{sourceDocumentId}_{sourceExhibitId}`); absent: ``batchID``.
    public var sourceBatchID: Int64?
    /// The source document's exhibit in the source case; absent: none.
    public var sourceExhibitID: Int64?

    enum CodingKeys: String, CodingKey {
        case version, jobID = "jobId", sourceCaseID = "sourceCaseId", caseID = "caseId", batchID = "batchId"
        case sourceDocumentID = "sourceDocumentId", documentID = "documentId", exhibitID = "exhibitId", files
        case requiresAnnotations, includeNatives, routes, correlationID = "correlationId"
        case annotationRouting, sourceBatchID = "sourceBatchId", sourceExhibitID = "sourceExhibitId"
    }

    /// The annotation kinds an exchange routes, with their request field names.
    public enum AnnotationKind: String, Sendable, CaseIterable {
        case redactions, highlights, notes, stickers, bates, confidentialityCodes
    }

    /// Whether `kind` is flattened into the destination PDF (`brand_in`); everything else is a layer.
    public func brandsIn(_ kind: AnnotationKind) -> Bool {
        annotationRouting?[kind.rawValue] == "brand_in"
    }

    public init(
        jobID: String, sourceCaseID: Int64, caseID: Int64, batchID: Int64, sourceDocumentID: Int64, documentID: Int64,
        exhibitID: Int64? = nil, files: [DocumentFile], requiresAnnotations: Bool = false, includeNatives: Bool = false,
        routes: [String: String] = [:], correlationID: String? = nil
    ) {
        self.version = Self.currentVersion
        self.jobID = jobID
        self.sourceCaseID = sourceCaseID
        self.caseID = caseID
        self.batchID = batchID
        self.sourceDocumentID = sourceDocumentID
        self.documentID = documentID
        self.exhibitID = exhibitID
        self.files = files
        self.requiresAnnotations = requiresAnnotations
        self.includeNatives = includeNatives
        self.routes = routes
        self.correlationID = correlationID
    }

    /// Route names in ``routes``.
    public enum Route {
        public static let uploader = "uploader"
        public static let preUploader = "preUploader"
        public static let reOCR = "reOCR"
        public static let searchText = "searchText"
    }

    /// Parses and checks a task body.
    /// - Throws: ``EventError`` for malformed JSON, a newer version, or out-of-range fields.
    public static func decode(_ body: String) throws(EventError) -> DocumentTask {
        let task: DocumentTask
        do {
            task = try EventCoding.decode(DocumentTask.self, from: body)
        } catch {
            throw EventError(.malformed, "not a document task: \(EventError.describe(error))")
        }
        guard task.version >= 1, task.version <= currentVersion else {
            throw EventError(.unsupportedVersion, "document task has version \(task.version); this build reads 1…\(currentVersion)")
        }
        guard !task.jobID.isEmpty else { throw EventError(.invalidField, "jobId is empty") }
        for (name, value) in [("sourceCaseId", task.sourceCaseID), ("caseId", task.caseID), ("batchId", task.batchID),
                              ("sourceDocumentId", task.sourceDocumentID), ("documentId", task.documentID)] where value <= 0 {
            throw EventError(.invalidField, "\(name) must be a positive id, not \(value)")
        }
        return task
    }

    /// An event about this document, with the task's ids filled in (and a deterministic event id).
    public func event(_ type: EventType, source: String, detail: some Encodable & Sendable, qualifier: String? = nil) throws -> EventEnvelope {
        try EventEnvelope(
            type: type, source: source, jobID: jobID, caseID: caseID, sourceCaseID: sourceCaseID, batchID: batchID,
            documentID: documentID, correlationID: correlationID, detail: detail, qualifier: qualifier)
    }
}

/// One file of a document.
public struct DocumentFile: Sendable, Hashable, Codable {
    /// `rendition` (the PDF the document engine shows) or `native` (the original file).
    public enum Kind: String, Sendable, Hashable, Codable { case rendition, native }
    public var name: String
    public var kind: Kind

    public init(name: String, kind: Kind) {
        self.name = name
        self.kind = kind
    }
}

extension DocumentTask {
    /// The attributes a task message carries (for log context and subscription filters): jobId,
    /// caseId, sourceCaseId, batchId, documentId, as SNS `String` attributes.
    public var messageAttributes: MessageAttributes {
        [
            "jobId": .string(jobID), "caseId": .string(String(caseID)), "sourceCaseId": .string(String(sourceCaseID)),
            "batchId": .string(String(batchID)), "documentId": .string(String(documentID)),
        ]
    }

    /// The task as a message body with its attributes.
    public func outgoing() throws -> OutgoingMessage {
        OutgoingMessage(body: try EventCoding.string(self), attributes: messageAttributes)
    }
}

import Broker

/// The message body re-OCR sends to the search-text queue: one destination document whose page
/// texts are in object storage, ready to be indexed.
///
/// Each page's text is the object ``Page/key``
/// (`case_{caseId}/processed-files/{batchId}/txt/{documentId}/attachments/{position}/content.txt`);
/// the body carries keys, not text, so it stays small whatever the document's size.
public struct SearchTextTask: Sendable, Hashable, Codable {
    public static let currentVersion = 1

    /// One page of text.
    public struct Page: Sendable, Hashable, Codable {
        /// The attachment position (the page index, 0-based).
        public var position: Int
        /// The object holding the page's text (UTF-8).
        public var key: String
        /// The text's size in bytes.
        public var bytes: Int

        public init(position: Int, key: String, bytes: Int) {
            self.position = position
            self.key = key
            self.bytes = bytes
        }
    }

    public var version: Int
    public var jobID: String
    public var sourceCaseID: Int64?
    /// The destination case (whose database holds the index).
    public var caseID: Int64
    public var batchID: Int64
    /// The destination document.
    public var documentID: Int64
    public var sourceDocumentID: Int64?
    public var exhibitID: Int64?
    /// The document's id in the destination document engine.
    public var engineDocumentID: String
    /// The pages, by position.
    public var pages: [Page]
    public var correlationID: String?

    enum CodingKeys: String, CodingKey {
        case version, jobID = "jobId", sourceCaseID = "sourceCaseId", caseID = "caseId", batchID = "batchId"
        case documentID = "documentId", sourceDocumentID = "sourceDocumentId", exhibitID = "exhibitId"
        case engineDocumentID = "engineDocumentId", pages, correlationID = "correlationId"
    }

    public init(
        jobID: String, sourceCaseID: Int64?, caseID: Int64, batchID: Int64, documentID: Int64, sourceDocumentID: Int64?,
        exhibitID: Int64?, engineDocumentID: String, pages: [Page], correlationID: String?
    ) {
        self.version = Self.currentVersion
        self.jobID = jobID
        self.sourceCaseID = sourceCaseID
        self.caseID = caseID
        self.batchID = batchID
        self.documentID = documentID
        self.sourceDocumentID = sourceDocumentID
        self.exhibitID = exhibitID
        self.engineDocumentID = engineDocumentID
        self.pages = pages
        self.correlationID = correlationID
    }

    /// Parses and checks a body.
    /// - Throws: ``EventError`` for malformed JSON, a newer version, or out-of-range fields.
    public static func decode(_ body: String) throws(EventError) -> SearchTextTask {
        let task: SearchTextTask
        do {
            task = try EventCoding.decode(SearchTextTask.self, from: body)
        } catch {
            throw EventError(.malformed, "not a search-text task: \(EventError.describe(error))")
        }
        guard task.version >= 1, task.version <= currentVersion else {
            throw EventError(.unsupportedVersion, "search-text task has version \(task.version); this build reads 1…\(currentVersion)")
        }
        guard !task.jobID.isEmpty else { throw EventError(.invalidField, "jobId is empty") }
        for (name, value) in [("caseId", task.caseID), ("batchId", task.batchID), ("documentId", task.documentID)] where value <= 0 {
            throw EventError(.invalidField, "\(name) must be a positive id, not \(value)")
        }
        var positions: Set<Int> = []
        for page in task.pages {
            guard page.position >= 0 else { throw EventError(.invalidField, "page position must not be negative, not \(page.position)") }
            guard positions.insert(page.position).inserted else { throw EventError(.invalidField, "page position \(page.position) appears twice") }
        }
        return task
    }

    /// An event about this document (deterministic id: job, type, document).
    public func event(_ type: EventType, source: String, detail: some Encodable & Sendable) throws -> EventEnvelope {
        try EventEnvelope(
            type: type, source: source, jobID: jobID, caseID: caseID, sourceCaseID: sourceCaseID, batchID: batchID,
            documentID: documentID, correlationID: correlationID, detail: detail)
    }

    /// The attributes the message carries (log context): jobId, caseId, sourceCaseId, batchId, documentId.
    public var messageAttributes: MessageAttributes {
        var attributes: MessageAttributes = [
            "jobId": .string(jobID), "caseId": .string(String(caseID)), "batchId": .string(String(batchID)),
            "documentId": .string(String(documentID)),
        ]
        if let sourceCaseID { attributes["sourceCaseId"] = .string(String(sourceCaseID)) }
        return attributes
    }

    /// The task as a message body with its attributes.
    public func outgoing() throws -> OutgoingMessage {
        OutgoingMessage(body: try EventCoding.string(self), attributes: messageAttributes)
    }
}

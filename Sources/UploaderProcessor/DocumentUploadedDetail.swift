/// Detail of DOCUMENT_UPLOADED: a destination document is in the destination document engine.
public struct DocumentUploadedDetail: Sendable, Hashable, Codable {
    public var sourceDocumentID: Int64
    public var exhibitID: Int64?
    /// The document's id in the engine, `document_{caseId}_{batchId}_{documentId}_{exhibitId}`.
    public var engineDocumentID: String
    /// The destination PDF that was ingested, `case_{caseId}/documents/{documentId}/{file}`.
    public var pdfKey: String
    /// The PDF's size and SHA-256 (lower-case hex).
    public var bytes: Int64
    public var sha256: String
    /// Layer annotations ingested with the PDF, and their attachments.
    public var annotations: Int
    public var attachments: Int
    /// `created`, `replaced` or `unchanged` (a repeated delivery).
    public var outcome: String
    /// The task's ``DocumentTask/routes`` (route name → queue name), so the stages that hear of the
    /// upload through the event (re-OCR) know their next queue without reconstructing its name.
    /// Absent in events of builds before it was added, and when the task had no routes.
    public var routes: [String: String]?

    enum CodingKeys: String, CodingKey {
        case sourceDocumentID = "sourceDocumentId", exhibitID = "exhibitId", engineDocumentID = "engineDocumentId", pdfKey, bytes, sha256
        case annotations, attachments, outcome, routes
    }

    public init(
        sourceDocumentID: Int64, exhibitID: Int64?, engineDocumentID: String, pdfKey: String, bytes: Int64, sha256: String,
        annotations: Int, attachments: Int, outcome: String, routes: [String: String]? = nil
    ) {
        self.sourceDocumentID = sourceDocumentID
        self.exhibitID = exhibitID
        self.engineDocumentID = engineDocumentID
        self.pdfKey = pdfKey
        self.bytes = bytes
        self.sha256 = sha256
        self.annotations = annotations
        self.attachments = attachments
        self.outcome = outcome
        self.routes = routes
    }
}

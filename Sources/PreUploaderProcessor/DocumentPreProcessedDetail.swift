/// Detail of DOCUMENT_PRE_PROCESSED: the destination PDF and layer of a document are ready for the uploader.
public struct DocumentPreProcessedDetail: Sendable, Hashable, Codable {
    public var sourceDocumentID: Int64
    public var exhibitID: Int64?
    /// The source document's id in the source document engine.
    public var sourceEngineDocumentID: String
    /// The destination PDF written, `case_{caseId}/documents/{documentId}/{file}`.
    public var pdfKey: String
    /// Annotations flattened into it, per kind (`redaction`, `highlight`, …).
    public var brandedIn: [String: Int]
    /// Annotations carried as the layer, per kind.
    public var layered: [String: Int]
    /// Sticker images carried with the layer.
    public var layerAttachments: Int
    /// Comment threads written to storage, and their comments.
    public var commentThreads: Int
    public var comments: Int

    enum CodingKeys: String, CodingKey {
        case sourceDocumentID = "sourceDocumentId", exhibitID = "exhibitId", sourceEngineDocumentID = "sourceEngineDocumentId", pdfKey
        case brandedIn, layered, layerAttachments, commentThreads, comments
    }

    public init(
        sourceDocumentID: Int64, exhibitID: Int64?, sourceEngineDocumentID: String, pdfKey: String, brandedIn: [String: Int],
        layered: [String: Int], layerAttachments: Int, commentThreads: Int, comments: Int
    ) {
        self.sourceDocumentID = sourceDocumentID
        self.exhibitID = exhibitID
        self.sourceEngineDocumentID = sourceEngineDocumentID
        self.pdfKey = pdfKey
        self.brandedIn = brandedIn
        self.layered = layered
        self.layerAttachments = layerAttachments
        self.commentThreads = commentThreads
        self.comments = comments
    }
}

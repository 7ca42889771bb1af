import ObjectStorage

/// Object keys of the document engine and of what stages hand to it.
public enum DocumentEngineKeys {
    /// The prefix the local engine keeps its documents under unless configured otherwise.
    public static let defaultPrefix = "document-engine"

    /// `case_{caseId}/processed-files/{batchId}/annotations/{documentId}/layer.json`: the layer
    /// annotations the pre-uploader carries for a document (an Instant JSON document, attachments
    /// inline, see ``InstantJSON/init(document:)``), which the uploader ingests with the PDF.
    /// Absent means the document has no layer annotations.
    public static func layerAnnotations(caseID: Int64, batchID: Int64, documentID: Int64) throws(ObjectStorageError) -> ObjectKey {
        try ObjectKey(segments: [
            CaseKeys.casePrefix(caseID: caseID), "processed-files", String(batchID), "annotations", String(documentID), "layer.json",
        ])
    }

    /// `{prefix}/{engineDocumentId}/`: everything the local engine keeps for one document.
    public static func documentPrefix(_ id: EngineDocumentID, prefix: String = defaultPrefix) -> String {
        "\(prefix)/\(id.rawValue)/"
    }

    /// `{prefix}/{engineDocumentId}/document.pdf`
    public static func pdf(_ id: EngineDocumentID, prefix: String = defaultPrefix) throws(ObjectStorageError) -> ObjectKey {
        try ObjectKey(documentPrefix(id, prefix: prefix) + "document.pdf")
    }

    /// `{prefix}/{engineDocumentId}/annotations.ndjson`: Instant JSON annotations, one per line.
    public static func annotations(_ id: EngineDocumentID, prefix: String = defaultPrefix) throws(ObjectStorageError) -> ObjectKey {
        try ObjectKey(documentPrefix(id, prefix: prefix) + "annotations.ndjson")
    }

    /// `{prefix}/{engineDocumentId}/attachments/`
    public static func attachmentsPrefix(_ id: EngineDocumentID, prefix: String = defaultPrefix) -> String {
        documentPrefix(id, prefix: prefix) + "attachments/"
    }

    /// `{prefix}/{engineDocumentId}/attachments/{attachmentId}`
    public static func attachment(_ id: EngineDocumentID, attachmentID: String, prefix: String = defaultPrefix) throws(ObjectStorageError) -> ObjectKey {
        try ObjectKey(attachmentsPrefix(id, prefix: prefix) + attachmentID)
    }

    /// `{prefix}/{engineDocumentId}/document.json`: the ``EngineDocumentInfo`` record, written last;
    /// a document without it does not exist.
    public static func metadata(_ id: EngineDocumentID, prefix: String = defaultPrefix) throws(ObjectStorageError) -> ObjectKey {
        try ObjectKey(documentPrefix(id, prefix: prefix) + "document.json")
    }

    /// `{prefix}/{engineDocumentId}/comments.json`: the local engine's comment threads of a document
    /// (``CommentThread/documentData(_:)``).
    public static func comments(_ id: EngineDocumentID, prefix: String = defaultPrefix) throws(ObjectStorageError) -> ObjectKey {
        try ObjectKey(documentPrefix(id, prefix: prefix) + "comments.json")
    }

    /// `case_{caseId}/processed-files/{batchId}/annotations/{documentId}/comments.json`: the comment
    /// threads the pre-uploader carries for a destination document (``CommentThread/documentData(_:)``).
    public static func commentThreads(caseID: Int64, batchID: Int64, documentID: Int64) throws(ObjectStorageError) -> ObjectKey {
        try ObjectKey(segments: [
            CaseKeys.casePrefix(caseID: caseID), "processed-files", String(batchID), "annotations", String(documentID), "comments.json",
        ])
    }
}

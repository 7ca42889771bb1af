/// A document of a case as the annotation seeder needs it: its ids for the document engine
/// (`document_{caseId}_{batchId}_{documentId}_{exhibitId}`), its bates number, page count and PDF.
public struct SeededDocument: Sendable, Hashable, Codable {
    public var documentID: Int64
    /// Its batch (nil when the document has none).
    public var batchID: Int64?
    /// Its first exhibit, when it has one.
    public var exhibitID: Int64?
    public var batesBegin: String?
    public var pageCount: Int
    /// The PDF rendition's file name (`document_variants` `pdf`), when it has one.
    public var pdfFileName: String?
}

extension CaseDatabases {
    /// The case's documents with ids `documentIDs` (in id order), for seeding annotations onto them.
    /// - Throws: ``CaseDataError`` (`.notFound` for a case without a database, `.database`).
    public func seededDocuments(caseID: Int64, documentIDs: ClosedRange<Int64>) async throws -> [SeededDocument] {
        let connection = try await open(caseID: caseID)
        do {
            let rows = try await connection.query("""
                SELECT d.id, d.batch_id, d.bates_begin, d.page_count,
                       (SELECT min(e.id) FROM exhibits e WHERE e.document_id = d.id) AS exhibit_id,
                       (SELECT min(v.file_name) FROM document_variants v WHERE v.document_id = d.id AND v.variant_type = 'pdf') AS pdf_name
                FROM documents d WHERE d.id BETWEEN $1 AND $2 ORDER BY d.id
                """, [.integer(documentIDs.lowerBound), .integer(documentIDs.upperBound)])
            await connection.close()
            return rows.map { row in
                SeededDocument(
                    documentID: row["id"].int64 ?? 0, batchID: row["batch_id"].int64, exhibitID: row["exhibit_id"].int64,
                    batesBegin: row["bates_begin"].string, pageCount: max(1, row["page_count"].int ?? 1), pdfFileName: row["pdf_name"].string)
            }
        } catch {
            await connection.close()
            throw CaseDatabases.wrap(error, "case \(caseID): reading documents failed")
        }
    }
}

import CaseData
import DocumentEngine
import Logging
import ObjectStorage

/// Puts ``AnnotationSeeder``'s annotations of all seven kinds (a sticker image and a comment
/// thread included) on seeded documents of a case, in a document engine: what the annotation path
/// of `exchanger run --demo --annotations`, `exchanger case seed --annotations` and the end-to-end
/// tests exchanges.
public enum CaseAnnotations {
    /// Ingests each seeded document's PDF into `engineURL`'s engine under
    /// `document_{caseId}_{batchId}_{documentId}_{exhibitId}` (batch 1 for a document without a
    /// batch), with ``AnnotationSeeder`` annotations and its comment thread.
    /// - Returns: the documents annotated.
    @discardableResult
    public static func seed(
        databases: CaseDatabases, store: any ObjectStore, engineURL: String, caseID: Int64, documents: ClosedRange<Int64>,
        environment: [String: String], logger: Logger
    ) async throws -> Int {
        let engine = try await DocumentEngines.open(url: engineURL, caseStore: store, environment: environment, logger: logger)
        do {
            var annotated = 0
            for document in try await databases.seededDocuments(caseID: caseID, documentIDs: documents) {
                guard let pdf = document.pdfFileName else { continue }
                let id = try EngineDocumentID(
                    caseID: caseID, batchID: document.batchID ?? 1, documentID: document.documentID, exhibitID: document.exhibitID)
                try await AnnotationSeeder.seed(
                    engine, id: id, pdf: .object(try CaseKeys.documentFile(caseID: caseID, documentID: document.documentID, fileName: pdf)),
                    batesNumber: document.batesBegin ?? "SEED-\(document.documentID)", pageCount: document.pageCount)
                annotated += 1
            }
            try await engine.shutdown()
            return annotated
        } catch {
            try? await engine.shutdown()
            throw error
        }
    }
}

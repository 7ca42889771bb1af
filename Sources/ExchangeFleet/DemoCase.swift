import CaseData
import Foundation
import Logging
import ObjectStorage

/// The synthetic source case of `exchanger run --demo`: seeded once per workspace (rows, PDF,
/// native and text files), with an empty destination case, and the request that exchanges all of
/// its documents.
public struct DemoCase: Sendable, Codable, Hashable {
    /// The source case id.
    public var sourceCaseID: Int64
    /// The destination case id.
    public var destinationCaseID: Int64
    /// The batch id of the exchange.
    public var batchID: Int64
    /// The seeded document ids.
    public var documentIDs: [Int64]
    /// Rows seeded.
    public var rows: Int
    /// Objects stored.
    public var objects: Int

    /// The record kept in the workspace so a second run reuses the case.
    static func recordPath(_ workspace: FleetWorkspace) -> String { workspace.directory + "/demo-case.json" }

    /// Seeds the source case (unless this workspace already has it) and creates the destination.
    public static func prepare(
        workspace: FleetWorkspace, documents: Int, sourceCaseID: Int64, destinationCaseID: Int64, batchID: Int64, pdfBytes: Int = 0,
        logger: Logger
    ) async throws -> (demo: DemoCase, reused: Bool) {
        let path = recordPath(workspace)
        if let data = FileManager.default.contents(atPath: path),
            let existing = try? JSONDecoder().decode(DemoCase.self, from: data),
            existing.sourceCaseID == sourceCaseID, existing.destinationCaseID == destinationCaseID, existing.documentIDs.count == documents
        {
            return (existing, true)
        }
        try workspace.prepare()
        let databases = try CaseDatabases(urlTemplate: workspace.caseDatabaseURL, prefix: workspace.caseDatabasePrefix)
        let store = try await ObjectStorage.open(workspace.storageURL, environment: workspace.storageEnvironment, logger: logger)
        do {
            var seeder = CaseSeeder(databases: databases, store: store, logger: logger)
            seeder.pdfBytes = pdfBytes
            let report = try await seeder.seed(caseID: sourceCaseID, documents: documents)
            _ = try await databases.create(caseID: destinationCaseID)
            try? await store.shutdown()
            let ids: [Int64] = if let first = report.firstDocumentID, let last = report.lastDocumentID { Array(first...last) } else { [] }
            let demo = DemoCase(
                sourceCaseID: sourceCaseID, destinationCaseID: destinationCaseID, batchID: batchID, documentIDs: ids,
                rows: report.totalRows, objects: report.objects)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            try encoder.encode(demo).write(to: URL(fileURLWithPath: path))
            return (demo, false)
        } catch {
            try? await store.shutdown()
            throw error
        }
    }

    /// The exchange request of the seeded documents (all, or the first `limit`), without
    /// annotations, natives included unless told otherwise; destination and batch may be overridden.
    public func requestJSON(
        includeNatives: Bool = true, limit: Int? = nil, destinationCaseID: Int64? = nil, batchID: Int64? = nil
    ) -> String {
        let ids = documentIDs.prefix(limit ?? documentIDs.count).map(String.init).joined(separator: ",")
        let destination = destinationCaseID ?? self.destinationCaseID
        let batch = batchID ?? self.batchID
        return #"{"sourceCaseId":\#(sourceCaseID),"destinationCaseId":\#(destination),"batchId":\#(batch),"documentIds":[\#(ids)],"requiresAnnotations":false,"includeNatives":\#(includeNatives)}"#
    }
}

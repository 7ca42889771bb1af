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
    /// Whether the documents carry annotations of all seven kinds in the workspace's document
    /// engine (`--annotations`); nil in records written before annotations existed.
    public var annotated: Bool?

    /// The annotation routing of the demo's annotation exchange: redactions, bates and
    /// confidentiality stamps and stickers branded into the PDF; highlights and notes (and the
    /// comment threads, always) carried as a layer — both routings of the pre-uploader at once.
    public static let annotationRouting: [(field: String, routing: String)] = [
        ("redactionsAs", "brand_in"), ("highlightsAs", "layer"), ("notesAs", "layer"), ("stickersAs", "brand_in"),
        ("batesAs", "brand_in"), ("confidentialityCodesAs", "brand_in"),
    ]

    /// The record kept in the workspace so a second run reuses the case.
    static func recordPath(_ workspace: FleetWorkspace) -> String { workspace.directory + "/demo-case.json" }

    /// Seeds the source case (unless this workspace already has it) and creates the destination.
    public static func prepare(
        workspace: FleetWorkspace, documents: Int, sourceCaseID: Int64, destinationCaseID: Int64, batchID: Int64, pdfBytes: Int = 0,
        annotations: Bool = false, logger: Logger
    ) async throws -> (demo: DemoCase, reused: Bool) {
        let path = recordPath(workspace)
        if let data = FileManager.default.contents(atPath: path),
            let existing = try? JSONDecoder().decode(DemoCase.self, from: data),
            existing.sourceCaseID == sourceCaseID, existing.destinationCaseID == destinationCaseID, existing.documentIDs.count == documents,
            (existing.annotated ?? false) || !annotations
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
            if annotations, let first = report.firstDocumentID, let last = report.lastDocumentID {
                try await CaseAnnotations.seed(
                    databases: databases, store: store, engineURL: workspace.documentEngineURL, caseID: sourceCaseID,
                    documents: first...last, environment: workspace.storageEnvironment, logger: logger)
            }
            try? await store.shutdown()
            let ids: [Int64] = if let first = report.firstDocumentID, let last = report.lastDocumentID { Array(first...last) } else { [] }
            let demo = DemoCase(
                sourceCaseID: sourceCaseID, destinationCaseID: destinationCaseID, batchID: batchID, documentIDs: ids,
                rows: report.totalRows, objects: report.objects, annotated: annotations)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            try encoder.encode(demo).write(to: URL(fileURLWithPath: path))
            return (demo, false)
        } catch {
            try? await store.shutdown()
            throw error
        }
    }

    /// The exchange request of the seeded documents (all, or the first `limit`), natives included
    /// unless told otherwise; destination and batch may be overridden. With `requiresAnnotations`
    /// it carries ``annotationRouting``.
    public func requestJSON(
        includeNatives: Bool = true, limit: Int? = nil, destinationCaseID: Int64? = nil, batchID: Int64? = nil,
        requiresAnnotations: Bool = false, skipExchanged: Bool = false
    ) -> String {
        let ids = documentIDs.prefix(limit ?? documentIDs.count).map(String.init).joined(separator: ",")
        let destination = destinationCaseID ?? self.destinationCaseID
        let batch = batchID ?? self.batchID
        let routing = requiresAnnotations ? Self.annotationRouting.map { #","\#($0.field)":"\#($0.routing)""# }.joined() : ""
        return #"{"sourceCaseId":\#(sourceCaseID),"destinationCaseId":\#(destination),"batchId":\#(batch),"documentIds":[\#(ids)],"requiresAnnotations":\#(requiresAnnotations),"includeNatives":\#(includeNatives)\#(routing)\#(skipExchanged ? #","skipExchanged":true"# : "")}"#
    }
}

import CaseData
import ExchangerEvents

/// The orchestrator's copy step on the case-data copy engine (module `CaseData`): copies the
/// rows the exchange selects from the source case into the destination case and returns the
/// documents with their new ids and files (`pdf` → rendition, `native` → native; text files are
/// not copied object by object, the search-text path produces them).
///
/// Idempotent as ``CaseDataCopying`` requires: the engine keeps a persisted id map and per-table
/// checkpoints per job id, so a second call copies nothing and returns the same new ids.
public struct CaseDataCopyStep: CaseDataCopying {
    /// The engine.
    public let engine: any CaseCopyEngine

    /// A step over `engine` (normally a `CaseDataCopier`).
    public init(engine: any CaseCopyEngine) {
        self.engine = engine
    }

    public func copy(_ exchange: ExchangeRecord) async throws -> CopyOutcome {
        let request = exchange.request
        let selection: CaseDocumentSelection = switch request.selection {
        case .label(let id): .labelID(id)
        case .folder(let id): .folderID(id)
        case .documents(let ids): .documentIDs(ids)
        }
        let report = try await engine.copy(
            sourceCase: request.sourceCaseID, destinationCase: request.destinationCaseID, selection: selection, jobID: exchange.jobID,
            options: CaseCopyOptions(skipExchanged: request.skipExchanged, reuseIDsOf: request.retryOf))
        // By source id, so the payload's order (and its resumable cursor) never depends on the engine's.
        return CopyOutcome(
            documents: report.documents.sorted { $0.sourceDocumentID < $1.sourceDocumentID }.map(Self.document), warnings: Self.warnings(report),
            skipped: report.skippedDocuments.map {
                SkippedDocument(sourceDocumentID: $0.sourceDocumentID, documentID: $0.destinationDocumentID, earlierJobID: $0.earlierJobID)
            })
    }

    public func recordOutcomes(_ exchange: ExchangeRecord, _ outcomes: DocumentOutcomes) async throws {
        _ = try await engine.recordOutcomes(
            destinationCase: exchange.destinationCaseID, jobID: exchange.jobID,
            outcomes: CaseDocumentOutcomes(delivered: outcomes.delivered.subtracting(outcomes.failed), notFound: outcomes.notFound))
    }

    public func leftBehindSourceDocuments(_ exchange: ExchangeRecord) async throws -> [Int64] {
        try await engine.leftBehind(destinationCase: exchange.destinationCaseID, jobID: exchange.jobID)
    }

    /// The report's warnings, excluded documents and not-found ids as sentences; nil when none.
    static func warnings(_ report: CaseCopyReport) -> [String]? {
        var warnings = report.warnings
        for document in report.excludedDocuments {
            warnings.append("source document \(document.sourceDocumentID)\(document.name.map { " (\($0))" } ?? "") was not copied: \(document.reason)")
        }
        if !report.notFoundDocumentIDs.isEmpty {
            warnings.append("source documents not in the source case: \(report.notFoundDocumentIDs.map(String.init).joined(separator: ", "))")
        }
        return warnings.isEmpty ? nil : warnings
    }

    /// One copied document in the orchestrator's terms.
    static func document(_ mapping: CaseDocumentMapping) -> CopiedDocument {
        let files: [DocumentFile] = mapping.files.compactMap { file in
            switch file.variant {
            case "pdf": DocumentFile(name: file.name, kind: .rendition)
            case "native": DocumentFile(name: file.name, kind: .native)
            default: nil
            }
        }
        return CopiedDocument(
            sourceDocumentID: mapping.sourceDocumentID, documentID: mapping.destinationDocumentID,
            exhibitID: mapping.destinationExhibitID, files: files, sourceBatchID: mapping.sourceBatchID, sourceExhibitID: mapping.sourceExhibitID)
    }
}

import CaseData
import ExchangerTestSupport
import ExchangerEvents
import Foundation
import Orchestrator
import OrchestratorService
import Synchronization
import Testing

/// The copy engine seam of module CaseData, recording its calls and answering a fixed report.
final class RecordingEngine: CaseCopyEngine {
    let calls = Mutex<[(Int64, Int64, CaseDocumentSelection, String)]>([])
    let report: CaseCopyReport

    init(report: CaseCopyReport) { self.report = report }

    func copy(
        sourceCase: Int64, destinationCase: Int64, selection: CaseDocumentSelection, jobID: String, options: CaseCopyOptions
    ) async throws -> CaseCopyReport {
        calls.withLock { $0.append((sourceCase, destinationCase, selection, jobID)) }
        return report
    }

    func recordOutcomes(destinationCase: Int64, jobID: String, outcomes: CaseDocumentOutcomes) async throws -> Int { 0 }

    func leftBehind(destinationCase: Int64, jobID: String) async throws -> [Int64] { [] }
}

@Suite("The CaseData copy engine as the orchestrator's copy step")
struct CopierTests {
    static let reportJSON = """
        {"jobID": "job-1", "sourceCaseID": 41, "destinationCaseID": 42, "tables": [], "idMapSize": 9, "seconds": 0.5,
         "documents": [
           {"sourceDocumentID": 7, "destinationDocumentID": 1007, "destinationExhibitID": 507,
            "files": [{"name": "a.pdf", "variant": "pdf"}, {"name": "a.docx", "variant": "native"}, {"name": "a.txt", "variant": "text"}]},
           {"sourceDocumentID": 3, "destinationDocumentID": 1003, "files": [{"name": "b.pdf", "variant": "pdf"}]}
         ]}
        """

    @Test("selection, cases and job id reach the engine; the report becomes the payload's documents")
    func adapter() async throws {
        let report = try JSONDecoder().decode(CaseCopyReport.self, from: Data(Self.reportJSON.utf8))
        #expect(report.documents.count == 2)
        let engine = RecordingEngine(report: report)
        let adapter = CaseDataCopyStep(engine: engine)
        try await withTestBroker(.postgres) { broker, _ in
            let store = ExchangeStore(broker: broker)
            for (selection, expected) in [
                (DocumentSelection.label(3), CaseDocumentSelection.labelID(3)), (.folder(4), .folderID(4)), (.documents([9, 8]), .documentIDs([9, 8])),
            ] {
                let request = ExchangeRequest(sourceCaseID: 41, destinationCaseID: 42, batchID: 7, selection: selection)
                let record = try await store.accept(request, idempotencyKey: try request.idempotencyKey()).record
                let outcome = try await adapter.copy(record)
                let call = try #require(engine.calls.withLock { $0.last })
                #expect(call.0 == 41)
                #expect(call.1 == 42)
                #expect(call.2 == expected)
                #expect(call.3 == record.jobID)
                #expect(outcome.documents.map(\.sourceDocumentID) == [3, 7])
                #expect(outcome.documents.map(\.documentID) == [1003, 1007])
                #expect(outcome.documents[1].exhibitID == 507)
                #expect(outcome.documents[1].files == [DocumentFile(name: "a.pdf", kind: .rendition), DocumentFile(name: "a.docx", kind: .native)])
            }
        }
    }

    @Test("the default dependencies need EXCHANGER_CASE_DATABASE_URL")
    func defaultDependencies() throws {
        #expect(throws: OrchestratorServiceError.self) {
            try OrchestratorDependencies.makeDefault(environment: [:], logger: .init(label: "test"))
        }
        let dependencies = try OrchestratorDependencies.makeDefault(
            environment: ["EXCHANGER_CASE_DATABASE_URL": "sqlite:///tmp/never-opened/{database}.sqlite"], logger: .init(label: "test"))
        #expect(dependencies.copier is CaseDataCopyStep)
    }
}

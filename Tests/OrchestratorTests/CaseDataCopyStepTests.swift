import Broker
import CaseData
import ExchangerEvents
import ExchangerTestSupport
import Foundation
import Orchestrator
import Testing

/// The orchestrator's copy step on the real case-data copy engine (SQLite cases): the selected
/// documents come back with their new ids and files, and a second call returns the same.
@Suite("Case-data copy step")
struct CaseDataCopyStepTests {
    @Test func copiesTheSelectedDocumentsAndIsIdempotent() async throws {
        try await withTemporaryDirectory { directory in
            try await withTestBroker(.sqlite) { broker, _ in
                let databases = try CaseDatabases(
                    urlTemplate: "sqlite://\(directory.path)/{database}.sqlite", prefix: "case", environment: [:])
                _ = try await databases.create(caseID: 101)
                _ = try await databases.create(caseID: 202)
                let seeded = try await CaseSeeder(databases: databases).seed(caseID: 101, documents: 6)
                let firstID = try #require(seeded.firstDocumentID)
                let chosen = [firstID + 1, firstID + 4]

                let store = ExchangeStore(broker: broker)
                let request = ExchangeRequest(sourceCaseID: 101, destinationCaseID: 202, batchID: 9, selection: .documents(chosen), includeNatives: true)
                let (record, _) = try await store.accept(request, idempotencyKey: try request.idempotencyKey(client: nil))
                let step = CaseDataCopyStep(engine: CaseDataCopier(databases: databases))

                let first = try await step.copy(record)
                #expect(first.documents.map(\.sourceDocumentID).sorted() == chosen)
                #expect(Set(first.documents.map(\.documentID)).count == 2)
                for document in first.documents {
                    #expect(document.files.contains { $0.kind == .rendition && $0.name.hasSuffix(".pdf") })
                    #expect(document.files.allSatisfy { $0.kind == .rendition || $0.kind == .native })
                    #expect(document.exhibitID != nil)
                }
                let second = try await step.copy(record)
                #expect(second.documents.sorted { $0.sourceDocumentID < $1.sourceDocumentID }
                    == first.documents.sorted { $0.sourceDocumentID < $1.sourceDocumentID })
            }
        }
    }
}

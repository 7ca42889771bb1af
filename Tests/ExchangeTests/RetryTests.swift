import CaseData
import DatabaseSupport
import ExchangeFleet
import ExchangerTestSupport
import Foundation
import ObjectStorage
import ProcessSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `POST /exchanges/{jobId}/retry` (`exchanger retry`) against a real fleet: the documents an
/// ended exchange left behind go through again in a new exchange, on the rows the first one
/// copied.
@Suite("Retrying what an exchange left behind")
struct RetryTests {
    /// Rows of the destination case, table by table (the tables an exchange writes).
    static let tables = [
        "documents", "exhibits", "document_variants", "custodians", "custodian_exhibits", "labels", "label_categories",
        "label_category_labels", "folder_tags", "folder_taggings", "issues", "issue_taggings", "custom_fields",
        "custom_field_values", "confidentiality_codes", "confidentiality_logs", "relevancy_logs", "batches",
    ]

    static func rowCounts(_ fixture: FleetFixture, caseID: Int64) async throws -> [String: Int64] {
        var counts: [String: Int64] = [:]
        for table in tables {
            counts[table] = try await runCaseSQL(fixture.databases, caseID, "SELECT count(*) AS n FROM \(table)").first?["n"].int64 ?? -1
        }
        return counts
    }

    @Test(
        "a document whose file was missing: the exchange ends with it not found; once the file is back a retry delivers it on the same rows, nothing copied twice, verified exact",
        arguments: [Backend.postgres, .sqlite])
    func retryDeliversWhatWasLeftBehind(backend: Backend) async throws {
        try await FleetFixture.with(backend) { fixture in
            let demo = try await fixture.seed(documents: 6)
            _ = try fixture.workspace.writeAPIToken()
            // Source document 3's rendition goes missing before the exchange.
            let store = try await ObjectStorage.open(fixture.workspace.storageURL, environment: fixture.workspace.storageEnvironment)
            let missing = try #require(demo.documentIDs.dropFirst(2).first)
            var renditions: [ObjectInfo] = []
            for try await object in store.list(prefix: "case_\(demo.sourceCaseID)/documents/\(missing)/") { renditions.append(object) }
            let rendition = try #require(renditions.first { $0.key.rawValue.hasSuffix(".pdf") })
            let bytes = try await store.get(rendition.key)
            try await store.delete(rendition.key)

            defer { Task { try? await store.shutdown() } }
            try await fixture.withFleetAndOrchestrator(replica: "retry") { client in
                let submitted = try await client.submit(demo.requestJSON(includeNatives: false))
                // Not ended yet: a retry is refused.
                let early = await #expect(throws: FleetError.self) { _ = try await client.retry(submitted.jobId) }
                #expect(early?.message.contains("once it has ended") == true, "\(early?.message ?? "")")
                let first = try await client.watch(submitted.jobId, timeout: .seconds(120)) { _ in }
                #expect(first.state == "FINISHED")
                #expect(first.documents.copied == 5 && first.documents.notFound == 1 && first.documents.failed == 0, "\(first.documents)")
                let before = try await Self.rowCounts(fixture, caseID: demo.destinationCaseID)
                let leftBehind = try await runCaseSQL(
                    fixture.databases, demo.destinationCaseID,
                    "SELECT source_document_id, destination_document_id FROM exchange_documents WHERE job_id = $1 AND outcome = 'not_found'",
                    [.text(submitted.jobId)])
                #expect(leftBehind.count == 1 && leftBehind.first?["source_document_id"].int64 == missing)
                let destinationID = try #require(leftBehind.first?["destination_document_id"].int64)

                // The file is back; the retry selects only the left-behind document.
                try await store.put(rendition.key, bytes)
                let retried = try await client.retry(submitted.jobId)
                #expect(retried.created && retried.retryOf == submitted.jobId && retried.documents == 1, "\(retried)")
                // Asked again (a client retrying its POST): the same retry.
                let again = try await client.retry(submitted.jobId)
                #expect(!again.created && again.jobId == retried.jobId)
                let second = try await client.watch(retried.jobId, timeout: .seconds(120)) { _ in }
                #expect(second.state == "FINISHED")
                #expect(second.documents.total == 1 && second.documents.copied == 1 && second.documents.notFound == 0, "\(second.documents)")
                let raw = try await client.rawStatus(retried.jobId)
                #expect(raw.contains(#""retryOf":"\#(submitted.jobId)""#), "\(raw)")

                // No row was copied twice, and the retry delivered the first exchange's destination document.
                #expect(try await Self.rowCounts(fixture, caseID: demo.destinationCaseID) == before)
                let ledger = try await runCaseSQL(
                    fixture.databases, demo.destinationCaseID,
                    "SELECT source_document_id, destination_document_id, outcome FROM exchange_documents WHERE job_id = $1",
                    [.text(retried.jobId)])
                #expect(ledger.count == 1)
                #expect(ledger.first?["source_document_id"].int64 == missing && ledger.first?["destination_document_id"].int64 == destinationID)
                #expect(ledger.first?["outcome"].string == "delivered")
                let verification = try await fixture.verify(retried.jobId)
                #expect(verification.isExact, "\(verification.problems)")
                #expect(try await store.exists(try ObjectKey("case_\(demo.destinationCaseID)/documents/\(destinationID)/" + rendition.key.rawValue.split(separator: "/").last.map(String.init)!)))
                #expect(try await fixture.leftovers(retried.jobId).isEmpty)

                // Nothing is left behind now: retrying the first exchange again is refused, and so is an unknown one.
                let nothing = await #expect(throws: FleetError.self) { _ = try await client.retry(submitted.jobId) }
                #expect(nothing?.message.contains("no document behind") == true, "\(nothing?.message ?? "")")
                let unknown = await #expect(throws: FleetError.self) { _ = try await client.retry("no-such-job") }
                #expect(unknown?.message.contains("no exchange has job id") == true, "\(unknown?.message ?? "")")
            }
        }
    }
}

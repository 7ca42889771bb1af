import CaseData
import CaseDatabase
import DatabaseSupport
import ExchangerTestSupport
import Foundation
import Testing

/// A repeat exchange of the same documents into the same case: by default a new copy; with
/// `skipExchanged`, the documents an earlier job delivered are left out, through the
/// `exchange_documents` ledger.
@Suite("Repeat exchanges and the exchanged-documents ledger")
struct RepeatExchangeTests {
    @Test("skipExchanged leaves out what an earlier job delivered, keeps its choice on a re-run, and copies the rest", arguments: Backend.allCases)
    func skipsDeliveredDocuments(backend: Backend) async throws {
        try await withCaseDatabases(backend) { databases in
            try await seedPair(databases, source: 31, destination: 32, documents: 8)
            let copier = CaseDataCopier(databases: databases)
            let source = try await TestCaseConnection.open(databases, caseID: 31)
            let all = try await source.ids("SELECT id FROM documents").sorted()
            await source.close()
            #expect(all.count == 8)
            let selection = CaseDocumentSelection.documentIDs(all)

            // The first job copies everything; its ledger rows say `copied` until the outcomes come.
            let first = try await copier.copy(sourceCase: 31, destinationCase: 32, selection: selection, jobID: "job-first")
            #expect(first.documents.count == 8)
            #expect(first.skippedDocuments.isEmpty)
            let destination = try await TestCaseConnection.open(databases, caseID: 32)
            #expect(try await destination.count("exchange_documents", "job_id = 'job-first' AND outcome = 'copied'") == 8)

            // Outcomes: six delivered, one not found, one never delivered (failed).
            let byNew = Dictionary(uniqueKeysWithValues: first.documents.map { ($0.sourceDocumentID, $0.destinationDocumentID) })
            let delivered = Set(all.prefix(6).compactMap { byNew[$0] })
            let notFound: Set<Int64> = [try #require(byNew[all[6]])]
            let changed = try await copier.recordOutcomes(
                destinationCase: 32, jobID: "job-first", outcomes: CaseDocumentOutcomes(delivered: delivered, notFound: notFound))
            #expect(changed == 8)
            #expect(try await copier.recordOutcomes(
                destinationCase: 32, jobID: "job-first", outcomes: CaseDocumentOutcomes(delivered: delivered, notFound: notFound)) == 0,
                "recording the same outcomes again changes nothing")
            #expect(try await destination.count("exchange_documents", "job_id = 'job-first' AND outcome = 'delivered'") == 6)
            #expect(try await destination.count("exchange_documents", "job_id = 'job-first' AND outcome = 'not_found'") == 1)
            #expect(try await destination.count("exchange_documents", "job_id = 'job-first' AND outcome = 'failed'") == 1)

            // One delivered copy is deleted in the destination: it does not count as delivered any more.
            let deleted = try #require(byNew[all[0]])
            try await destination.execute("DELETE FROM documents WHERE id = \(deleted)")  // its rows below go with it (ON DELETE CASCADE)

            // The skipping job: documents 2…6 are skipped; 1 (deleted), 7 (not found) and 8 (failed) are copied.
            let skipping = CaseCopyOptions(skipExchanged: true)
            let second = try await copier.copy(
                sourceCase: 31, destinationCase: 32, selection: selection, jobID: "job-second", options: skipping)
            #expect(second.skippedDocuments.map(\.sourceDocumentID) == Array(all[1...5]))
            #expect(second.skippedDocuments.allSatisfy { $0.earlierJobID == "job-first" && $0.destinationDocumentID == byNew[$0.sourceDocumentID] })
            #expect(second.documents.map(\.sourceDocumentID).sorted() == [all[0], all[6], all[7]])
            #expect(second.notFoundDocumentIDs.isEmpty, "skipped documents are not reported as not found")
            #expect(try await destination.count("exchange_documents", "job_id = 'job-second' AND outcome = 'skipped'") == 5)

            // A re-run of the same job returns the same choice and copies nothing twice, even after
            // another job delivered more meanwhile.
            let again = try await copier.copy(
                sourceCase: 31, destinationCase: 32, selection: selection, jobID: "job-second", options: skipping)
            #expect(again.skippedDocuments == second.skippedDocuments)
            #expect(again.documents == second.documents)
            #expect(again.insertedRows == 0)

            // Without skipExchanged every document is copied again, as a new document.
            let third = try await copier.copy(sourceCase: 31, destinationCase: 32, selection: selection, jobID: "job-third")
            #expect(third.documents.count == 8)
            #expect(third.skippedDocuments.isEmpty)
            #expect(Set(third.documents.map(\.destinationDocumentID)).isDisjoint(with: Set(first.documents.map(\.destinationDocumentID))))

            // A different source case's deliveries are not this one's: a skipping job from case 33
            // with the same source document ids copies everything.
            _ = try await CaseSeeder(databases: databases).seed(caseID: 33, documents: 8, seed: 1)
            let other = try await copier.copy(
                sourceCase: 33, destinationCase: 32, selection: selection, jobID: "job-other-source", options: skipping)
            #expect(other.skippedDocuments.isEmpty)
            #expect(other.documents.count == 8)
            await destination.close()
        }
    }

    @Test("recording outcomes for a job with no ledger rows (copied by an older build) changes nothing", arguments: Backend.allCases)
    func outcomesOfAnUnknownJob(backend: Backend) async throws {
        try await withCaseDatabases(backend) { databases in
            try await seedPair(databases, source: 41, destination: 42, documents: 2)
            let changed = try await CaseDataCopier(databases: databases).recordOutcomes(
                destinationCase: 42, jobID: "job-never-copied", outcomes: CaseDocumentOutcomes(delivered: [1], notFound: [2]))
            #expect(changed == 0)
        }
    }

    @Test("a retry reuses the earlier job's id map: its left-behind documents keep their destination rows, nothing is inserted twice, and only the same source case may reuse it", arguments: Backend.allCases)
    func retryReusesTheIDMap(backend: Backend) async throws {
        try await withCaseDatabases(backend) { databases in
            try await seedPair(databases, source: 31, destination: 32, documents: 6)
            let copier = CaseDataCopier(databases: databases)
            let source = try await TestCaseConnection.open(databases, caseID: 31)
            let all = try await source.ids("SELECT id FROM documents").sorted()
            await source.close()
            let first = try await copier.copy(sourceCase: 31, destinationCase: 32, selection: .documentIDs(all), jobID: "job-first")
            let byNew = Dictionary(uniqueKeysWithValues: first.documents.map { ($0.sourceDocumentID, $0.destinationDocumentID) })
            // Four delivered, one not found (all[4]), one failed (all[5]).
            _ = try await copier.recordOutcomes(
                destinationCase: 32, jobID: "job-first",
                outcomes: CaseDocumentOutcomes(delivered: Set(all.prefix(4).compactMap { byNew[$0] }), notFound: [try #require(byNew[all[4]])]))
            #expect(try await copier.leftBehind(destinationCase: 32, jobID: "job-first") == [all[4], all[5]])

            let destination = try await TestCaseConnection.open(databases, caseID: 32)
            let rowsBefore = try await destination.count("documents", "1 = 1") + (try await destination.count("exhibits", "1 = 1"))
                + (try await destination.count("document_variants", "1 = 1"))
            let retry = try await copier.copy(
                sourceCase: 31, destinationCase: 32, selection: .documentIDs([all[4], all[5]]), jobID: "job-retry",
                options: CaseCopyOptions(reuseIDsOf: "job-first"))
            #expect(retry.insertedRows == 0, "every row of the retried documents is already in the destination")
            #expect(retry.documents.map(\.sourceDocumentID) == [all[4], all[5]])
            #expect(retry.documents.allSatisfy { $0.destinationDocumentID == byNew[$0.sourceDocumentID] })
            #expect(retry.documents.allSatisfy { !$0.files.isEmpty }, "the retried documents' files are listed for the payload")
            let rowsAfter = try await destination.count("documents", "1 = 1") + (try await destination.count("exhibits", "1 = 1"))
                + (try await destination.count("document_variants", "1 = 1"))
            #expect(rowsAfter == rowsBefore)
            #expect(try await destination.count("exchange_documents", "job_id = 'job-retry' AND outcome = 'copied'") == 2)

            // Delivered by the retry: nothing is left behind by the first job any more.
            _ = try await copier.recordOutcomes(
                destinationCase: 32, jobID: "job-retry", outcomes: CaseDocumentOutcomes(delivered: Set(retry.documents.map(\.destinationDocumentID)), notFound: []))
            #expect(try await copier.leftBehind(destinationCase: 32, jobID: "job-first").isEmpty)

            // Another source case's ids mean other documents: its copy may not reuse the map.
            _ = try await CaseSeeder(databases: databases).seed(caseID: 33, documents: 6, seed: 1)
            let wrongCase = await #expect(throws: CaseDataError.self) {
                _ = try await copier.copy(
                    sourceCase: 33, destinationCase: 32, selection: .documentIDs([all[4]]), jobID: "job-wrong-case",
                    options: CaseCopyOptions(reuseIDsOf: "job-first"))
            }
            #expect(wrongCase?.code == .invalidArgument && wrongCase?.message.contains("not 33") == true, "\(String(describing: wrongCase))")
            let noLedger = await #expect(throws: CaseDataError.self) {
                _ = try await copier.copy(
                    sourceCase: 31, destinationCase: 32, selection: .documentIDs([all[4]]), jobID: "job-no-ledger",
                    options: CaseCopyOptions(reuseIDsOf: "job-never-ran"))
            }
            #expect(noLedger?.code == .notFound, "\(String(describing: noLedger))")
            #expect(try await destination.count("exchange_id_map", "job_id IN ('job-wrong-case', 'job-no-ledger')") == 0, "a refused reuse writes nothing")
            await destination.close()
        }
    }
}

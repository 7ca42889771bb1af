import Broker
import CaseData
import DatabaseSupport
import ExchangeFleet
import ExchangerEvents
import ExchangerTestSupport
import Foundation
import ObjectStorage
import Orchestrator
import Testing

/// One deliberate damage to a finished exchange, and what the problem naming it must contain.
enum Breakage: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case changedColumn, droppedRow, wrongForeignKey, changedFileByte, missingFile, duplicatedEvent, missingEvent, leftoverQueue
    case leftoverDeployment

    var testDescription: String { rawValue }
}

@Suite("ExchangeVerifier")
struct VerifierTests {
    @Test("a clean exchange verifies exact with the right counts", arguments: Backend.allCases)
    func clean(_ backend: Backend) async throws {
        try await withBuiltExchange(backend, documents: 12) { built in
            let result = try await built.verifier.verify(jobID: built.jobID)
            #expect(result.problems == [], "\(result.problems)")
            #expect(result.isExact)
            #expect(result.state == "FINISHED")
            #expect(result.documents == 12)
            #expect(result.documentsNotFound == 0)
            // Every selected row of every table was compared: the copy's selected rows.
            let selected = built.report.tables.reduce(0) { $0 + $1.selectedRows }
            #expect(result.rowsChecked == selected)
            #expect(result.rowsChecked >= 12 * 20)
            #expect(result.tablesChecked == built.report.tables.count)
            #expect(result.filesChecked == 12)
            #expect(result.bytesChecked > 0)
            #expect(result.eventsChecked == 12 * 2 + 1)
            // The result round-trips as JSON (the CLI prints it).
            let data = try JSONEncoder().encode(result)
            #expect(try JSONDecoder().decode(ExchangeVerification.self, from: data) == result)
        }
    }

    @Test("a deliberate breakage is caught, naming it (PostgreSQL)", arguments: Breakage.allCases)
    func breakagePostgres(_ breakage: Breakage) async throws {
        try await check(breakage, on: .postgres)
    }

    @Test("a deliberate breakage is caught, naming it (SQLite)", arguments: [Breakage.changedColumn, .wrongForeignKey, .duplicatedEvent, .missingFile])
    func breakageSQLite(_ breakage: Breakage) async throws {
        try await check(breakage, on: .sqlite)
    }

    @Test("an exchange that is not finished and left a worker is reported; unknown job ids throw")
    func unfinishedAndUnknown() async throws {
        try await withBuiltExchange(.sqlite, documents: 3) { built in
            try await built.brokerSQL("UPDATE exchanges SET state = 'PROCESSING' WHERE job_id = $1", [.text(built.jobID)])
            try await built.brokerSQL(
                "INSERT INTO exchanger_deployments (id, exchange_id, program, queue, min_procs, max_procs, created_at, updated_at) VALUES ('dep-x', $1, 's3-copy', 'q', 0, 1, 0, 0)",
                [.text(built.jobID)])
            try await built.brokerSQL(
                "INSERT INTO exchanger_workers (supervisor_id, program, instance, deployment_id, state, updated_at) VALUES ('sup-1', 's3-copy', 0, 'dep-x', 'running', 0)")
            let result = try await built.verifier.verify(jobID: built.jobID)
            #expect(result.state == "PROCESSING")
            #expect(result.problems.contains { $0.contains("PROCESSING, not FINISHED") }, "\(result.problems)")
            #expect(result.problems.contains { $0.contains("worker s3-copy#0 of deployment dep-x") }, "\(result.problems)")
            await #expect(throws: ExchangeVerifierError.self) { try await built.verifier.verify(jobID: "no-such-job") }
        }
    }

    @Test("the problem list is capped")
    func capped() async throws {
        try await withBuiltExchange(.sqlite, documents: 12) { built in
            try await built.caseSQL(
                built.request.destinationCaseID,
                "UPDATE documents SET title = 'changed' WHERE id IN (SELECT new_id FROM exchange_id_map WHERE job_id = $1 AND table_name = 'documents')",
                [.text(built.jobID)])
            var verifier = built.verifier
            verifier.settings.maxProblems = 5
            let result = try await verifier.verify(jobID: built.jobID)
            #expect(result.problems.count == 6, "\(result.problems)")
            #expect(result.problems.last == "… and 7 more problems")
        }
    }

    @Test("verify timing on a larger exchange (PostgreSQL)")
    func timing() async throws {
        let documents = Int(ProcessInfo.processInfo.environment["EXCHANGER_VERIFIER_TEST_DOCUMENTS"] ?? "") ?? 300
        try await withBuiltExchange(.postgres, documents: documents) { built in
            let started = ContinuousClock.now
            let result = try await built.verifier.verify(jobID: built.jobID)
            let elapsed = ContinuousClock.now - started
            print("verify of \(documents) documents: \(elapsed), \(result.summary)")
            #expect(result.isExact, "\(result.problems)")
            #expect(result.documents == documents)
        }
    }

    // MARK: Breakages

    private func check(_ breakage: Breakage, on backend: Backend) async throws {
        try await withBuiltExchange(backend, documents: 6) { built in
            let destination = built.request.destinationCaseID
            let expected: String
            switch breakage {
            case .changedColumn:
                let row = try await built.someRow("documents")
                try await built.caseSQL(destination, "UPDATE documents SET title = 'tampered' WHERE id = $1", [.integer(row.new)])
                expected = "documents row \(row.new) (source \(row.old)): title is 'tampered'"
            case .droppedRow:
                let row = try await built.someRow("relevancy_logs")
                try await built.caseSQL(destination, "DELETE FROM relevancy_logs WHERE id = $1", [.integer(row.new)])
                expected = "relevancy_logs row \(row.new) (source \(row.old)) is missing in the destination case"
            case .wrongForeignKey:
                let row = try await built.someRow("issue_taggings")
                let current = try #require(
                    try await built.caseSQL(destination, "SELECT issue_id FROM issue_taggings WHERE id = $1", [.integer(row.new)]).first?["issue_id"]
                        .int64)
                let other = try #require(
                    try await built.caseSQL(destination, "SELECT min(id) AS id FROM issues WHERE id <> $1", [.integer(current)]).first?["id"].int64)
                try await built.caseSQL(destination, "UPDATE issue_taggings SET issue_id = $1 WHERE id = $2", [.integer(other), .integer(row.new)])
                expected = "issue_taggings row \(row.new) (source \(row.old)): issue_id is \(other), expected \(current)"
            case .changedFileByte, .missingFile:
                let document = try #require(built.report.documents.first)
                let file = try #require(document.files.first { $0.variant == "pdf" })
                let key = try CaseKeys.documentFile(caseID: destination, documentID: document.destinationDocumentID, fileName: file.name)
                if breakage == .missingFile {
                    try await built.store.delete(key)
                    expected = "file \(key) (pdf of document \(document.destinationDocumentID), source \(document.sourceDocumentID)) is missing"
                } else {
                    var data = try await built.store.get(key)
                    data[data.count / 2] ^= 0x01
                    try await built.store.put(key, data)
                    expected = "file \(key) differs from its source"
                }
            case .duplicatedEvent, .missingEvent:
                let document = try #require(built.report.documents.last)
                let eventID = EventID.deterministic(jobID: built.jobID, type: .documentUploaded, documentID: document.destinationDocumentID)
                if breakage == .duplicatedEvent {
                    try await built.brokerSQL("""
                        INSERT INTO broker_events (event_id, topic, body, attributes, published_at)
                        SELECT 'evt-duplicate-1', topic, body, attributes, published_at FROM broker_events WHERE event_id = $1
                        """, [.text(eventID)])
                    expected = "document \(document.destinationDocumentID) has 2 DOCUMENT_UPLOADED events"
                } else {
                    let deleted = try await built.brokerSQL("DELETE FROM broker_events WHERE event_id = $1 RETURNING event_id", [.text(eventID)])
                    #expect(deleted.count == 1)
                    expected = "document \(document.destinationDocumentID) (source \(document.sourceDocumentID)) has no DOCUMENT_UPLOADED event"
                }
            case .leftoverQueue:
                _ = try await built.broker.createQueue("exch-leftover-s3", attributes: QueueAttributes(exchangeID: built.jobID, program: "s3-copy"))
                expected = "queue exch-leftover-s3 of the exchange still exists"
            case .leftoverDeployment:
                let times = backend == .postgres ? "now(), now()" : "0, 0"
                try await built.brokerSQL("""
                    INSERT INTO exchanger_deployments (id, exchange_id, program, queue, min_procs, max_procs, created_at, updated_at)
                    VALUES ('dep-leftover', $1, 'uploader', 'exch-up', 0, 2, \(times))
                    """, [.text(built.jobID)])
                expected = "deployment dep-leftover (uploader) of the exchange still exists"
            }
            let result = try await built.verifier.verify(jobID: built.jobID)
            #expect(!result.isExact)
            #expect(result.problems.contains { $0.contains(expected) }, "expected '\(expected)' in \(result.problems)")
            // The breakage causes few problems, not an avalanche.
            #expect(result.problems.count <= 3, "\(result.problems)")
        }
    }
}

import CaseData
import DatabaseSupport
import ExchangeFleet
import ExchangerTestSupport
import Foundation
import ObjectStorage
import Orchestrator
import Testing

@Suite("ExchangeVerifier fidelity")
struct VerifierFidelityTests {
    @Test("a file the store cannot read (a reserved name) is a named problem, not the end of the verification", arguments: Backend.allCases)
    func unreadableFileIsAProblem(_ backend: Backend) async throws {
        try await withBuiltExchange(backend, documents: 4) { built in
            let document = try #require(built.report.documents.first)
            let reserved = FileObjectStore.tempFilePrefix + "evil.pdf"
            // The source case names the PDF rendition with the store's reserved temp-file prefix.
            try await built.caseSQL(
                built.request.sourceCaseID, "UPDATE document_variants SET file_name = $1 WHERE document_id = $2 AND variant_type = 'pdf'",
                [.text(reserved), .integer(document.sourceDocumentID)])
            let result = try await built.verifier.verify(jobID: built.jobID)
            #expect(!result.isExact)
            let key = try CaseKeys.documentFile(caseID: built.request.destinationCaseID, documentID: document.destinationDocumentID, fileName: reserved)
            #expect(result.problems.contains { $0.contains("file \(key) (pdf of document \(document.destinationDocumentID)") && $0.contains("cannot be read") },
                    "\(result.problems)")
            #expect(result.filesChecked == 4, "the other files were still checked")
        }
    }

    @Test("the source exhibit id is compared as the exact decimal text", arguments: Backend.allCases)
    func sourceExhibitIDComparedExactly(_ backend: Backend) async throws {
        try await withBuiltExchange(backend, documents: 4) { built in
            let exhibit = try await built.someRow("exhibits")
            // Numerically equal, textually not: a comparison through numbers would pass it.
            try await built.caseSQL(built.request.destinationCaseID, """
                UPDATE custom_field_values SET text_value = $1
                WHERE exhibit_id = $2 AND custom_field_id = (SELECT id FROM custom_fields WHERE name = 'Source Exhibit ID')
                """, [.text("0\(exhibit.old)"), .integer(exhibit.new)])
            let result = try await built.verifier.verify(jobID: built.jobID)
            #expect(!result.isExact)
            #expect(result.problems.contains { $0.contains("exhibit \(exhibit.new) (source \(exhibit.old)): 'Source Exhibit ID' is '0\(exhibit.old)', expected '\(exhibit.old)'") },
                    "\(result.problems)")
        }
    }

    @Test("confidentiality bits with no code in the source are a warning of the verification, not silence", arguments: Backend.allCases)
    func uncodedBitsAreAWarning(_ backend: Backend) async throws {
        try await withBuiltExchange(backend, documents: 4) { built in
            let document = try await built.someRow("documents")
            try await built.caseSQL(
                built.request.sourceCaseID,
                "UPDATE documents SET confidentiality_status = confidentiality_status | 1099511627776 | CAST('-9223372036854775808' AS bigint) WHERE id = $1",
                [.integer(document.old)])
            let result = try await built.verifier.verify(jobID: built.jobID)
            #expect(result.isExact, "\(result.problems)")
            #expect(result.warnings == [
                "documents.confidentiality_status: bits 40 (1 rows), 63 (1 rows) have no confidentiality code in the source case and were not carried over"
            ])
            #expect(result.summary.contains("1 warning(s)"))
        }
    }

    @Test("cells are compared as the database holds them: bytes that are not UTF-8 differ from U+FFFD (SQLite)")
    func cellsComparedAsHeld() async throws {
        try await withBuiltExchange(.sqlite, documents: 4) { built in
            let document = try await built.someRow("documents")
            // The source holds caf + 0xE9; the destination what a lossy decoder makes of it.
            try await built.caseSQL(
                built.request.sourceCaseID, "UPDATE documents SET title = CAST(X'636166e9' AS TEXT) WHERE id = $1", [.integer(document.old)])
            try await built.caseSQL(
                built.request.destinationCaseID, "UPDATE documents SET title = CAST(X'636166efbfbd' AS TEXT) WHERE id = $1", [.integer(document.new)])
            let result = try await built.verifier.verify(jobID: built.jobID)
            #expect(result.problems == ["documents row \(document.new) (source \(document.old)): title is 'caf\u{FFFD}', expected X'636166E9'"])
        }
    }
}

import CaseData
import CaseDatabase
import DatabaseSupport
import ExchangerTestSupport
import Foundation
import PostgresClient
import Testing

/// docs/postgres-roles.sql's case-database writer: the copy runs under it and needs no more.
@Suite("The case-database writer role")
struct CaseWriterRoleTests {
    /// The script's statements for the writer: the role (cluster-wide) and the per-database block.
    static func statements(role: String) throws -> (role: [String], perDatabase: [String]) {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/postgres-roles.sql")
        let text = try String(contentsOf: script, encoding: .utf8)
        let parts = text.components(separatedBy: "-- ==== per case database")
        try #require(parts.count == 2, "the script has one per-database block")
        func split(_ sql: String) -> [String] {
            sql.split(separator: "\n").filter { !$0.hasPrefix("--") }.joined(separator: "\n")
                .split(separator: ";").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
                .map { $0.replacingOccurrences(of: #"\bexchanger_case_writer\b"#, with: role, options: .regularExpression) }
        }
        let create = split(parts[0]).filter { $0.contains("ROLE \(role)") }
        // The block starts after its header line.
        return (create, split(parts[1].split(separator: "\n", maxSplits: 1).dropFirst().joined()))
    }

    @Test("a copy (with its bookkeeping tables, a resumed re-run and a recorded outcome) runs as the writer role; it cannot drop a case table")
    func copyRunsUnderTheRole() async throws {
        try await withCaseDatabases(.postgres) { databases in
            try await seedPair(databases, source: 61, destination: 62, documents: 5)
            let source = try await TestCaseConnection.open(databases, caseID: 61)
            let selection = CaseDocumentSelection.documentIDs(try await source.ids("SELECT id FROM documents").sorted())
            await source.close()
            let role = "exchanger_case_writer_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(10).lowercased()
            let (create, perDatabase) = try Self.statements(role: role)
            #expect(create.count == 1 && perDatabase.count >= 4)
            let server = try TestEnvironment.postgresURL()
            let admin = try await PostgresConnection.connect(url: server)
            for statement in create { _ = try await admin.query(statement) }
            for caseID: Int64 in [61, 62] {
                let connection = try await PostgresConnection.connect(url: try databases.locator.url(caseID: caseID))
                for statement in perDatabase { _ = try await connection.query(statement) }
                await connection.close()
            }
            do {
                let template = postgresURL(server, database: "{database}")
                    .replacingOccurrences(of: #"://[^@/]*@"#, with: "://\(role)@", options: .regularExpression)
                #expect(template.contains("://\(role)@"))
                let prefix = try databases.locator.databaseName(caseID: 61).dropLast(3)
                let asRole = CaseDatabases(locator: try CaseDatabaseLocator(template: template, prefix: String(prefix)))
                let copier = CaseDataCopier(databases: asRole)
                let report = try await copier.copy(sourceCase: 61, destinationCase: 62, selection: selection, jobID: "job-role")
                #expect(report.documents.count == 5 && report.insertedRows > 0)
                let again = try await copier.copy(sourceCase: 61, destinationCase: 62, selection: selection, jobID: "job-role")
                #expect(again.insertedRows == 0 && again.documents == report.documents)
                #expect(try await copier.recordOutcomes(
                    destinationCase: 62, jobID: "job-role",
                    outcomes: CaseDocumentOutcomes(delivered: Set(report.documents.map(\.destinationDocumentID)), notFound: [])) == report.documents.count)
                let connection = try await PostgresConnection.connect(url: try asRole.locator.url(caseID: 62))
                await #expect(throws: (any Error).self) { _ = try await connection.query("DROP TABLE documents CASCADE") }
                await connection.close()
            } catch {
                _ = try? await admin.query("DROP OWNED BY \(role)")
                await admin.close()
                throw error
            }
            // The role owns the copy's bookkeeping tables in the destination: drop them with the databases, then the role.
            try await withTeardown(databases, role: role, admin: admin)
        }
    }

    private func withTeardown(_ databases: CaseDatabases, role: String, admin: PostgresConnection) async throws {
        for caseID: Int64 in [61, 62] {
            let connection = try await PostgresConnection.connect(url: try databases.locator.url(caseID: caseID))
            _ = try await connection.query("DROP OWNED BY \(role)")
            await connection.close()
        }
        _ = try await admin.query("DROP ROLE \(role)")
        await admin.close()
    }
}

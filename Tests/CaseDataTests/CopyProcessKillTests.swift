import CaseData
import CaseDatabase
import ExchangerTestSupport
import Foundation
import ProcessSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `exchanger case copy` SIGKILLed in the middle of a table (some tables checkpointed, the one in
/// hand not), then run again with the same job id: the copy completes exactly, without one
/// duplicate row.
@Suite("case-data copy process killed mid-table")
struct CopyProcessKillTests {
    @Test("kill -9 mid-table, re-run: exact, no duplicates")
    func killedMidTableAndRerun() async throws {
        try await withCaseDatabases(.postgres) { databases in
            let documents = 1500
            _ = try await CaseSeeder(databases: databases).seed(caseID: 301, documents: documents, seed: 3)
            _ = try await databases.create(caseID: 302)
            let ids = try await TestCaseConnection.open(databases, caseID: 301)
            let documentIDs = try await ids.ids("SELECT id FROM documents")
            await ids.close()
            let listFile = FileManager.default.temporaryDirectory.appendingPathComponent("copy-kill-\(UUID().uuidString).txt")
            try documentIDs.sorted().map(String.init).joined(separator: "\n").write(to: listFile, atomically: true, encoding: .utf8)
            defer { try? FileManager.default.removeItem(at: listFile) }
            let arguments = [
                "case", "copy", "--case-database", databases.locator.template, "--prefix", databases.locator.prefix,
                "--from", "301", "--to", "302", "--job", "killed", "--documents-file", listFile.path,
            ]

            let destination = try await TestCaseConnection.open(databases, caseID: 302)
            let tables = CaseSchema.dataTables.count
            var killedWith = -1
            for attempt in 1...5 {
                let child = try ChildProcess(executable: TestEnvironment.exchanger, arguments: arguments, stdout: .discard, stderr: .discard)
                // Kill once at least one table is checkpointed and the copy is not through.
                let midway = try await eventually(timeout: .seconds(60)) {
                    let done = try await destination.count("exchange_copy_checkpoints", "job_id = 'killed'")
                    return done >= 2 || kill(child.pid, 0) != 0
                }
                child.signal(SIGKILL)
                let status = try await child.wait()
                killedWith = try await destination.count("exchange_copy_checkpoints", "job_id = 'killed'")
                if midway && status == 128 + SIGKILL && killedWith < tables {
                    break
                }
                // The copy finished before the kill (a fast machine): start over with a new job.
                #expect(attempt < 5, "could not kill the copy midway in 5 attempts")
                try await destination.execute("DELETE FROM exchange_copy_checkpoints; DELETE FROM exchange_id_map")
                for table in CaseSchema.dataTables.reversed() { try await destination.execute("DELETE FROM \(table)") }
            }
            #expect(killedWith >= 1 && killedWith < tables, "killed after \(killedWith) of \(tables) tables")

            let (status, output) = try await runExchanger(arguments)
            #expect(status == 0, "\(output)")
            let report = try JSONDecoder().decode(CaseCopyReport.self, from: Data(output.utf8))
            #expect(report.tables.filter(\.resumed).count >= 1)

            let source = try await TestCaseConnection.open(databases, caseID: 301)
            try await verifyExactCopy(source: source, destination: destination, job: "killed", documents: documentIDs)
            // Every destination row is a row of this job's map: nothing was inserted twice.
            let map = try await idMap(destination, job: "killed")
            for table in ["documents", "exhibits", "document_variants", "label_category_labels", "folder_taggings", "confidentiality_logs"] {
                #expect(try await destination.count(table) == (map[table]?.count ?? -1), "\(table)")
            }
            await source.close()
            await destination.close()
        }
    }
}

import CaseData
import CaseDatabase
import ExchangeFleet
import ExchangerTestSupport
import Foundation
import ProcessSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// docs/operations.md's runbook, run as written: its `sh runbook` blocks, in order, in one bash
/// with `set -euo pipefail`, against a fresh PostgreSQL broker and case databases, a local object
/// store and the binaries of this build on `PATH`. A command that drifts from the programs fails
/// CI here.
@Suite("The operations runbook")
struct RunbookTests {
    /// The repository's root (this file is Tests/ExchangeTests/RunbookTests.swift).
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The `sh runbook` blocks of a Markdown text, in order.
    static func runbookBlocks(_ markdown: String) -> [String] {
        var blocks: [String] = []
        var current: [String]?
        for line in markdown.split(separator: "\n", omittingEmptySubsequences: false) {
            if current == nil, line.trimmingCharacters(in: .whitespaces) == "```sh runbook" {
                current = []
            } else if current != nil, line.trimmingCharacters(in: .whitespaces) == "```" {
                blocks.append((current ?? []).joined(separator: "\n"))
                current = nil
            } else if current != nil {
                current?.append(String(line))
            }
        }
        return blocks
    }

    @Test("the runbook's blocks are found, and an unclosed block is not taken")
    func extraction() {
        #expect(Self.runbookBlocks("a\n```sh runbook\necho 1\n```\n```sh\necho no\n```\n```sh runbook\necho 2\necho 3\n```\n") == [
            "echo 1", "echo 2\necho 3",
        ])
        #expect(Self.runbookBlocks("```sh runbook\necho 1\n").isEmpty)
    }

    @Test("docs/operations.md's runbook runs as written on PostgreSQL: migrate, seed, supervisor, submit, verify, diagnose, ctl, retry, scale, cancel, stop")
    func runbookRuns() async throws {
        let markdown = try String(contentsOf: Self.root.appendingPathComponent("docs/operations.md"), encoding: .utf8)
        let blocks = Self.runbookBlocks(markdown)
        #expect(blocks.count >= 5, "the runbook has its blocks")
        let script = "set -euo pipefail\n" + blocks.joined(separator: "\n")
        try await withTestDatabase(.postgres, migrate: false) { brokerURL in
            try await withTemporaryDirectory { directory in
                // The working directory an operator has: supervisor.conf and the examples.
                for file in ["supervisor.conf", "examples/request.json", "examples/request-large.json"] {
                    let target = directory.appendingPathComponent(file)
                    try FileManager.default.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
                    try FileManager.default.copyItem(at: Self.root.appendingPathComponent(file), to: target)
                }
                let port = try LocalExchangeRun.freePort()
                let prefix = "rb_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(10).lowercased()
                let binaries = URL(fileURLWithPath: TestEnvironment.exchanger).deletingLastPathComponent().path
                var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("EXCHANGER_") && !$0.key.hasPrefix("AWS_") }
                environment["PATH"] = binaries + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
                environment["EXCHANGER_DATABASE_URL"] = brokerURL
                environment["EXCHANGER_CASE_DATABASE_URL"] = postgresURL(try TestEnvironment.postgresURL(), database: "{database}")
                environment["EXCHANGER_CASE_DATABASE_PREFIX"] = prefix
                environment["EXCHANGER_STORAGE_URL"] = "file://" + directory.appendingPathComponent("objects").path
                environment["EXCHANGER_DOCUMENT_ENGINE_URL"] = "local"
                environment["EXCHANGER_ORCHESTRATOR_PORT"] = String(port)
                environment["EXCHANGER_ORCHESTRATOR_URL"] = "http://127.0.0.1:\(port)"
                let supervisorPort = try LocalExchangeRun.freePort()
                environment["EXCHANGER_SUPERVISOR_HTTP_PORT"] = String(supervisorPort)
                environment["EXCHANGER_SUPERVISOR_URL"] = "http://127.0.0.1:\(supervisorPort)"
                let scriptPath = directory.appendingPathComponent("runbook.sh").path
                try script.write(toFile: scriptPath, atomically: true, encoding: .utf8)
                let child = try ChildProcess(
                    executable: "/bin/bash", arguments: ["-c", #"cd "$0" && exec bash ./runbook.sh 2>&1"#, directory.path],
                    environment: environment)
                let output = try await child.readAll()
                let status = try await child.wait()
                // Whatever happened, nothing of it may outlive the test.
                child.signal(SIGKILL, group: true)
                let log = (try? String(contentsOfFile: directory.appendingPathComponent("supervisor.log").path, encoding: .utf8)) ?? ""
                #expect(status == 0, "the runbook failed:\n\(output)\n--- supervisor.log (last 40 lines) ---\n\(log.split(separator: "\n").suffix(40).joined(separator: "\n"))")
                #expect(output.contains("FINISHED: 20 documents, 20 copied, 0 not found, 0 failed"), "\(output)")
                #expect(output.contains("verified   exact"), "\(output)")
                #expect(output.contains("PROCESSES"), "\(output)")
                #expect(output.contains("orchestrator:0") && output.contains("status-update:0"), "exchanger ctl status lists the global programs: \(output)")
                #expect(output.contains("s3-copy 1-4 -> 1-2") || output.contains("s3-copy 1-4 -> 0-2"), "\(output)")
                #expect(output.contains("CANCELLED"), "\(output)")
                // The third exchange leaves document 3 behind; its retry delivers it and verifies exact.
                #expect(output.contains("FINISHED: 5 documents, 4 copied, 1 not found, 0 failed"), "\(output)")
                #expect(output.contains(#""leftBehind":{"failed":[],"notFound":["#), "\(output)")
                #expect(output.contains("FINISHED: 1 documents, 1 copied, 0 not found, 0 failed"), "\(output)")
                #expect(output.components(separatedBy: "verified   exact").count - 1 == 2, "both verifications are exact: \(output)")
                for caseID: Int64 in [41, 42, 43, 44] {
                    try? await dropCaseDatabase(prefix: prefix, caseID: caseID)
                }
            }
        }
    }

    private func dropCaseDatabase(prefix: String, caseID: Int64) async throws {
        let template = postgresURL(try TestEnvironment.postgresURL(), database: "{database}")
        try await CaseDatabases(locator: try CaseDatabaseLocator(template: template, prefix: prefix)).drop(caseID: caseID)
    }
}

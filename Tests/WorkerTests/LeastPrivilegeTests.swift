import Broker
import Deployments
import ExchangerTestSupport
import Foundation
import Logging
import Testing
@testable import WorkerRuntime

/// The roles of docs/postgres-roles.sql are enough for what each program does, and no more.
@Suite struct LeastPrivilegeTests {
    /// The statements of the script's worker role, for a role named `role`.
    static func workerStatements(role: String) throws -> [String] {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/postgres-roles.sql")
        let text = try String(contentsOf: script, encoding: .utf8)
        let worker = try #require(text.components(separatedBy: "CREATE ROLE exchanger_orchestrator").first)
        return worker.split(separator: "\n").filter { !$0.hasPrefix("--") }.joined(separator: "\n")
            .split(separator: ";").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
            // The role's name as a whole word (a table such as exchanger_worker_presence keeps its own).
            .map { $0.replacingOccurrences(of: #"\bexchanger_worker\b"#, with: role, options: .regularExpression) }
    }

    @Test func aWorkerRunsUnderTheWorkerRoleAndCannotChangeQueues() async throws {
        try await withTestBroker(.postgres) { admin, url in
            try await admin.createQueue("lp-dlq")
            try await admin.createQueue("lp", attributes: QueueAttributes(maxReceiveCount: 1, deadLetterQueue: "lp-dlq"))
            try await admin.createQueue("lp-next")
            let role = "exchanger_worker_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(12).lowercased()
            for statement in try Self.workerStatements(role: role) {
                try await admin.transaction { tx in _ = try await tx.query(statement) }
            }
            // The same server and database, logged in as the role.
            let roleURL = url.replacingOccurrences(of: #"://[^@/]*@"#, with: "://\(role)@", options: .regularExpression)
            #expect(roleURL.contains("://\(role)@"))
            let broker = try await Broker.connect(url: roleURL)
            do {
                _ = try await admin.sendBatch("lp", try (0..<4).map { try script($0, "ok") } + [try script(9, "permanent")])
                let worker = Worker(broker: broker, handler: ScriptedHandler(next: "lp-next"), configuration: testConfiguration("lp"),
                                    stager: PayloadStager(store: nil), logger: Logger(label: "test"))
                let settled = try await runWorker(worker) {
                    let counters = try await admin.counters(["lp", "lp-next", "lp-dlq"])
                    return counters["lp"]?.total == 0 && counters["lp-next"]?.visible == 4 && counters["lp-dlq"]?.visible == 1
                }
                #expect(settled, "received, handled, sent on, published, acknowledged and dead-lettered as the worker role")
                #expect(try await eventLog(admin).count == 4)
                _ = try await broker.purgeExpired()
                // Its presence, as every worker process keeps it (exchanger ps lists it).
                let store = DeploymentStore(broker: broker)
                let presence = WorkerPresence(id: "lp-\(role)", hostname: "host-a", pid: getpid(), program: "exchanger-s3-copy", queue: "lp")
                try await store.announce(presence, ttl: .seconds(10))
                #expect(try await store.renewPresence(id: presence.id, ttl: .seconds(10)))
                #expect(try await DeploymentStore(broker: admin).presences().contains { $0.id == presence.id })
                try await store.withdrawPresence(id: presence.id)
                #expect(try await !DeploymentStore(broker: admin).presences().contains { $0.id == presence.id })
                // Not the control plane's.
                await #expect(throws: (any Error).self) { try await broker.createQueue("forbidden") }
                await #expect(throws: (any Error).self) { try await broker.deleteQueue("lp-next") }
                await #expect(throws: (any Error).self) { _ = try await store.deployments() }
            } catch {
                await broker.close()
                throw error
            }
            await broker.close()
            try await admin.transaction { tx in
                _ = try await tx.query("DROP OWNED BY \(role)")
                _ = try await tx.query("DROP ROLE \(role)")
            }
        }
    }
}

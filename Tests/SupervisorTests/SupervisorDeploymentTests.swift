import Broker
import Deployments
import ExchangerEvents
import ExchangerTestSupport
import Foundation
import ObjectStorage
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Per-exchange deployments written to a real PostgreSQL broker and run by real supervisor
/// processes: autoscaling on a real queue's depth, stopping, takeover, splitting the work.
@Suite("Supervisor deployments", .serialized)
struct SupervisorDeploymentTests {
    /// - Parameters:
    ///   - mode: the test child's mode for the workers (`ignore-term`: only SIGKILL ends them).
    ///   - stopWait: their `stopwaitsecs`.
    static func config(identifier: String, lease: Int = 3, window: Int = 2, mode: String = "sleep", stopWait: Int = 2) -> String {
        """
        [supervisor]
        identifier = \(identifier)
        http_port = 0
        reconcile_interval = 0.5
        lease_seconds = \(lease)
        scale_down_window = \(window)

        [program:worker]
        scope = per-exchange
        command = \(SupervisorHarness.child) \(mode) %(queue)s
        min_procs = 1
        max_procs = 4
        messages_per_proc = 100
        stopwaitsecs = \(stopWait)
        """
    }

    static func live(_ store: DeploymentStore, deployment: String? = nil, exchange: String? = nil) async throws -> [WorkerRecord] {
        try await store.liveWorkers(deploymentID: deployment, exchangeID: exchange).filter { $0.pid != nil }
    }

    static func waitFor(_ what: String, timeout: Duration = .seconds(20), _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("timed out waiting for \(what)")
        throw TestSetupError(message: "timed out waiting for \(what)")
    }

    static func message(_ index: Int) -> OutgoingMessage { OutgoingMessage(body: "{\"n\":\(index)}") }

    @Test("a crash-looping global program shows in `exchanger ps` as FAILED, between its processes too")
    func failedGlobalProgramIsListed() async throws {
        try await withTestBroker(.sqlite) { broker, url in
            try await withTemporaryDirectory { directory in
                let store = DeploymentStore(broker: broker)
                let supervisor = try SupervisorHarness(config: """
                    [supervisor]
                    identifier = looping
                    http_port = 0
                    reconcile_interval = 0.3

                    [program:looper]
                    command = \(SupervisorHarness.child) exit 1
                    startsecs = 0
                    crashloop_deaths = 2
                    crashloop_window = 60
                    backoff_max = 5
                    """, directory: directory, arguments: ["--database", url])
                defer { Task { await supervisor.cleanUp() } }
                try await Self.waitFor("looper reported FAILED without a process") {
                    try await store.workers().contains { $0.program == "looper" && $0.state == .failed && $0.pid == nil }
                }
                let (status, output) = try await runExchanger(["ps", "--database", url])
                #expect(status == 0, "\(output)")
                let row = output.split(separator: "\n").first { $0.hasPrefix("looping") && $0.contains("looper") }
                #expect(row?.contains("FAILED") == true, "\(output)")
                #expect(try await supervisor.stop() == 0)
            }
        }
    }

    @Test("`exchanger scale` changes a running deployment's bounds; supervisor.conf's max still caps it; a stopped one stays stopped")
    func scaleCommandChangesBounds() async throws {
        try await withTestBroker(.postgres) { broker, url in
            try await withTemporaryDirectory { directory in
                let store = DeploymentStore(broker: broker)
                _ = try await broker.createQueue("doc_exch_s3_copy_queue_8_1")
                _ = try await broker.sendBatch("doc_exch_s3_copy_queue_8_1", (0..<900).map(Self.message))
                let supervisor = try SupervisorHarness(
                    config: Self.config(identifier: "scaled"), directory: directory, arguments: ["--database", url])
                defer { Task { await supervisor.cleanUp() } }
                _ = try await store.upsert(DeploymentSpec(
                    id: "job-8/worker", exchangeID: "job-8", program: "worker", queue: "doc_exch_s3_copy_queue_8_1",
                    minProcs: 1, maxProcs: 1, messagesPerProc: 100))
                try await Self.waitFor("1 worker") { try await Self.live(store, deployment: "job-8/worker").count == 1 }
                try await Task.sleep(for: .seconds(1.5))
                #expect(try await Self.live(store, deployment: "job-8/worker").count == 1, "max 1: never more, with 900 waiting")

                // Raised to 3 while it runs: 3 workers.
                let raised = try await runExchanger(["scale", "job-8", "worker", "--max", "3", "--database", url])
                #expect(raised.status == 0, "\(raised.output)")
                #expect(raised.output.contains("worker 1-1 -> 1-3"), "\(raised.output)")
                try await Self.waitFor("3 workers") { try await Self.live(store, deployment: "job-8/worker").count == 3 }

                // Above supervisor.conf's max_procs (4): the tighter bound wins.
                #expect(try await runExchanger(["scale", "job-8", "worker", "--min", "6", "--max", "9", "--database", url]).status == 0)
                try await Self.waitFor("4 workers") { try await Self.live(store, deployment: "job-8/worker").count == 4 }
                try await Task.sleep(for: .seconds(1.5))
                #expect(try await Self.live(store, deployment: "job-8/worker").count == 4)
                #expect(try await store.deployment(id: "job-8/worker")?.maxProcs == 9)

                // Refusals: bad bounds (64), an unknown program (1), a stopped deployment (1, and it stays stopped).
                #expect(try await runExchanger(["scale", "job-8", "worker", "--min", "3", "--max", "2", "--database", url]).status == 64)
                let unknown = try await runExchanger(["scale", "job-8", "uploader", "--max", "2", "--database", url])
                #expect(unknown.status == 1)
                #expect(try await store.requestStop(id: "job-8/worker"))
                let stopped = try await runExchanger(["scale", "job-8", "worker", "--max", "4", "--database", url])
                #expect(stopped.status == 1)
                #expect(try await store.deployment(id: "job-8/worker")?.desiredState == .stopped)
                try await Self.waitFor("no workers") { try await Self.live(store, deployment: "job-8/worker").isEmpty }
                #expect(try await supervisor.stop() == 0)
            }
        }
    }

    @Test func scalesOnQueueDepthAndStopsOnRequest() async throws {
        try await withTestBroker(.postgres) { broker, url in
            try await withTemporaryDirectory { directory in
                let store = DeploymentStore(broker: broker)
                _ = try await broker.createQueue("doc_exch_s3_copy_queue_7_1")
                _ = try await broker.sendBatch("doc_exch_s3_copy_queue_7_1", (0..<450).map(Self.message))
                let supervisor = try SupervisorHarness(
                    config: Self.config(identifier: "scaler"), directory: directory, arguments: ["--database", url])
                defer { Task { await supervisor.cleanUp() } }
                _ = try await store.upsert(DeploymentSpec(
                    id: "job-1/worker", exchangeID: "job-1", program: "worker", queue: "doc_exch_s3_copy_queue_7_1",
                    minProcs: 1, maxProcs: 4, messagesPerProc: 100))

                // 450 visible / 100 per process = 5, capped at max 4: up at once.
                try await Self.waitFor("4 workers") { try await Self.live(store, deployment: "job-1/worker").count == 4 }
                let four = try await Self.live(store, deployment: "job-1/worker")
                #expect(Set(four.map(\.instance)) == [0, 1, 2, 3])
                #expect(four.allSatisfy { $0.supervisorID == "scaler" && $0.pid.map(Processes.alive) == true })
                // The queue name reached the worker's command line.
                let ready = try await supervisor.waitFor("a worker line with the deployment") { $0.string("deploymentId") == "job-1/worker" && $0.string("msg") == "ready" }
                #expect(ready.string("exchangeId") == "job-1")
                let row = try await store.deployment(id: "job-1/worker")
                #expect(row?.owner == "scaler")
                // `exchanger ps` shows the same.
                let ps = try await runExchanger(["ps", "--database", url, "--json"])
                #expect(ps.status == 0)
                let object = try JSONSerialization.jsonObject(with: Data(ps.output.utf8)) as? [String: Any]
                let psWorkers = (object?["workers"] as? [[String: Any]]) ?? []
                #expect(psWorkers.filter { $0["deploymentId"] as? String == "job-1/worker" && $0["live"] as? Bool == true }.count == 4)
                let psDeployments = (object?["deployments"] as? [[String: Any]]) ?? []
                #expect(psDeployments.first?["owner"] as? String == "scaler")
                let table = try await runExchanger(["ps", "--database", url])
                #expect(table.output.contains("job-1/worker") && table.output.contains("SUPERVISORS") && table.output.contains("scaler"))

                // Empty queue: down to min 1 after the 2 s stabilisation window, not before.
                _ = try await broker.purge("doc_exch_s3_copy_queue_7_1")
                try await Task.sleep(for: .seconds(1))
                #expect(try await Self.live(store, deployment: "job-1/worker").count == 4)
                try await Self.waitFor("1 worker") { try await Self.live(store, deployment: "job-1/worker").count == 1 }
                let remaining = try await Self.live(store, deployment: "job-1/worker")
                #expect(remaining.first?.instance == 0)
                // The three scaled away were stopped, not killed mid-work, and not restarted.
                let stopped = four.filter { $0.instance > 0 }.compactMap(\.pid)
                #expect(try await Processes.waitGone(stopped))

                // More work: up again at once.
                _ = try await broker.sendBatch("doc_exch_s3_copy_queue_7_1", (0..<150).map(Self.message))
                try await Self.waitFor("2 workers", timeout: .seconds(5)) { try await Self.live(store, deployment: "job-1/worker").count == 2 }

                // Stop on request: no worker left, the deployment is released and can be removed.
                _ = try await store.requestStop(id: "job-1/worker")
                #expect(try await store.waitUntilNoWorkers(exchangeID: "job-1", timeout: .seconds(15)))
                try await Self.waitFor("the release") { try await store.deployment(id: "job-1/worker")?.owner == nil }
                #expect(try await store.remove(id: "job-1/worker"))
                #expect(try await store.deployments(exchangeID: "job-1").isEmpty)

                #expect(try await supervisor.stop() == 0)
                #expect(try await store.supervisors().isEmpty)
            }
        }
    }

    @Test func aSecondSupervisorTakesOverAfterTheLeaseExpires() async throws {
        try await withTestBroker(.postgres) { broker, url in
            try await withTemporaryDirectory { directory in
                let store = DeploymentStore(broker: broker)
                _ = try await broker.createQueue("doc_exch_s3_copy_queue_8_1")
                _ = try await store.upsert(DeploymentSpec(
                    id: "job-2/worker", exchangeID: "job-2", program: "worker", queue: "doc_exch_s3_copy_queue_8_1",
                    minProcs: 2, maxProcs: 2))
                let firstDirectory = directory.appendingPathComponent("a")
                let secondDirectory = directory.appendingPathComponent("b")
                try FileManager.default.createDirectory(at: firstDirectory, withIntermediateDirectories: true)
                try FileManager.default.createDirectory(at: secondDirectory, withIntermediateDirectories: true)
                let first = try SupervisorHarness(config: Self.config(identifier: "first", lease: 2), directory: firstDirectory, arguments: ["--database", url])
                defer { Task { await first.cleanUp() } }
                try await Self.waitFor("2 workers of the first") {
                    try await Self.live(store, deployment: "job-2/worker").filter { $0.supervisorID == "first" }.count == 2
                }
                let second = try SupervisorHarness(config: Self.config(identifier: "second", lease: 2), directory: secondDirectory, arguments: ["--database", url])
                defer { Task { await second.cleanUp() } }
                try await Self.waitFor("the second registered") { try await store.supervisors().count == 2 }
                // A live lease is never stolen.
                try await Task.sleep(for: .seconds(1.5))
                #expect(try await store.deployment(id: "job-2/worker")?.owner == "first")

                let orphaned = try await Self.live(store, deployment: "job-2/worker").compactMap(\.pid)
                first.signal(SIGKILL)
                _ = try await first.waitForExit()
                // Its workers die with it (parent-death signal)…
                #expect(try await Processes.waitGone(orphaned, timeout: .seconds(5)))
                // …and after its lease expires the second takes the deployment over.
                try await Self.waitFor("the takeover", timeout: .seconds(20)) {
                    let workers = try await Self.live(store, deployment: "job-2/worker")
                    return workers.count == 2 && workers.allSatisfy { $0.supervisorID == "second" }
                }
                #expect(try await store.deployment(id: "job-2/worker")?.owner == "second")
                #expect(try await store.supervisors().map(\.id) == ["second"])
                #expect(try await second.stop() == 0)
            }
        }
    }

    @Test func supervisorsSplitTheDeployments() async throws {
        try await withTestBroker(.postgres) { broker, url in
            try await withTemporaryDirectory { directory in
                let store = DeploymentStore(broker: broker)
                var harnesses: [SupervisorHarness] = []
                for name in ["left", "right"] {
                    let folder = directory.appendingPathComponent(name)
                    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                    harnesses.append(try SupervisorHarness(config: Self.config(identifier: name), directory: folder, arguments: ["--database", url]))
                }
                defer { for harness in harnesses { Task { await harness.cleanUp() } } }
                try await Self.waitFor("both registered") { try await store.supervisors().count == 2 }
                for index in 0..<4 {
                    _ = try await broker.createQueue("doc_exch_s3_copy_queue_9_\(index)")
                    _ = try await store.upsert(DeploymentSpec(
                        id: "job-3-\(index)/worker", exchangeID: "job-3-\(index)", program: "worker", queue: "doc_exch_s3_copy_queue_9_\(index)",
                        minProcs: 1, maxProcs: 1))
                }
                try await Self.waitFor("4 workers") { try await Self.live(store).count == 4 }
                let owners = try await store.deployments().compactMap(\.owner)
                #expect(owners.filter { $0 == "left" }.count == 2, "owners \(owners)")
                #expect(owners.filter { $0 == "right" }.count == 2, "owners \(owners)")
                for harness in harnesses { #expect(try await harness.stop() == 0) }
                // A clean stop releases everything at once.
                #expect(try await store.deployments().allSatisfy { $0.owner == nil })
                #expect(try await Self.live(store).isEmpty)
            }
        }
    }

    /// The shipped `supervisor.conf`, unchanged: the global programs start, and an s3-copy
    /// deployment written to the broker gets real `exchanger-s3-copy` workers that copy every
    /// document and hand each on once; then the deployment stops with no worker left.
    @Test func theShippedConfigurationRunsGlobalProgramsAndAnS3CopyDeployment() async throws {
        try await withTestBroker(.postgres) { broker, url in
            try await withTemporaryDirectory { directory in
                let storage = directory.appendingPathComponent("objects")
                let cases = directory.appendingPathComponent("cases")
                try FileManager.default.createDirectory(at: storage, withIntermediateDirectories: true)
                try FileManager.default.createDirectory(at: cases, withIntermediateDirectories: true)
                let store = try await ObjectStorage.open("file://\(storage.path)", environment: [:])
                let documents: [Int64] = Array(1...60)
                for document in documents {
                    try await store.put(
                        try CaseKeys.documentFile(caseID: 10, documentID: document, fileName: "\(document).pdf"),
                        Data(repeating: UInt8(truncatingIfNeeded: document), count: 2048))
                }
                let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                let config = try String(contentsOf: repository.appendingPathComponent("supervisor.conf"), encoding: .utf8)
                let supervisor = try SupervisorHarness(
                    config: config, directory: directory,
                    arguments: ["--database", url, "--http-port", "0", "--identifier", "shipped"],
                    environment: [
                        "EXCHANGER_STORAGE_URL": "file://\(storage.path)",
                        "EXCHANGER_CASE_DATABASE_URL": "sqlite://\(cases.path)/{database}.sqlite",
                        "EXCHANGER_API_TOKENS": "shipped-test-token", "EXCHANGER_ORCHESTRATOR_PORT": "0",
                        "PATH": URL(fileURLWithPath: TestEnvironment.executable("exchanger-s3-copy")).deletingLastPathComponent().path + ":/usr/bin:/bin",
                    ])
                defer { Task { await supervisor.cleanUp() } }
                for program in ["status-update", "dlq"] {
                    try await supervisor.waitFor("\(program) started") { $0.string("program") == program && $0.string("msg") == "worker started" }
                }
                try await supervisor.waitFor("orchestrator started") {
                    $0.string("program") == "orchestrator" && $0.string("msg") == "orchestrator started"
                }

                let queue = "doc_exch_s3_copy_queue_20_5"
                _ = try await broker.createQueue(queue, attributes: QueueAttributes(deadLetterQueue: "exch-dlq"))
                _ = try await broker.createQueue("uploader")
                let deploymentStore = DeploymentStore(broker: broker)
                _ = try await deploymentStore.upsert(DeploymentSpec(
                    id: "job-e2e/s3-copy", exchangeID: "job-e2e", program: "s3-copy", queue: queue, minProcs: 1, maxProcs: 4, messagesPerProc: 20))
                _ = try await broker.sendBatch(queue, try documents.map { document in
                    try DocumentTask(
                        jobID: "job-e2e", sourceCaseID: 10, caseID: 20, batchID: 5, sourceDocumentID: document, documentID: document + 1000,
                        files: [DocumentFile(name: "\(document).pdf", kind: .rendition)], requiresAnnotations: false, includeNatives: false,
                        routes: [DocumentTask.Route.uploader: "uploader"]
                    ).outgoing()
                })

                try await Self.waitFor("every document handed on", timeout: .seconds(60)) {
                    let counters = try await broker.counters(["uploader", queue])
                    return counters["uploader"]?.visible == documents.count && counters[queue].map { $0.visible + $0.inFlight } == 0
                }
                for document in documents {
                    let copied = try await store.get(try CaseKeys.documentFile(caseID: 20, documentID: document + 1000, fileName: "\(document).pdf"))
                    #expect(copied == Data(repeating: UInt8(truncatingIfNeeded: document), count: 2048))
                }
                let handedOn = try await broker.drain("uploader", count: documents.count)
                #expect(Set(handedOn.compactMap { try? EventCoding.decoder.decode(DocumentTask.self, from: Data($0.body.utf8)).documentID }).count == documents.count)
                #expect(try await broker.counters(["exch-dlq"])["exch-dlq"]?.visible == 0)
                // Workers were s3-copy processes the supervisor started for the deployment.
                #expect(supervisor.all { $0.string("program") == "s3-copy" && $0.string("deploymentId") == "job-e2e/s3-copy" && $0.string("msg") == "worker started" }.count >= 1)

                _ = try await deploymentStore.requestStop(id: "job-e2e/s3-copy")
                #expect(try await deploymentStore.waitUntilNoWorkers(exchangeID: "job-e2e", timeout: .seconds(30)))
                #expect(try await supervisor.stop() == 0)
            }
        }
    }

    /// PostgreSQL restarted under a running supervisor: the workers it runs are not disturbed
    /// (same pids), and once the database is back the deployment passes resume — a deployment
    /// written after the restart gets its workers.
    @Test func aDatabaseRestartLeavesWorkersAloneAndPassesResume() async throws {
        try await RestartablePostgres.withDatabase { url in
            try await withTemporaryDirectory { directory in
                let broker = try await Broker.connect(url: url)
                defer { Task { await broker.close() } }
                let store = DeploymentStore(broker: broker)
                _ = try await broker.createQueue("doc_exch_s3_copy_queue_30_1")
                _ = try await broker.createQueue("doc_exch_s3_copy_queue_30_2")
                let supervisor = try SupervisorHarness(
                    config: Self.config(identifier: "restarted", lease: 30), directory: directory, arguments: ["--database", url])
                defer { Task { await supervisor.cleanUp() } }
                _ = try await store.upsert(DeploymentSpec(
                    id: "job-r1/worker", exchangeID: "job-r1", program: "worker", queue: "doc_exch_s3_copy_queue_30_1", minProcs: 2, maxProcs: 2))
                try await Self.waitFor("2 workers") { try await Self.live(store, deployment: "job-r1/worker").count == 2 }
                let before = Set(try await Self.live(store, deployment: "job-r1/worker").compactMap(\.pid))

                try await RestartablePostgres.restart()
                try await Task.sleep(for: .seconds(1))
                #expect(before.allSatisfy(Processes.alive), "workers must not be disturbed by the database restart")

                // The pool reconnects; passes resume.
                var upserted = false
                try await Self.waitFor("the upsert after the restart", timeout: .seconds(30)) {
                    do {
                        _ = try await store.upsert(DeploymentSpec(
                            id: "job-r2/worker", exchangeID: "job-r2", program: "worker", queue: "doc_exch_s3_copy_queue_30_2", minProcs: 1, maxProcs: 1))
                        upserted = true
                    } catch {}
                    return upserted
                }
                try await Self.waitFor("the new deployment's worker", timeout: .seconds(30)) {
                    (try? await Self.live(store, deployment: "job-r2/worker").count) == 1
                }
                let after = Set(try await Self.live(store, deployment: "job-r1/worker").compactMap(\.pid))
                #expect(after == before)
                #expect(try await supervisor.stop() == 0)
            }
        }
    }

    /// A worker that stops on SIGTERM, and one that ignores it with a `stopwaitsecs` (30 s) far
    /// beyond the lease: the fence's SIGKILL comes before the lease can expire all the same.
    @Test(arguments: [("sleep", 2), ("ignore-term", 30)])
    func aSupervisorCutOffFromTheDatabaseFencesItselfBeforeItsLeaseExpires(mode: String, stopWait: Int) async throws {
        try await RestartablePostgres.withDatabase { url in
            try await withTemporaryDirectory { directory in
                let broker = try await Broker.connect(url: url)
                defer { Task { await broker.close() } }
                let store = DeploymentStore(broker: broker)
                _ = try await broker.createQueue("doc_exch_s3_copy_queue_31_1")
                // lease 6 s: the fence comes at 3 s (half), checked every 0.5 s; the SIGKILL at most
                // 1.5 s later (6 − 3 − 0.5 − 1).
                let supervisor = try SupervisorHarness(
                    config: Self.config(identifier: "fenced", lease: 6, mode: mode, stopWait: stopWait), directory: directory,
                    arguments: ["--database", url])
                defer { Task { await supervisor.cleanUp() } }
                _ = try await store.upsert(DeploymentSpec(
                    id: "job-f1/worker", exchangeID: "job-f1", program: "worker", queue: "doc_exch_s3_copy_queue_31_1", minProcs: 1, maxProcs: 1))
                try await Self.waitFor("the worker") { try await Self.live(store, deployment: "job-f1/worker").count == 1 }
                let pids = Set(try await Self.live(store, deployment: "job-f1/worker").compactMap(\.pid))
                await broker.close()

                try await RestartablePostgres.stop()
                let cut = ContinuousClock.now
                var stoppedAfter: Duration?
                while ContinuousClock.now - cut < .seconds(15) {
                    if !pids.contains(where: Processes.alive) {
                        stoppedAfter = ContinuousClock.now - cut
                        break
                    }
                    try await Task.sleep(for: .milliseconds(100))
                }
                let stopped = try #require(stoppedAfter, "the cut-off supervisor's worker kept running")
                #expect(stopped < .seconds(6), "stopped \(stopped) after the cut: before the 6 s lease could expire")
                let fenceLine = supervisor.records.first { ($0["msg"] as? String)?.hasPrefix("cannot renew this supervisor's lease; fencing") == true }
                #expect(fenceLine?["level"] as? String == "warning")
                let failures = supervisor.records.filter { ($0["msg"] as? String)?.hasPrefix("deployment pass failed") == true && $0["level"] as? String == "error" }
                #expect(failures.count == 1, "the failing passes are reported once, not every 0.5 s: \(failures.count)")

                try await RestartablePostgres.start()
                let again = try await Broker.connect(url: url)
                defer { Task { await again.close() } }
                let store2 = DeploymentStore(broker: again)
                try await Self.waitFor("the worker back after the database returned", timeout: .seconds(40)) {
                    (try? await Self.live(store2, deployment: "job-f1/worker").count) == 1
                }
                #expect(try await supervisor.stop() == 0)
            }
        }
    }
}

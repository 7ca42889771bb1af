import Broker
import CaseData
import CaseDatabase
import Deployments
import ExchangeFleet
import ExchangerTestSupport
import Foundation
import Logging
import ObjectStorage
import ProcessSupport
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A workspace for whole-exchange tests: a fresh broker database, case databases with a fresh
/// prefix (PostgreSQL on the test server, or SQLite files), and a file store or a fresh moto bucket;
/// the local document engine unless `documentEngineURL` names another (with `engineEnvironment`,
/// e.g. a Nutrient token, given to every process of the fleet).
struct FleetFixture: Sendable {
    let workspace: FleetWorkspace
    let databases: CaseDatabases
    let logger: Logger

    enum Storage { case file, s3 }

    static func with<T: Sendable>(
        _ backend: Backend, storage: Storage = .file, documentEngineURL: String? = nil, engineEnvironment: [String: String] = [:],
        restartableBroker: Bool = false, _ body: (FleetFixture) async throws -> T
    ) async throws -> T {
        // `restartableBroker`: the broker database on the restartable server (held alone), for tests
        // that restart PostgreSQL under the fleet.
        let withBrokerDatabase: ((String) async throws -> T) async throws -> T = { body in
            restartableBroker ? try await RestartablePostgres.withDatabase(body) : try await withTestDatabase(backend, body)
        }
        return try await withBrokerDatabase { brokerURL in
            try await withTemporaryDirectory { directory in
                var environment: [String: String] = ["EXCHANGER_DATABASE_URL": brokerURL]
                if let documentEngineURL { environment["EXCHANGER_DOCUMENT_ENGINE_URL"] = documentEngineURL }
                var extra: [String: String] = engineEnvironment
                let prefix = "e2e" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(10).lowercased()
                if backend == .postgres {
                    let server = try TestEnvironment.postgresURL()
                    environment["EXCHANGER_CASE_DATABASE_URL"] = postgresURL(server, database: "{database}")
                    environment["EXCHANGER_CASE_DATABASE_PREFIX"] = prefix
                }
                var bucketStore: S3ObjectStore?
                if storage == .s3 {
                    let endpoint = try TestEnvironment.required("EXCHANGER_TEST_S3_ENDPOINT")
                    extra.merge([
                        "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
                        "AWS_ENDPOINT_URL_S3": endpoint,
                    ]) { _, aws in aws }
                    let bucket = "exch-e2e-" + UUID().uuidString.lowercased().prefix(8)
                    environment["EXCHANGER_STORAGE_URL"] = "s3://\(bucket)"
                    let opened = try await ObjectStorage.open("s3://\(bucket)", environment: extra)
                    bucketStore = try #require(opened as? S3ObjectStore)
                    try await bucketStore?.createBucket()
                }
                var workspace = try FleetWorkspace(directory: directory.path + "/workspace", environment: environment)
                workspace.extraEnvironment = extra
                try workspace.prepare()
                let databases = try CaseDatabases(urlTemplate: workspace.caseDatabaseURL, prefix: workspace.caseDatabasePrefix)
                var logger = Logger(label: "test.e2e")
                logger.logLevel = .warning
                let fixture = FleetFixture(workspace: workspace, databases: databases, logger: logger)
                do {
                    let result = try await body(fixture)
                    await fixture.cleanUp(bucketStore)
                    return result
                } catch {
                    await fixture.cleanUp(bucketStore)
                    throw error
                }
            }
        }
    }

    private func cleanUp(_ bucketStore: S3ObjectStore?) async {
        if workspace.caseDatabasePrefix != nil {
            for caseID: Int64 in [1001, 1002, 1003, 1004, 1005, 9999] { try? await databases.drop(caseID: caseID) }
        }
        if let bucketStore {
            if let objects = try? await collect(bucketStore.list(prefix: "")) {
                for object in objects { try? await bucketStore.delete(object.key) }
            }
            try? await bucketStore.shutdown()
        }
    }

    private func collect(_ sequence: some AsyncSequence<ObjectInfo, any Error>) async throws -> [ObjectInfo] {
        var all: [ObjectInfo] = []
        for try await object in sequence { all.append(object) }
        return all
    }

    /// Seeds the source case 1001 with `documents` documents and creates the destination 1002.
    /// With `annotations`, every document also carries annotations of all seven kinds in the
    /// workspace's document engine.
    func seed(documents: Int, annotations: Bool = false) async throws -> DemoCase {
        try await DemoCase.prepare(
            workspace: workspace, documents: documents, sourceCaseID: 1001, destinationCaseID: 1002, batchID: 7,
            annotations: annotations, logger: logger
        ).demo
    }

    /// The exact verification of `jobID`.
    func verify(_ jobID: String) async throws -> ExchangeVerification {
        try await LocalExchangeRun(workspace: workspace, logger: logger).verify(jobID)
    }

    /// What is left of exchange `jobID`: its queues, subscriptions, deployments and live workers.
    func leftovers(_ jobID: String) async throws -> [String] {
        let broker = try await Broker.connect(url: workspace.brokerURL)
        defer { Task { await broker.close() } }
        var left: [String] = []
        for queue in try await broker.listQueues(QueueFilter(exchangeID: jobID)) { left.append("queue \(queue.name)") }
        for subscription in try await broker.subscriptions() where subscription.queue.contains("_\(1002)_") || subscription.queue.contains("_\(1003)_") {
            left.append("subscription of \(subscription.queue)")
        }
        let deployments = DeploymentStore(broker: broker)
        for deployment in try await deployments.deployments(exchangeID: jobID) { left.append("deployment \(deployment.id)") }
        for worker in try await deployments.liveWorkers(exchangeID: jobID) { left.append("worker pid \(worker.pid.map(String.init) ?? "?")") }
        return left
    }

    /// The number of events of `type` for `jobID` in the event log.
    func eventCount(_ type: String, jobID: String) async throws -> Int {
        let broker = try await Broker.connect(url: workspace.brokerURL)
        defer { Task { await broker.close() } }
        let sql = broker.dialect == .postgres
            ? "SELECT count(*) AS n FROM broker_events WHERE attributes->'eventType'->>'value' = $1 AND attributes->'jobId'->>'value' = $2"
            : "SELECT count(*) AS n FROM broker_events WHERE json_extract(attributes, '$.eventType.value') = $1 AND json_extract(attributes, '$.jobId.value') = $2"
        return try await broker.transaction { tx in
            Int(try await tx.query(sql, [.text(type), .text(jobID)]).first?["n"].int64 ?? -1)
        }
    }

    /// The exchange's stored state.
    func state(_ jobID: String) async throws -> String? {
        let broker = try await Broker.connect(url: workspace.brokerURL)
        defer { Task { await broker.close() } }
        return try await broker.transaction { tx in
            try await tx.query("SELECT state FROM exchanges WHERE job_id = $1", [.text(jobID)]).first?["state"].string
        }
    }

    /// The destination batch's status row as status-update wrote it.
    func batchStatus(caseID: Int64, batchID: Int64) async throws -> BatchStatus? {
        let settings = try CaseDatabaseSettings(locator: databases.locator)
        let store = BatchStatusStore(settings: settings)
        defer { Task { await store.shutdown() } }
        return try await store.status(caseID: caseID, batchID: batchID)?.status
    }

    /// Starts the fleet's supervisor (without the orchestrator unless `orchestrator` is true).
    func startFleet(orchestrator: Bool = false, port: Int = 0) throws -> FleetSupervisor {
        var configuration = FleetConfiguration(
            orchestratorPort: port, identifier: "e2e-\(getpid())-\(UInt16.random(in: 0...UInt16.max))",
            supervisorLogPath: workspace.logDirectory + "/supervisor.log")
        configuration.includeOrchestrator = orchestrator
        return try FleetSupervisor.start(workspace: workspace, configuration: configuration, logger: logger)
    }

    /// Runs `body` against this workspace's fleet (its supervisor, without the orchestrator) and
    /// one orchestrator process, ready to answer. Afterwards the orchestrator must exit 0 on
    /// SIGTERM and the fleet stop cleanly; when `body` throws, both are killed and stopped.
    func withFleetAndOrchestrator(
        replica: String, environment: [String: String] = [:], _ body: (OrchestratorClient) async throws -> Void
    ) async throws {
        let fleet = try startFleet()
        let (orchestrator, client) = try startOrchestrator(replica: replica, environment: environment)
        do {
            try await client.waitUntilReady(timeout: .seconds(60))
            try await body(client)
        } catch {
            orchestrator.signal(SIGKILL)
            _ = try? await orchestrator.wait()
            await fleet.stop()
            throw error
        }
        orchestrator.signal(SIGTERM)
        #expect(try await orchestrator.wait(timeout: .seconds(30)) == 0)
        #expect(await fleet.stop() == 0)
    }

    /// Starts an orchestrator process of this workspace on a free port.
    func startOrchestrator(replica: String, environment extra: [String: String] = [:]) throws -> (ChildProcess, OrchestratorClient) {
        let port = try LocalExchangeRun.freePort()
        let token = try String(contentsOfFile: workspace.apiTokenPath, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        var environment = workspace.processEnvironment
        environment["EXCHANGER_ORCHESTRATOR_LEASE_SECONDS"] = "1"
        environment["EXCHANGER_ORCHESTRATOR_CHECK_INTERVAL_SECONDS"] = "0.2"
        environment["EXCHANGER_ORCHESTRATOR_POLL_SECONDS"] = "0.1"
        environment["EXCHANGER_ORCHESTRATOR_COPY_RETRY_DELAY_SECONDS"] = "0.05"
        environment["EXCHANGER_ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS"] = "5"
        environment.merge(extra) { _, new in new }
        let log = workspace.logDirectory + "/orchestrator-\(replica).log"
        let child = try ChildProcess(
            executable: "/bin/sh",
            arguments: ["-c", #"exec "$0" --host 127.0.0.1 --port "$1" --replica-id "$2" >>"$3" 2>&1"#,
                TestEnvironment.executable("exchanger-orchestrator"), String(port), replica, log],
            environment: environment, stdout: .discard)
        return (child, OrchestratorClient(baseURL: "http://127.0.0.1:\(port)", token: token))
    }
}

extension ChildProcess {
    /// Waits for the child's exit for at most `timeout`; then SIGKILLs it, records an issue and
    /// returns nil.
    func wait(timeout: Duration) async throws -> Int32? {
        let fired = Mutex(false)
        let timer = Task {
            try? await Task.sleep(for: timeout)
            if Task.isCancelled { return }
            fired.withLock { $0 = true }
            self.signal(SIGKILL)
        }
        let status = try await wait()
        timer.cancel()
        if fired.withLock({ $0 }) {
            Issue.record("process \(pid) did not exit within \(timeout)")
            return nil
        }
        return status
    }
}

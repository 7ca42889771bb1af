import Broker
import CaseData
import Foundation
import Logging
import ObjectStorage
#if canImport(Glibc)
import Glibc
#endif

/// One exchange on one machine, the way `exchanger run` does it: the broker migrated, the fleet
/// started under a supervisor (orchestrator, global processors, per-exchange workers, all real
/// processes), the request submitted over the orchestrator's HTTP API, its progress watched, the
/// result verified exactly, and the fleet stopped.
public struct LocalExchangeRun: Sendable {
    /// Settings of a run, each with a default.
    public struct Options: Sendable {
        /// How long the exchange may take (default 30 minutes).
        public var timeout: Duration = .seconds(1800)
        /// How long the orchestrator may take to answer `/readyz` (default 60 s).
        public var startTimeout: Duration = .seconds(60)
        /// How often progress is polled (default 250 ms).
        public var pollInterval: Duration = .milliseconds(250)
        /// Verify the result exactly (default true).
        public var verify = true
        /// Most workers per stage (default 2).
        public var maxProcs = 2
        /// Queue depth per worker (default 200).
        public var messagesPerProc = 200
        /// Largest `documentIds` the orchestrator accepts (default 10,000).
        public var maxDocumentIDs = 10_000
        /// Idempotency key of the submission (default: derived by the orchestrator from the request).
        public var idempotencyKey: String?
        /// Every setting at its default.
        public init() {}
    }

    /// What a run did.
    public struct Result: Sendable, Codable {
        /// The exchange's id.
        public var jobId: String
        /// Its final state.
        public var state: String
        /// Why it failed, when it did.
        public var error: String?
        /// Documents of the exchange.
        public var documents: Int?
        /// Documents copied, missing in the source, failed.
        public var copied: Int
        public var notFound: Int
        public var failed: Int
        /// Documents left out because an earlier exchange delivered them (`skipExchanged`).
        public var skipped: Int = 0
        /// The destination ids of the documents that did not arrive (their rows stay).
        public var leftBehind: ExchangeStatus.LeftBehind?
        /// Seconds from the submission to the final state (as the watcher saw it).
        public var exchangeSeconds: Double
        /// Seconds from the start of the fleet to the orchestrator's readiness.
        public var startSeconds: Double
        /// The verification, when it ran.
        public var verification: ExchangeVerification?
        /// The workspace.
        public var workspace: String

        /// FINISHED, and exact when verified.
        public var succeeded: Bool { state == "FINISHED" && (verification?.isExact ?? true) }
    }

    /// The workspace of the run.
    public let workspace: FleetWorkspace
    /// Its settings.
    public let options: Options
    /// The run's own logger (the fleet's processes log into the workspace's `logs/fleet.log`).
    public let logger: Logger

    /// A run in `workspace`.
    public init(workspace: FleetWorkspace, options: Options = .init(), logger: Logger) {
        self.workspace = workspace
        self.options = options
        self.logger = logger
    }

    /// Runs the exchange of `requestJSON` to its end and returns the result; `progress` sees each
    /// polled status, `lineHandler` every log line of the fleet.
    public func run(
        requestJSON: String,
        progress: @escaping @Sendable (ExchangeStatus, Duration) -> Void = { _, _ in },
        lineHandler: (@Sendable (String) -> Void)? = nil
    ) async throws -> Result {
        try workspace.prepare()
        _ = try await Broker.migrate(url: workspace.brokerURL, logger: logger)
        let token = try workspace.writeAPIToken()
        let port = try Self.freePort()
        var configuration = FleetConfiguration(
            orchestratorPort: port, identifier: "run-\(getpid())", supervisorLogPath: workspace.logDirectory + "/supervisor.log")
        configuration.maxProcs = options.maxProcs
        configuration.messagesPerProc = options.messagesPerProc
        configuration.maxDocumentIDs = options.maxDocumentIDs
        let clock = ContinuousClock()
        let started = clock.now
        let supervisor = try FleetSupervisor.start(
            workspace: workspace, configuration: configuration, logger: logger, lineHandler: lineHandler)
        do {
            var client = OrchestratorClient(baseURL: "http://127.0.0.1:\(port)", token: token)
            if let window = try OrchestratorClient.retryWindow(environment: ProcessInfo.processInfo.environment) { client.retryWindow = window }
            try await client.waitUntilReady(timeout: options.startTimeout, stillStarting: { supervisor.exited == nil })
            let ready = clock.now
            let submitted = try await client.submit(requestJSON, idempotencyKey: options.idempotencyKey)
            logger.info("exchange submitted", metadata: ["jobId": "\(submitted.jobId)", "created": "\(submitted.created)"])
            let final = try await client.watch(submitted.jobId, interval: options.pollInterval, timeout: options.timeout) { status in
                progress(status, clock.now - started)
            }
            let ended = clock.now
            var verification: ExchangeVerification?
            if options.verify && final.state == "FINISHED" {
                verification = try await verify(final.jobId)
            }
            await supervisor.stop()
            return Result(
                jobId: final.jobId, state: final.state, error: final.error, documents: final.documents.total,
                copied: final.documents.copied, notFound: final.documents.notFound, failed: final.documents.failed,
                skipped: final.documents.skipped ?? 0, leftBehind: final.leftBehind, exchangeSeconds: Self.seconds(ended - ready), startSeconds: Self.seconds(ready - started),
                verification: verification, workspace: workspace.directory)
        } catch {
            await supervisor.stop()
            throw error
        }
    }

    /// Verifies exchange `jobID` of this workspace exactly.
    public func verify(_ jobID: String) async throws -> ExchangeVerification {
        let locations = ExchangeVerifier.Locations(
            brokerURL: workspace.brokerURL, caseDatabaseURL: workspace.caseDatabaseURL, caseDatabasePrefix: workspace.caseDatabasePrefix,
            storageURL: workspace.storageURL, documentEngineURL: workspace.documentEngineURL, environment: workspace.storageEnvironment)
        return try await ExchangeVerifier.verify(jobID: jobID, at: locations, logger: logger)
    }

    /// A TCP port on 127.0.0.1 that is free now (bound to port 0, then released).
    public static func freePort() throws -> Int {
        let socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socketFD >= 0 else { throw FleetError(.workspace, "socket: \(String(cString: strerror(errno)))") }
        defer { close(socketFD) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw FleetError(.workspace, "bind: \(String(cString: strerror(errno)))") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socketFD, $0, &length) }
        }
        guard named == 0 else { throw FleetError(.workspace, "getsockname: \(String(cString: strerror(errno)))") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func seconds(_ duration: Duration) -> Double {
        let (whole, atto) = duration.components
        return Double(whole) + Double(atto) / 1e18
    }
}

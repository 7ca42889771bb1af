import Foundation
import Orchestrator

/// The settings of the orchestrator's service (HTTP API and work loop), each with a documented
/// default and an environment variable:
///
/// | environment variable | meaning | default |
/// |---|---|---|
/// | `EXCHANGER_ORCHESTRATOR_MAX_BODY_BYTES` | largest accepted request body (larger: 413) | 1048576 |
/// | `EXCHANGER_ORCHESTRATOR_MAX_DOCUMENT_IDS` | most ids `documentIds` may hold | 10000 |
/// | `EXCHANGER_ORCHESTRATOR_LIST_LIMIT` | most exchanges `GET /exchanges` returns (also its default `limit`) | 100 |
/// | `EXCHANGER_ORCHESTRATOR_LEASE_SECONDS` | lease a replica holds on the exchange it works on | 30 |
/// | `EXCHANGER_ORCHESTRATOR_STEP_RETRY_SECONDS` | a failed lifecycle step is retried after this, doubling with each failure in a row, at most the lease | 1 |
/// | `EXCHANGER_ORCHESTRATOR_POLL_SECONDS` | wait of the work loop when there is nothing to claim | 1 |
/// | `EXCHANGER_ORCHESTRATOR_CONCURRENT_EXCHANGES` | exchanges one replica advances at once (lanes of its work loop) | 4 |
/// | `EXCHANGER_ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS` | on SIGTERM, how long the step in hand may still run before it is cancelled | 20 |
/// | `EXCHANGER_ORCHESTRATOR_CHECK_INTERVAL_SECONDS` | completion check interval of a PROCESSING exchange | 2 |
/// | `EXCHANGER_ORCHESTRATOR_COPY_RETRIES` | retries of the case-data copy | 3 |
/// | `EXCHANGER_ORCHESTRATOR_COPY_RETRY_DELAY_SECONDS` | wait before the first copy retry (doubled each time) | 30 |
/// | `EXCHANGER_ORCHESTRATOR_WORKER_STOP_TIMEOUT_SECONDS` | how long teardown waits for the exchange's workers | 600 |
/// | `EXCHANGER_ORCHESTRATOR_EVENT_QUEUE` | the lifecycle event queue (completion checks on events) | exch-orch |
/// | `EXCHANGER_ORCHESTRATOR_EVENT_BATCH` | events received at once from it | 100 |
/// | `EXCHANGER_ORCHESTRATOR_EVENT_WAIT_SECONDS` | long-poll wait on it | 5 |
/// | `EXCHANGER_ORCHESTRATOR_RETRY_AFTER_SECONDS` | `Retry-After` of a 503 while the broker database is unreachable | 2 |
/// | `EXCHANGER_ORCHESTRATOR_LISTED_DOCUMENTS` | most destination document ids each `leftBehind` list of an ended exchange holds | 1000 |
public struct OrchestratorServiceSettings: Sendable, Hashable {
    /// Largest accepted request body in bytes (1 MiB).
    public var maxBodyBytes: Int = 1 << 20
    /// Most exchanges one list returns, and the default `limit` (100).
    public var listLimit: Int = 100
    /// The lease of the exchange a replica works on (30 s).
    public var lease: Duration = .seconds(30)
    /// The first retry delay of a failed lifecycle step (`EXCHANGER_ORCHESTRATOR_STEP_RETRY_SECONDS`).
    public var stepRetryDelay: Duration = .seconds(1)
    /// Exchanges one replica advances at once (4): each lane of the work loop claims and steps its
    /// own exchange, so a slow or retrying step of one never holds up another's steps or a cancel.
    public var concurrentExchanges: Int = 4
    /// The work loop's wait when nothing is claimable (1 s).
    public var pollInterval: Duration = .seconds(1)
    /// How long the step in hand may run on after SIGTERM before it is cancelled (20 s).
    public var shutdownGrace: Duration = .seconds(20)
    /// The `Retry-After` a 503 carries while the broker database is unreachable (2 s).
    public var retryAfter: Duration = .seconds(2)
    /// The orchestrator core's settings (limits, retries, completion checks, teardown).
    public var core = OrchestratorSettings()
    /// The lifecycle event listener's settings (`exch-orch`).
    public var events = LifecycleEventListener.Settings()

    /// Every setting at its default.
    public init() {}

    /// The defaults with the environment's overrides (see the table above).
    /// - Throws: ``OrchestratorServiceError/Code/invalidSetting`` naming the variable.
    public init(environment: [String: String]) throws(OrchestratorServiceError) {
        self.init()
        if let value = try Self.integer(environment, "EXCHANGER_ORCHESTRATOR_MAX_BODY_BYTES", 1024...(64 << 20)) { maxBodyBytes = value }
        if let value = try Self.integer(environment, "EXCHANGER_ORCHESTRATOR_MAX_DOCUMENT_IDS", 1...1_000_000) {
            core.limits.maxDocumentIDs = value
        }
        if let value = try Self.integer(environment, "EXCHANGER_ORCHESTRATOR_LIST_LIMIT", 1...10_000) { listLimit = value }
        if let value = try Self.seconds(environment, "EXCHANGER_ORCHESTRATOR_LEASE_SECONDS", 1...3600) { lease = value }
        if let value = try Self.seconds(environment, "EXCHANGER_ORCHESTRATOR_POLL_SECONDS", 0.01...300) { pollInterval = value }
        if let value = try Self.seconds(environment, "EXCHANGER_ORCHESTRATOR_STEP_RETRY_SECONDS", 0.1...3600) { stepRetryDelay = value }
        if let value = try Self.integer(environment, "EXCHANGER_ORCHESTRATOR_CONCURRENT_EXCHANGES", 1...64) { concurrentExchanges = value }
        if let value = try Self.seconds(environment, "EXCHANGER_ORCHESTRATOR_SHUTDOWN_GRACE_SECONDS", 0...3600) { shutdownGrace = value }
        if let value = try Self.seconds(environment, "EXCHANGER_ORCHESTRATOR_CHECK_INTERVAL_SECONDS", 0.01...3600) {
            core.drain.checkInterval = value
        }
        if let value = try Self.integer(environment, "EXCHANGER_ORCHESTRATOR_COPY_RETRIES", 0...100) { core.copyRetries.retries = value }
        if let value = try Self.seconds(environment, "EXCHANGER_ORCHESTRATOR_COPY_RETRY_DELAY_SECONDS", 0...86_400) {
            core.copyRetries.initialDelay = value
        }
        if let value = try Self.seconds(environment, "EXCHANGER_ORCHESTRATOR_WORKER_STOP_TIMEOUT_SECONDS", 1...86_400) {
            core.drain.workerStopTimeout = value
        }
        if let value = try Self.seconds(environment, "EXCHANGER_ORCHESTRATOR_RETRY_AFTER_SECONDS", 1...3600) { retryAfter = value }
        if let value = try Self.integer(environment, "EXCHANGER_ORCHESTRATOR_LISTED_DOCUMENTS", 0...1_000_000) {
            core.drain.listedDocuments = value
        }
        if let queue = environment["EXCHANGER_ORCHESTRATOR_EVENT_QUEUE"], !queue.isEmpty { events.queue = queue }
        if let value = try Self.integer(environment, "EXCHANGER_ORCHESTRATOR_EVENT_BATCH", 1...10_000) { events.batchSize = value }
        if let value = try Self.seconds(environment, "EXCHANGER_ORCHESTRATOR_EVENT_WAIT_SECONDS", 0.01...300) { events.wait = value }
        if let state = environment["EXCHANGER_FAILPOINT_EXIT_IN_STATE"], !state.isEmpty {
            let known = ["ACCEPTED", "PROVISIONING", "COPYING_DATABASE", "CONSTRUCTING_PAYLOAD", "PROCESSING", "DRAINING", "TEARING_DOWN"]
            guard known.contains(state) else {
                throw OrchestratorServiceError(.invalidSetting, "EXCHANGER_FAILPOINT_EXIT_IN_STATE='\(state)' must be one of \(known.joined(separator: ", "))")
            }
            core.exitInState = state
        }
        events.topic = core.drain.topic
        events.deadLetterQueue = core.drain.deadLetterQueue
    }

    private static func integer(
        _ environment: [String: String], _ name: String, _ range: ClosedRange<Int>
    ) throws(OrchestratorServiceError) -> Int? {
        guard let text = environment[name], !text.isEmpty else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw OrchestratorServiceError(.invalidSetting, "\(name)='\(text)' must be a whole number in \(range.lowerBound)…\(range.upperBound)")
        }
        return value
    }

    private static func seconds(
        _ environment: [String: String], _ name: String, _ range: ClosedRange<Double>
    ) throws(OrchestratorServiceError) -> Duration? {
        guard let text = environment[name], !text.isEmpty else { return nil }
        guard let value = Double(text), value.isFinite, range.contains(value) else {
            throw OrchestratorServiceError(.invalidSetting, "\(name)='\(text)' must be a number of seconds in \(range.lowerBound)…\(range.upperBound)")
        }
        return .milliseconds(Int64((value * 1000).rounded()))
    }
}

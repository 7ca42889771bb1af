import Broker
import ConcurrencySupport
import CaseData
import Deployments
import ExchangerEvents
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Retries of the case-data copy: Step Functions' `IntervalSeconds` 30, `BackoffRate` 2.0, 3 retries.
public struct CopyRetrySettings: Sendable, Hashable {
    /// Retries after the first attempt (3).
    public var retries: Int = 3
    /// Wait before the first retry (30 s); each further wait is `backoffRate` times longer.
    public var initialDelay: Duration = .seconds(30)
    /// Factor between consecutive waits (2.0).
    public var backoffRate: Double = 2.0

    /// A value with the given fields.
    public init(retries: Int = 3, initialDelay: Duration = .seconds(30), backoffRate: Double = 2.0) {
        self.retries = retries
        self.initialDelay = initialDelay
        self.backoffRate = backoffRate
    }

    /// The wait before retry `number` (1-based): 30 s, 60 s, 120 s with the defaults.
    public func delay(beforeRetry number: Int) -> Duration {
        initialDelay * Foundation.pow(backoffRate, Double(max(0, number - 1)))
    }
}

/// Every setting of the orchestrator core, with defaults.
public struct OrchestratorSettings: Sendable, Hashable {
    /// Queues, subscriptions, deployments.
    public var provisioning = ProvisioningSettings()
    /// Payload batches.
    public var payload = PayloadSettings()
    /// Completion checks and teardown.
    public var drain = DrainSettings()
    /// Retries of the case-data copy.
    public var copyRetries = CopyRetrySettings()
    /// Request validation limits.
    public var limits = RequestLimits()

    /// Every setting at its default.
    /// A value with the given fields.
    /// Fault injection for crash tests only (`EXCHANGER_FAILPOINT_EXIT_IN_STATE`): the process
    /// SIGKILLs itself right after a transition into the state named here has committed (the
    /// lease still held, nothing else done), exactly like a crash at that point. Never set in production.
    public var exitInState: String?

    public init() {}
}

/// Detail of DB_COPY_FINISHED and PAYLOAD_CONSTRUCTION_FINISHED.
public struct PayloadDetail: Sendable, Hashable, Codable {
    /// Documents the copy selected.
    public var documents: Int
    /// Messages sent (PAYLOAD_CONSTRUCTION_FINISHED only).
    public var messages: Int?
    /// The copy's warnings (DB_COPY_FINISHED only; see ``CopyOutcome/warnings``).
    public var warnings: [String]?
    /// Selected documents the copy left out because an earlier exchange delivered them
    /// (DB_COPY_FINISHED only, when any were).
    public var skipped: Int?

    /// A value with the given fields.
    public init(documents: Int, messages: Int? = nil, warnings: [String]? = nil, skipped: Int? = nil) {
        self.documents = documents
        self.messages = messages
        self.warnings = warnings
        self.skipped = skipped
    }
}

/// Moves an exchange through its lifecycle, one persisted step at a time. Every step is
/// idempotent and ends in a compare-and-set transition (committed with the event it publishes),
/// so a replica that takes over an exchange (``ExchangeStore/claimNextWork(owner:lease:)``) simply
/// calls ``step(_:)`` again.
public struct ExchangeRunner: Sendable {
    /// The broker whose database holds the state.
    public let broker: Broker
    /// The exchanges' state.
    public let store: ExchangeStore
    /// The supervisor's deployment rows.
    public let deployments: DeploymentStore
    /// The case-data copy step.
    public let copier: any CaseDataCopying
    /// Every setting.
    public let settings: OrchestratorSettings
    /// Where it logs.
    public let logger: Logger

    /// A value with the given fields.
    public init(
        broker: Broker, copier: any CaseDataCopying, settings: OrchestratorSettings = .init(),
        logger: Logger = Logger(label: "exchanger.orchestrator")
    ) {
        self.broker = broker
        self.store = ExchangeStore(broker: broker)
        self.deployments = DeploymentStore(broker: broker)
        self.copier = copier
        self.settings = settings
        self.logger = logger
    }

    /// The provisioning executor with this runner's stores.
    public var provisioner: Provisioner { Provisioner(broker: broker, store: store, deployments: deployments, logger: logger) }
    /// The payload constructor with this runner's settings.
    public var payload: PayloadConstructor { PayloadConstructor(broker: broker, store: store, settings: settings.payload, logger: logger) }
    /// The drainer with this runner's settings.
    public var drainer: ExchangeDrainer {
        ExchangeDrainer(broker: broker, store: store, deployments: deployments, settings: settings.drain, logger: logger, outcomes: copier)
    }

    /// The provisioning plan of an exchange.
    public func plan(_ exchange: ExchangeRecord) -> ProvisioningPlan {
        ProvisioningPlan(jobID: exchange.jobID, request: exchange.request, settings: settings.provisioning)
    }

    /// Runs the step of the exchange's current state and returns the exchange after it. In
    /// PROCESSING one step is one completion check (the state stays PROCESSING while messages remain).
    @discardableResult
    public func step(_ jobID: String) async throws -> ExchangeRecord {
        guard let record = try await store.get(jobID) else { throw OrchestratorError(.notFound, "no exchange has job id '\(jobID)'") }
        let next = try await step(record)
        failpoint(next, after: record.state)
        return next
    }

    /// The failpoint of ``OrchestratorSettings/exitInState``: SIGKILLs this process when `record`
    /// has just entered that state.
    func failpoint(_ record: ExchangeRecord, after previous: ExchangeState) {
        guard let state = settings.exitInState, record.state.name == state, record.state != previous else { return }
        logger.critical("failpoint: exiting by SIGKILL", metadata: ["jobId": "\(record.jobID)", "state": "\(state)"])
        kill(getpid(), SIGKILL)
    }

    private func step(_ record: ExchangeRecord) async throws -> ExchangeRecord {
        let jobID = record.jobID
        switch record.state {
        case .accepted:
            return try await transition(record, to: .provisioning, publishing: .exchangerInitiated, detail: ExchangeStatusDetail())
        case .provisioning:
            do {
                try await provisioner.provision(plan(record))
            } catch let error as OrchestratorError where error.code == .resourceConflict {
                return try await drainer.abort(jobID, target: .failed, reason: error.message)
            }
            return try await store.transition(jobID, from: .provisioning, to: .copyingDatabase, expectedVersion: record.version)
        case .copyingDatabase:
            let outcome: CopyOutcome
            switch try await copyWithRetries(record) {
            case .success(let copied): outcome = copied
            case .failure(let failure): return try await drainer.abort(jobID, target: .failed, reason: failure.reason)
            }
            let next = try await transition(
                record, to: .constructingPayload, publishing: .dbCopyFinished,
                detail: PayloadDetail(
                    documents: outcome.documents.count, warnings: outcome.warnings, skipped: outcome.skipped.isEmpty ? nil : outcome.skipped.count))
            failpoint(next, after: record.state)
            return try await constructPayload(next, outcome: outcome)
        case .constructingPayload:
            // Resumed after a crash: the copy is idempotent and returns the same documents and ids.
            let outcome: CopyOutcome
            switch try await copyWithRetries(record) {
            case .success(let copied): outcome = copied
            case .failure(let failure): return try await drainer.abort(jobID, target: .failed, reason: failure.reason)
            }
            return try await constructPayload(record, outcome: outcome)
        case .processing:
            if case .pending = try await drainer.checkCompletion(jobID) { await noteFailingWorkers(record) }
            return try await store.get(jobID) ?? record
        case .draining, .tearingDown:
            return try await drainer.teardown(jobID)
        case .finished, .failed, .cancelled:
            return record
        }
    }

    /// Steps until the exchange is final, checking for completion every
    /// ``DrainSettings/checkInterval`` while it is PROCESSING.
    @discardableResult
    public func run(_ jobID: String) async throws -> ExchangeRecord {
        while true {
            let record = try await step(jobID)
            if record.state.isFinal { return record }
            if record.state == .processing { try await StopRequest.sleep(for: settings.drain.checkInterval) }
        }
    }

    /// One turn of an orchestrator replica's work loop: claims the next exchange whose lease is
    /// free or expired (``ExchangeStore/claimNextWork(owner:lease:)``), advances it while renewing
    /// the lease every third of `lease` in the background, and returns it; nil when there was
    /// nothing to claim. An exchange that reaches a final state has its lease released. One in
    /// PROCESSING whose queues still hold messages keeps a lease of
    /// ``DrainSettings/checkInterval`` only, so the next completion check (by any replica) comes
    /// when that lease ends: the short timer of completion detection.
    ///
    /// A replica that crashes holds its exchanges until their leases expire; then another replica
    /// claims them and resumes at the stored state. A lost lease (renewal refused) stops the work
    /// with ``OrchestratorError/Code/leaseLost``.
    public func workOnce(owner: String, lease: Duration) async throws -> ExchangeRecord? {
        guard let claimed = try await store.claimNextWork(owner: owner, lease: lease) else { return nil }
        let jobID = claimed.jobID
        let store = store
        let result: ExchangeRecord? = try await withThrowingTaskGroup(of: ExchangeRecord?.self) { group in
            group.addTask {
                while true {
                    try await Task.sleep(for: lease / 3)
                    guard try await store.renewLease(jobID, owner: owner, lease: lease) else {
                        throw OrchestratorError(.leaseLost, "the lease of exchange \(jobID) was lost by \(owner)")
                    }
                }
            }
            group.addTask { try await self.advance(jobID) }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
        guard let record = result else { return claimed }
        if record.state.isFinal {
            try await store.releaseLease(jobID, owner: owner)
        } else if record.state == .processing {
            _ = try await store.renewLease(jobID, owner: owner, lease: max(settings.drain.checkInterval, .milliseconds(100)))
        }
        return record
    }

    /// Steps until the exchange is final, or PROCESSING with messages still in its queues.
    private func advance(_ jobID: String) async throws -> ExchangeRecord {
        while true {
            let before = try await store.get(jobID)
            let record = try await step(jobID)
            if record.state.isFinal { return record }
            if record.state == .processing, before?.state == .processing { return record }
        }
    }

    /// Cancels a non-final exchange: TEARING_DOWN(CANCELLED) now; ``step(_:)`` then tears it down.
    @discardableResult
    public func cancel(_ jobID: String, reason: String = "cancelled by request") async throws -> ExchangeRecord {
        try await drainer.abort(jobID, target: .cancelled, reason: reason)
    }

    // MARK: Steps

    private func constructPayload(_ record: ExchangeRecord, outcome: CopyOutcome) async throws -> ExchangeRecord {
        let messages = try await payload.construct(record, plan: plan(record), outcome: outcome)
        guard let current = try await store.get(record.jobID) else {
            throw OrchestratorError(.notFound, "no exchange has job id '\(record.jobID)'")
        }
        return try await transition(
            current, to: .processing, publishing: .payloadConstructionFinished,
            detail: PayloadDetail(documents: outcome.documents.count, messages: messages))
    }

    /// Why the case-data copy of an exchange gave up, as the exchange's error says it.
    struct CopyFailure: Error {
        var reason: String
    }

    /// The copy, retried with backoff; a failure (after publishing DB_COPY_FAILED) when every
    /// attempt failed or the error is one retrying cannot fix.
    private func copyWithRetries(_ record: ExchangeRecord) async throws -> Result<CopyOutcome, CopyFailure> {
        var attempt = 0
        while true {
            do {
                let outcome = try await copier.copy(record)
                if attempt > 0 { await noteStepError(record.jobID, nil) }
                return .success(outcome)
            } catch {
                if error is CancellationError { throw error }
                attempt += 1
                logger.warning("case-data copy failed", metadata: [
                    "jobId": "\(record.jobID)", "attempt": "\(attempt)", "error": "\(error)",
                ])
                // Retrying cannot fix a missing case database, a request the copy refuses or a
                // conflict: the exchange fails at once, with the reason.
                let permanent: Set<CaseDataError.Code> = [.conflict, .notFound, .invalidArgument, .invalidSchema]
                let final = (error as? CaseDataError).map { permanent.contains($0.code) } ?? false
                guard attempt <= settings.copyRetries.retries, !final else {
                    let event = try drainer.envelope(
                        record, .dbCopyFailed, detail: ExchangeStatusDetail(reason: "\(error)"))
                    try await broker.publish(try event.topicMessage(), topic: settings.drain.topic)
                    return .failure(CopyFailure(reason: "the case-data copy failed: \(error)"))
                }
                let delay = settings.copyRetries.delay(beforeRetry: attempt)
                await noteStepError(
                    record.jobID,
                    "the case-data copy failed (attempt \(attempt) of \(settings.copyRetries.retries + 1); next in \(delay)): \(error)")
                // A stop (SIGTERM) ends the wait at once; the next owner retries the copy.
                try await StopRequest.sleep(for: delay)
            }
        }
    }

    /// While documents wait: names the exchange's workers that cannot start (crash-looping) in its
    /// status, and clears the note once none is left, so `GET /exchanges/{jobId}` says why nothing
    /// moves instead of sitting in PROCESSING without a reason.
    private func noteFailingWorkers(_ record: ExchangeRecord) async {
        let failing: [WorkerRecord]
        do {
            failing = try await drainer.deployments.failingWorkers(exchangeID: record.jobID)
        } catch {
            logger.debug("failing workers not read", metadata: ["jobId": "\(record.jobID)", "error": "\(error)"])
            return
        }
        let note = Self.failingWorkersNote(failing)
        guard note != record.error else { return }
        if let note {
            logger.warning("workers of the exchange cannot start", metadata: ["jobId": "\(record.jobID)", "reason": "\(note)"])
        }
        await noteStepError(record.jobID, note)
    }

    /// The status note for crash-looping workers, one clause per program; nil for none.
    static func failingWorkersNote(_ workers: [WorkerRecord]) -> String? {
        guard !workers.isEmpty else { return nil }
        let byProgram = Dictionary(grouping: workers, by: \.program).sorted { $0.key < $1.key }
        let clauses = byProgram.map { program, records in
            let statuses = Set(records.compactMap(\.lastExitStatus)).sorted()
            let cause = statuses == [78]
                ? "its configuration is incomplete (exit status 78; its log's first line names the setting)"
                : "it exits at once" + (statuses.isEmpty ? "" : " (exit status \(statuses.map(String.init).joined(separator: ", ")))")
            return "\(program) cannot start (\(records.count) crash-looping): \(cause)"
        }
        return "documents wait: " + clauses.joined(separator: "; ")
            + "; fix it and the supervisor starts the workers again (exchanger ps, exchanger logs --program NAME)"
    }

    /// ``ExchangeStore/noteStepError(_:_:)``; a failure to record it is only logged (the retry
    /// goes on, and the log line above names the error).
    private func noteStepError(_ jobID: String, _ error: String?) async {
        do {
            try await store.noteStepError(jobID, error)
        } catch {
            logger.warning("could not record the step's error on the exchange", metadata: ["jobId": "\(jobID)", "error": "\(error)"])
        }
    }

    /// The CAS transition to `to`, committed with the event of the step.
    private func transition(
        _ record: ExchangeRecord, to: ExchangeState, publishing type: EventType, detail: some Encodable & Sendable
    ) async throws -> ExchangeRecord {
        let event = try EventEnvelope(
            type: type, source: settings.drain.eventSource, jobID: record.jobID, caseID: record.destinationCaseID,
            sourceCaseID: record.sourceCaseID, batchID: record.batchID, correlationID: record.jobID, detail: detail)
        let topic = settings.drain.topic
        let store = store
        let from = record.state
        let version = record.version
        let jobID = record.jobID
        return try await broker.transaction { tx in
            let next = try await store.transition(in: tx, jobID, from: from, to: to, expectedVersion: version)
            try await tx.publish(try event.topicMessage(), topic: topic)
            return next
        }
    }
}

import Broker
import CaseData
import ConcurrencySupport
import DatabaseSupport
import Deployments
import ExchangerEvents
import Foundation
import Logging

/// Settings of completion detection and teardown.
public struct DrainSettings: Sendable, Hashable {
    /// How often ``ExchangeDrainer/waitForCompletion(_:)`` looks at the queues (2 s).
    public var checkInterval: Duration = .seconds(2)
    /// How long teardown waits for the exchange's workers to exit (10 min); then it throws
    /// ``OrchestratorError/Code/workersStillRunning`` and is retried later.
    public var workerStopTimeout: Duration = .seconds(600)
    /// How often that wait looks even without a notification (250 ms).
    public var workerPollInterval: Duration = .milliseconds(250)
    /// The `source` of the events the orchestrator publishes.
    public var eventSource: String = "exchanger-orchestrator"
    /// The topic events are published on; nil is the broker's default.
    public var topic: String?
    /// The dead-letter queue of the exchange's queues (as in ``ProvisioningSettings/deadLetterQueue``):
    /// a document whose dead letter waits there, not yet turned into an error event by the
    /// dead-letter processor, counts as failed in the summary.
    public var deadLetterQueue: String = "exch-dlq"
    /// Most document ids each list of an ended exchange's ``LeftBehindDocuments`` holds (1,000);
    /// the counts are always whole.
    public var listedDocuments: Int = 1000

    /// Every setting at its default.
    /// A value with the given fields.
    public init() {}
}

/// The result of one completion check.
public enum CompletionCheck: Sendable, Hashable {
    /// Messages are still in the exchange's queues (visible, in flight or delayed).
    case pending(messages: Int)
    /// The queues are sealed and were empty at the seal: the exchange is DRAINING.
    case sealed
}

/// Detects that an exchange's work is done and tears it down.
///
/// **Completion** (exchange in PROCESSING): the counters of the exchange's recorded queues are
/// read; only when every queue is empty (in flight and delayed included) are the queues sealed
/// with ``Broker/seal(_:removeSubscriptions:)``. The seal waits for every send and publish in
/// progress and returns the counters read after it, so an empty result means nothing can arrive
/// any more (a sealed queue refuses sends, and publishes skip it); the exchange then moves to
/// DRAINING, in the transaction that publishes EXCHANGER_DELETE_INITIATED. When the seal's
/// counters are not empty (a message slipped in between the look and the seal), the queues are
/// unsealed and the wait goes on; a worker whose forward was refused in that window retries it.
/// The seal keeps the subscriptions (a sealed queue receives no publishes anyway) so an unseal
/// restores everything; teardown removes them.
///
/// **Teardown** (DRAINING, or TEARING_DOWN for failure and cancellation), in order: seal the queues
/// that still exist and remove their subscriptions (one transaction), unsubscribe any other recorded
/// subscription, ask the supervisor to stop the deployments, wait until no worker of the exchange
/// runs, delete the queues, remove the deployments, then, in one transaction, store the summary,
/// write the final state (FINISHED, FAILED or CANCELLED) and publish EXCHANGER_FINISHED (or
/// EXCHANGER_FAILED, also for a cancellation, with the reason) with a deterministic event id.
/// Every step is idempotent, so an interrupted teardown is run again from the start.
public struct ExchangeDrainer: Sendable {
    /// The broker whose database holds the state.
    public let broker: Broker
    /// The exchanges' state.
    public let store: ExchangeStore
    /// The supervisor's deployment rows.
    public let deployments: DeploymentStore
    /// Timings and event settings.
    public let settings: DrainSettings
    /// Where it logs.
    public let logger: Logger
    /// Where each document's outcome is recorded when the exchange ends (the copy step, which
    /// writes the destination case's ledger); nil records nothing there.
    public let outcomes: (any CaseDataCopying)?

    /// A value with the given fields.
    public init(
        broker: Broker, store: ExchangeStore, deployments: DeploymentStore, settings: DrainSettings = .init(),
        logger: Logger = Logger(label: "exchanger.orchestrator"), outcomes: (any CaseDataCopying)? = nil
    ) {
        self.broker = broker
        self.store = store
        self.deployments = deployments
        self.settings = settings
        self.logger = logger
        self.outcomes = outcomes
    }

    // MARK: Completion

    /// One completion check of an exchange in PROCESSING (see the type's documentation); an
    /// exchange already past PROCESSING reports ``CompletionCheck/sealed``.
    /// - Throws: ``OrchestratorError/Code/invalidTransition`` for an exchange before PROCESSING or
    ///   tearing down; ``OrchestratorError/Code/stateConflict`` when it moved meanwhile.
    public func checkCompletion(_ jobID: String) async throws -> CompletionCheck {
        let record = try await existing(jobID)
        switch record.state {
        case .processing: break
        case .draining, .finished: return .sealed
        default:
            throw OrchestratorError(.invalidTransition, "exchange \(jobID) is \(record.state), not PROCESSING")
        }
        let queues = try await existingQueues(jobID)
        let before = try await broker.counters(queues.map(\.name))
        let pending = before.values.reduce(0) { $0 + $1.total }
        if pending > 0 {
            // After a crash between a non-empty seal and its unseal: let the workers forward again.
            let sealed = queues.filter(\.sealed).map(\.name)
            if !sealed.isEmpty { try await broker.unseal(sealed) }
            return .pending(messages: pending)
        }
        if !queues.isEmpty {
            let after = try await broker.seal(queues.map(\.name), removeSubscriptions: false)
            let remaining = after.values.reduce(0) { $0 + $1.total }
            if remaining > 0 {
                try await broker.unseal(queues.map(\.name))
                logger.debug("messages arrived while sealing; waiting on", metadata: ["jobId": "\(jobID)", "messages": "\(remaining)"])
                return .pending(messages: remaining)
            }
        }
        let event = try envelope(record, .exchangerDeleteInitiated, detail: ExchangeStatusDetail())
        let topic = settings.topic
        try await broker.transaction { tx in
            try await store.transition(in: tx, jobID, from: .processing, to: .draining)
            try await tx.publish(try event.topicMessage(), topic: topic)
        }
        logger.info("exchange drained; queues sealed", metadata: ["jobId": "\(jobID)"])
        return .sealed
    }

    /// Checks every ``DrainSettings/checkInterval`` (and at once) until the exchange is DRAINING.
    public func waitForCompletion(_ jobID: String) async throws {
        while true {
            if try await checkCompletion(jobID) == .sealed { return }
            try await StopRequest.sleep(for: settings.checkInterval)
        }
    }

    // MARK: Failure and cancellation

    /// Moves a non-final exchange to TEARING_DOWN towards FAILED (`target` `.failed`) or CANCELLED,
    /// storing `reason`; then ``teardown(_:)`` finishes it. Already tearing down or final: unchanged.
    @discardableResult
    public func abort(_ jobID: String, target: TeardownTarget, reason: String) async throws -> ExchangeRecord {
        while true {
            let record = try await existing(jobID)
            if record.state.isFinal || record.state.teardownTarget != nil { return record }
            do {
                return try await store.transition(
                    jobID, from: record.state, to: .tearingDown(target), expectedVersion: record.version, error: reason)
            } catch let error as OrchestratorError where error.code == .stateConflict {
                continue
            }
        }
    }

    // MARK: Teardown

    /// Deletes deployment `id`. A worker row a supervisor wrote after the stop request (a report
    /// computed before it) makes the delete refuse; that is the normal end of a scale-down, not a
    /// failure: the stop is requested again and the delete retried as soon as no worker of the
    /// exchange is live, within ``DrainSettings/workerStopTimeout`` — never left for a lease to expire.
    private func removeWhenStopped(_ id: String, jobID: String) async throws {
        let deadline = ContinuousClock.now + settings.workerStopTimeout
        while true {
            do {
                try await deployments.remove(id: id)
                return
            } catch let error as DeploymentError where error.code == .workersRunning {
                guard ContinuousClock.now < deadline else {
                    throw OrchestratorError(.workersStillRunning,
                        "workers of exchange \(jobID) still run after \(settings.workerStopTimeout); teardown will be retried")
                }
                logger.debug("deployment still has a live worker; waiting for it to exit", metadata: ["jobId": "\(jobID)", "deployment": "\(id)"])
                try await deployments.requestStop(id: id)
                _ = try await deployments.waitUntilNoWorkers(
                    exchangeID: jobID, timeout: deadline - ContinuousClock.now, pollInterval: settings.workerPollInterval)
            }
        }
    }

    /// Tears down an exchange in DRAINING or TEARING_DOWN and writes its final state (see the type's
    /// documentation). A final exchange is returned unchanged.
    /// - Throws: ``OrchestratorError/Code/workersStillRunning`` when the workers did not exit in time.
    @discardableResult
    public func teardown(_ jobID: String) async throws -> ExchangeRecord {
        let record = try await existing(jobID)
        if record.state.isFinal { return record }
        guard record.state == .draining || record.state.teardownTarget != nil else {
            throw OrchestratorError(.invalidTransition, "exchange \(jobID) is \(record.state); only DRAINING or TEARING_DOWN tear down")
        }
        let resources = try await store.resources(jobID)
        // 1. Nothing can arrive any more: seal what still exists and drop its subscriptions.
        let queues = try await existingQueues(jobID)
        let owned = Set(queues.map(\.name))
        if !queues.isEmpty { try await broker.seal(queues.map(\.name), removeSubscriptions: true) }
        for subscription in resources where subscription.kind == .subscription {
            // A subscription lives on its queue: one of another exchange's queue is not ours.
            let queueExists = try await broker.queue(named: subscription.name) != nil
            if !queueExists || owned.contains(subscription.name) {
                for existing in try await broker.subscriptions(topic: subscription.detail, queue: subscription.name) {
                    try await broker.unsubscribe(existing.id)
                }
            }
            try await store.markRemoved(jobID: jobID, kind: .subscription, name: subscription.name)
        }
        // 2–3. Workers finish the batch in hand and exit.
        let deploymentIDs = resources.filter { $0.kind == .deployment }.map(\.name)
        for id in deploymentIDs { try await deployments.requestStop(id: id) }
        if !deploymentIDs.isEmpty {
            let gone = try await deployments.waitUntilNoWorkers(
                exchangeID: jobID, timeout: settings.workerStopTimeout, pollInterval: settings.workerPollInterval)
            guard gone else {
                throw OrchestratorError(.workersStillRunning,
                    "workers of exchange \(jobID) still run after \(settings.workerStopTimeout); teardown will be retried")
            }
        }
        // 4. Delete the queues, then the deployment rows.
        for queue in resources where queue.kind == .queue {
            if owned.contains(queue.name) {
                do {
                    try await broker.deleteQueue(queue.name)
                } catch let error as BrokerError where error.code == .queueNotFound {
                    // Deleted meanwhile.
                }
            }
            // Not there (deleted by an earlier, interrupted teardown) or another exchange's: nothing to delete.
            try await store.markRemoved(jobID: jobID, kind: .queue, name: queue.name)
        }
        for id in deploymentIDs {
            try await removeWhenStopped(id, jobID: jobID)
            try await store.markRemoved(jobID: jobID, kind: .deployment, name: id)
        }
        // 5. Each document's outcome into the destination case's ledger (what a skipping repeat
        //    exchange reads), then result, final state and event together.
        let final = record.state.next ?? .finished
        let (counted, stages) = try await summary(jobID, total: record.totalDocuments ?? 0, request: record.request)
        var summary = counted
        summary.skipped = record.skippedDocuments.flatMap { $0 > 0 ? $0 : nil }
        let result = summary
        let documents = try await documentOutcomes(jobID, finished: final == .finished)
        if let outcomes, record.totalDocuments != nil {
            do {
                try await outcomes.recordOutcomes(record, documents)
            } catch let error as CaseDataError where error.code == .notFound {
                // The destination case's database is gone: there is no ledger to write.
                logger.warning("document outcomes not recorded: the destination case has no database", metadata: [
                    "jobId": "\(jobID)", "caseId": "\(record.destinationCaseID)", "error": "\(error)",
                ])
            }
        }
        let limit = max(0, settings.listedDocuments)
        let failedIDs = documents.failed.sorted()
        let notFoundIDs = documents.notFound.subtracting(documents.failed).sorted()
        let leftBehind = LeftBehindDocuments(
            failed: Array(failedIDs.prefix(limit)), notFound: Array(notFoundIDs.prefix(limit)),
            truncated: failedIDs.count > limit || notFoundIDs.count > limit)
        let event: EventEnvelope
        if final == .finished {
            event = try envelope(record, .exchangerFinished, detail: ExchangeStatusDetail(summary: summary))
        } else {
            let reason = (final == .cancelled ? "cancelled" : "failed") + (record.error.map { ": \($0)" } ?? "")
            event = try envelope(record, .exchangerFailed, detail: ExchangeStatusDetail(reason: reason, summary: summary))
        }
        let topic = settings.topic
        let from = record.state
        let finished = try await broker.transaction { tx in
            try await ExchangeStore.setResult(tx, jobID, summary: result, stages: stages, leftBehind: leftBehind)
            let finished = try await store.transition(in: tx, jobID, from: from, to: final)
            try await tx.publish(try event.topicMessage(), topic: topic)
            return finished
        }
        logger.info("exchange torn down", metadata: [
            "jobId": "\(jobID)", "state": "\(final)", "copied": "\(summary.copied)", "notFound": "\(summary.notFound)",
            "failed": "\(summary.failed)",
        ])
        return finished
    }

    // MARK: Summary

    /// Documents copied, not found and failed, counted from the event log by job id: a document
    /// with an error event of the dead-letter mapping (S3_DOC_COPIED, PRE_UPLOADER_FINISHED,
    /// UPLOADER_FINISHED, RE_OCR_FINISHED, SEARCH_TEXT_FINISHED), or with a dead letter still
    /// waiting in ``DrainSettings/deadLetterQueue`` (the processor may not have published its
    /// error event before the exchange finishes), failed; else one with
    /// DOCUMENT_NOT_FOUND was not found; else one with DOCUMENT_COPIED, DOCUMENT_PRE_PROCESSED or
    /// DOCUMENT_UPLOADED was copied. Per stage: documents done (its success event) and failed.
    public func summary(_ jobID: String, total: Int, request: ExchangeRequest) async throws -> (ExchangeSummary, [String: StageCount]) {
        let failedTypes = Self.failedTypes
        let copiedTypes = Self.copiedTypes
        let stageEvents: [(stage: ExchangeStage, done: EventType?, failed: EventType)] = [
            (.s3Copy, request.requiresAnnotations ? .nativeDocumentCopied : .documentCopied, .s3DocCopied),
            (.preUploader, .documentPreProcessed, .preUploaderFinished),
            (.docUploader, .documentUploaded, .uploaderFinished),
            // re-OCR publishes no success event of its own (it hands each document to search-text):
            // a document is indexed only after re-OCR wrote its page texts, so DOCUMENT_INDEXED
            // counts it (a lower bound while search-text catches up).
            (.reOCR, .documentIndexed, .reOCRFinished),
            (.searchText, .documentIndexed, .searchTextFinished),
        ]
        let allTypes = Set(failedTypes + copiedTypes + [.documentNotFound] + stageEvents.compactMap(\.done)).sorted { $0.rawValue < $1.rawValue }
        let deadLetterQueue = settings.deadLetterQueue
        let (summaryRow, typeRows) = try await broker.transaction { tx in
            if tx.dialect == .postgres {
                try await tx.query("SELECT set_config('enable_seqscan', 'on', true), set_config('jit', 'off', true)")
            }
            let events = Self.documentEvents(tx.dialect, types: allTypes)
            let summary = try await tx.query("""
                SELECT coalesce(sum(f), 0) AS failed,
                       coalesce(sum(CASE WHEN f = 0 THEN n ELSE 0 END), 0) AS not_found,
                       coalesce(sum(CASE WHEN f = 0 AND n = 0 THEN c ELSE 0 END), 0) AS copied
                FROM (SELECT doc,
                             max(CASE WHEN t IN (\(Self.list(failedTypes)), '\(Self.deadLetterMarker)') THEN 1 ELSE 0 END) AS f,
                             max(CASE WHEN t = '\(EventType.documentNotFound.rawValue)' THEN 1 ELSE 0 END) AS n,
                             max(CASE WHEN t IN (\(Self.list(copiedTypes))) THEN 1 ELSE 0 END) AS c
                      FROM (\(events)) e WHERE doc IS NOT NULL GROUP BY doc) d
                """, [.text(jobID), .text(deadLetterQueue)])
            let types = try await tx.query("""
                SELECT t, count(*) AS documents FROM (\(events)) e WHERE doc IS NOT NULL GROUP BY t
                """, [.text(jobID), .text(deadLetterQueue)])
            return (summary.first, types)
        }
        var perType: [String: Int] = [:]
        for row in typeRows {
            if let type = row["t"].string { perType[type] = row["documents"].int ?? 0 }
        }
        let summary = ExchangeSummary(
            documents: total, copied: summaryRow?["copied"].int ?? 0, notFound: summaryRow?["not_found"].int ?? 0,
            failed: summaryRow?["failed"].int ?? 0)
        let planned = Set(ExchangeStage.stages(requiresAnnotations: request.requiresAnnotations, includeNatives: request.includeNatives))
        var stages: [String: StageCount] = [:]
        for entry in stageEvents where planned.contains(entry.stage) {
            stages[entry.stage.program] = StageCount(
                done: entry.done.map { perType[$0.rawValue] ?? 0 } ?? 0, failed: perType[entry.failed.rawValue] ?? 0)
        }
        return (summary, stages)
    }

    /// Each document's outcome, by destination id, from the same events as ``summary(_:total:request:)``:
    /// failed (an error event or a waiting dead letter), not found, and delivered (a success event
    /// and neither of the others; only when `finished`). A document of the payload in none of them
    /// never got through: the ledger counts it as failed (``CaseDataCopying/recordOutcomes(_:_:)``).
    public func documentOutcomes(_ jobID: String, finished: Bool) async throws -> DocumentOutcomes {
        let failedTypes = Self.failedTypes
        let copiedTypes = Self.copiedTypes
        let deadLetterQueue = settings.deadLetterQueue
        let types = failedTypes + copiedTypes + [.documentNotFound]
        let rows = try await broker.transaction { tx in
            try await tx.query("""
                SELECT doc,
                       max(CASE WHEN t IN (\(Self.list(failedTypes)), '\(Self.deadLetterMarker)') THEN 1 ELSE 0 END) AS f,
                       max(CASE WHEN t = '\(EventType.documentNotFound.rawValue)' THEN 1 ELSE 0 END) AS n,
                       max(CASE WHEN t IN (\(Self.list(copiedTypes))) THEN 1 ELSE 0 END) AS c
                FROM (\(Self.documentEvents(tx.dialect, types: types))) e
                WHERE doc IS NOT NULL GROUP BY doc
                """, [.text(jobID), .text(deadLetterQueue)])
        }
        var outcomes = DocumentOutcomes(delivered: [], notFound: [], failed: [])
        for row in rows {
            guard let text = row["doc"].string, let id = Int64(text) else { continue }
            if row["f"].int == 1 {
                outcomes.failed.insert(id)
            } else if row["n"].int == 1 {
                outcomes.notFound.insert(id)
            } else if row["c"].int == 1, finished {
                outcomes.delivered.insert(id)
            }
        }
        return outcomes
    }

    // MARK: Helpers

    /// The error events of the dead-letter mapping: a document with one failed.
    private static let failedTypes: [EventType] = [.s3DocCopied, .preUploaderFinished, .uploaderFinished, .reOCRFinished, .searchTextFinished]
    /// A document with one of these (and no error, not not-found) was copied.
    private static let copiedTypes: [EventType] = [.documentCopied, .documentPreProcessed, .documentUploaded]

    /// The job's (event type, document id) pairs of `types`, and a ``deadLetterMarker`` pair per
    /// dead letter of the job waiting in the dead-letter queue: columns `t` and `doc` (text).
    /// Binds: 1 the job id, 2 the dead-letter queue.
    private static func documentEvents(_ dialect: SQLDialect, types: [EventType]) -> String {
        let postgres = dialect == .postgres
        let (type, job, document) = postgres
            ? ("(attributes->'eventType'->>'value')", "(attributes->'jobId'->>'value')", "(body::jsonb->>'documentId')")
            : ("json_extract(attributes, '$.eventType.value')", "json_extract(attributes, '$.jobId.value')",
               "CAST(json_extract(body, '$.documentId') AS TEXT)")
        let (placeholder, dlqPlaceholder) = postgres ? ("$1", "$2") : ("?1", "?2")
        let (dlqJob, dlqDocument) = postgres
            ? ("(m.attributes->'jobId'->>'value')", "(m.attributes->'documentId'->>'value')")
            : ("json_extract(m.attributes, '$.jobId.value')", "CAST(json_extract(m.attributes, '$.documentId.value') AS TEXT)")
        return """
            SELECT DISTINCT \(type) AS t, \(document) AS doc FROM broker_events
            WHERE \(job) = \(placeholder) AND \(type) IN (\(list(types)))
            UNION
            SELECT '\(deadLetterMarker)' AS t, \(dlqDocument) AS doc
            FROM broker_messages m JOIN broker_queues q ON q.id = m.queue_id
            WHERE q.name = \(dlqPlaceholder) AND \(dlqJob) = \(placeholder)
            """
    }

    /// Marks a document with a dead letter still waiting in the dead-letter queue in the summary query.
    private static let deadLetterMarker = "DEAD_LETTER_PENDING"

    /// Event names as an SQL list of constants (names of ``EventType``, `[A-Z_]` only; never request data).
    private static func list(_ types: [EventType]) -> String { types.map { "'\($0.rawValue)'" }.joined(separator: ", ") }

    private func existing(_ jobID: String) async throws -> ExchangeRecord {
        guard let record = try await store.get(jobID) else { throw OrchestratorError(.notFound, "no exchange has job id '\(jobID)'") }
        return record
    }

    /// The exchange's recorded queues that exist in the broker and belong to it (a queue recorded
    /// before a create that found another exchange's queue of that name is never touched).
    private func existingQueues(_ jobID: String) async throws -> [QueueInfo] {
        var result: [QueueInfo] = []
        for resource in try await store.resources(jobID) where resource.kind == .queue {
            if let queue = try await broker.queue(named: resource.name), queue.attributes.exchangeID == jobID { result.append(queue) }
        }
        return result
    }

    func envelope(_ record: ExchangeRecord, _ type: EventType, detail: ExchangeStatusDetail) throws -> EventEnvelope {
        try EventEnvelope(
            type: type, source: settings.eventSource, jobID: record.jobID, caseID: record.destinationCaseID,
            sourceCaseID: record.sourceCaseID, batchID: record.batchID, correlationID: record.jobID, detail: detail)
    }
}

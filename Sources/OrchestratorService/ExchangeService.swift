import Broker
import CaseData
import Foundation
import Logging
import Orchestrator

/// What the HTTP API does, independent of HTTP: accepts, reads, lists, cancels and retries exchanges on the
/// ``ExchangeStore`` and ``ExchangeRunner`` of one broker.
public struct ExchangeService: Sendable {
    /// The broker whose database holds the exchanges.
    public let broker: Broker
    /// The exchanges' state.
    public let store: ExchangeStore
    /// The lifecycle (cancellation, live progress).
    public let runner: ExchangeRunner
    /// The service's settings.
    public let settings: OrchestratorServiceSettings

    /// A service over `broker`, copying case data with `copier`.
    public init(
        broker: Broker, copier: any CaseDataCopying, settings: OrchestratorServiceSettings = .init(),
        logger: Logger = Logger(label: "exchanger.orchestrator")
    ) {
        self.broker = broker
        self.store = ExchangeStore(broker: broker)
        self.runner = ExchangeRunner(broker: broker, copier: copier, settings: settings.core, logger: logger)
        self.settings = settings
    }

    /// Validates `body` and accepts the exchange under the client's `idempotencyKey` (the
    /// `Idempotency-Key` header) or the key derived from the request; a retry returns the stored
    /// exchange with `created` false.
    /// - Throws: ``OrchestratorError`` `.invalidRequest` (with the field), `.idempotencyConflict`.
    public func submit(body: Data, idempotencyKey: String?) async throws -> (record: ExchangeRecord, created: Bool) {
        let request = try ExchangeRequest.parse(body, limits: settings.core.limits)
        let key = try request.idempotencyKey(client: idempotencyKey)
        return try await store.accept(request, idempotencyKey: key, limits: settings.core.limits)
    }

    /// The exchange with its progress (live from the event log while it runs), nil when unknown.
    public func exchange(_ jobID: String) async throws -> ExchangeView? {
        guard let record = try await store.get(jobID) else { return nil }
        if record.state.isFinal { return ExchangeView(record) }
        let (summary, stages) = try await runner.drainer.summary(jobID, total: record.totalDocuments ?? 0, request: record.request)
        return ExchangeView(record, summary: summary, stages: stages)
    }

    /// Exchanges, newest first, optionally only those in `state` and/or of `caseID` (source or
    /// destination); at most `limit` (capped by ``OrchestratorServiceSettings/listLimit``).
    public func list(state: ExchangeState?, caseID: Int64?, limit: Int?) async throws -> [ExchangeView] {
        let count = min(max(1, limit ?? settings.listLimit), settings.listLimit)
        return try await store.list(state: state, caseID: caseID, limit: count).map { ExchangeView($0) }
    }

    /// Cancels a running exchange: it moves to TEARING_DOWN(CANCELLED) now and the work loop tears
    /// it down to CANCELLED.
    /// - Throws: ``OrchestratorError`` `.notFound`; `.stateConflict` when the exchange is already
    ///   FINISHED, FAILED or CANCELLED, or is already being torn down towards FAILED.
    public func cancel(_ jobID: String) async throws -> ExchangeRecord {
        guard let record = try await store.get(jobID) else { throw OrchestratorError(.notFound, "no exchange has job id '\(jobID)'") }
        if record.state.isFinal {
            throw OrchestratorError(.stateConflict, "exchange \(jobID) is already \(record.state)")
        }
        let result = try await runner.cancel(jobID)
        switch result.state {
        case .tearingDown(.cancelled), .cancelled: return result
        default: throw OrchestratorError(.stateConflict, "exchange \(jobID) is already \(result.state)")
        }
    }

    /// Retries an ended exchange's left-behind documents (failed or not found, and not delivered by
    /// another exchange since, read from the destination case's ledger) as a new exchange with the
    /// same request, those documents as its selection and `retryOf` set: rows the first exchange
    /// copied keep their destination ids, so nothing is copied twice. Idempotent: while the same
    /// documents are left behind, a second call returns the same retry (`created` false); to retry
    /// again after a retry ended with failures, retry the retry.
    /// - Throws: ``OrchestratorError`` `.notFound`; `.stateConflict` when the exchange has not
    ///   ended or left nothing behind.
    public func retry(_ jobID: String) async throws -> (record: ExchangeRecord, created: Bool) {
        guard let record = try await store.get(jobID) else { throw OrchestratorError(.notFound, "no exchange has job id '\(jobID)'") }
        guard record.state.isFinal else {
            throw OrchestratorError(
                .stateConflict, "exchange \(jobID) is \(record.state.name); retry it once it has ended (cancel it to end it now)")
        }
        let documents: [Int64]
        do {
            documents = try await runner.copier.leftBehindSourceDocuments(record)
        } catch let error as CaseDataError where error.code == .notFound {
            throw OrchestratorError(.stateConflict, "exchange \(jobID) cannot be retried: \(error.message)")
        }
        guard !documents.isEmpty else {
            throw OrchestratorError(
                .stateConflict,
                "exchange \(jobID) left no document behind that is still undelivered (its failed and not-found documents were delivered since, or it copied none: resubmit its request instead)")
        }
        var request = record.request
        request.selection = .documents(documents)
        request.skipExchanged = false
        request.retryOf = jobID
        // The documents come from the ledger, not from a client: no request-size limit applies.
        return try await store.accept(request, idempotencyKey: try request.idempotencyKey(), limits: RequestLimits(maxDocumentIDs: .max))
    }

    /// Whether the broker answers a query within `timeout`.
    public func isReady(timeout: Duration = .seconds(2)) async -> Bool {
        let broker = broker
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                do {
                    try await broker.transaction { tx in _ = try await tx.query("SELECT 1") }
                    return true
                } catch {
                    return false
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }
}

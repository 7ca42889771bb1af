import Broker
import CaseDatabase
import ExchangerEvents
import Foundation
import Logging
import WorkerRuntime

/// Writes an exchange batch's status into the destination case database for the lifecycle events
/// EXCHANGER_INITIATED, EXCHANGER_FINISHED and EXCHANGER_FAILED (table `document_exchange_batches`,
/// see ``BatchStatusStore``).
///
/// - An event without `caseId` (the destination case) or `batchId`, or a body that is not an
///   event, is a permanent error (dead-lettered at once).
/// - A case without a database is a permanent error; a case database that cannot be reached is
///   recoverable (retried with backoff).
/// - Any other event type is acknowledged with a log line: only a subscription change routes
///   one here, and there is nothing to do for it.
/// - Duplicates and late events change nothing: the store's rank guard decides.
public struct StatusUpdateHandler: MessageHandler {
    /// The topic filter policy of the status queue's subscription.
    public static let filterPolicy = #"{"eventType":["EXCHANGER_INITIATED","EXCHANGER_FINISHED","EXCHANGER_FAILED"]}"#
    /// The program name of the status queue.
    public static let program = "status-update"

    public let store: BatchStatusStore

    /// Closes the case-database connections (the worker runtime calls this after the worker stopped).
    public func shutdown() async {
        await store.shutdown()
    }

    public init(store: BatchStatusStore) {
        self.store = store
    }

    /// Creates the status queue and its dead-letter queue when missing, and subscribes the status
    /// queue to the lifecycle events. Safe to run any number of times, from several processes.
    public static func prepare(broker: Broker, settings: StatusUpdateSettings, logger: Logger) async throws {
        try await GlobalQueue.ensureDeadLetterQueue(broker, settings.deadLetterQueue, logger: logger)
        try await GlobalQueue.ensure(
            broker, settings.queue,
            QueueAttributes(maxReceiveCount: settings.maxReceiveCount, deadLetterQueue: settings.deadLetterQueue, program: program),
            logger: logger)
        let subscription = try await broker.subscribe(settings.queue, topic: settings.topic, filterPolicy: filterPolicy)
        logger.info("status queue subscribed", metadata: ["queue": "\(settings.queue)", "subscription": "\(subscription.id)"])
    }

    /// The batch status an event type sets, nil for other types.
    public static func status(for type: EventType) -> BatchStatus? {
        switch type {
        case .exchangerInitiated: .initiated
        case .exchangerFinished: .finished
        case .exchangerFailed: .failed
        default: nil
        }
    }

    public func handle(_ message: WorkerMessage) async throws -> HandlerOutcome {
        let event = try EventEnvelope.decode(message.body)
        var logger = message.logger
        logger[metadataKey: "eventId"] = .string(event.eventID)
        logger[metadataKey: "eventType"] = .string(event.eventType.rawValue)
        guard let status = Self.status(for: event.eventType) else {
            logger.notice("not a status event; acknowledged without action")
            return .success
        }
        guard let caseID = event.caseID, caseID > 0 else {
            throw WorkerError.permanent("\(event.eventType) event \(event.eventID) has no destination caseId")
        }
        guard let batchID = event.batchID else {
            throw WorkerError.permanent("\(event.eventType) event \(event.eventID) has no batchId")
        }
        let detail = try? event.detail(as: ExchangeStatusDetail.self)
        var reason = detail?.reason
        if reason == nil, status == .failed { reason = event.detail["error"]?.stringValue ?? event.detail["reason"]?.stringValue }
        var summary: String?
        if let value = detail?.summary { summary = try? EventCoding.string(value) }
        let update = BatchStatusUpdate(
            batchID: batchID, jobID: event.jobID, sourceCaseID: event.sourceCaseID, status: status, eventID: event.eventID,
            reason: reason, summary: summary)
        let changed: Bool
        do {
            changed = try await store.record(update, caseID: caseID)
        } catch let error as CaseDatabaseError {
            switch error.code {
            case .notFound, .invalidCaseID:
                throw WorkerError.permanent("case \(caseID): \(error.message)")
            default:
                throw WorkerError.recoverable("case \(caseID): \(error.message)")
            }
        }
        if changed {
            logger.info("batch status recorded", metadata: ["status": "\(status.rawValue)"])
        } else {
            logger.info("batch status unchanged: a duplicate, or the batch already has a later status",
                metadata: ["status": "\(status.rawValue)"])
        }
        return .success
    }
}

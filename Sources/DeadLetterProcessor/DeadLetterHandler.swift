import Broker
import ExchangerEvents
import Foundation
import Logging
import WorkerRuntime

/// Records every dead letter of the global dead-letter queue (see ``DeadLetterStore``) and
/// publishes the error event the failed queue's program maps to (the reference's mapping,
/// extended to every processor): s3-copy → S3_DOC_COPIED, pre-uploader → PRE_UPLOADER_FINISHED,
/// uploader → UPLOADER_FINISHED, re-ocr → RE_OCR_FINISHED, search-text → SEARCH_TEXT_FINISHED,
/// orchestrator → EXCHANGER_FAILED, each with a ``ProcessingErrorDetail`` (status `ERROR`). A dead
/// letter of any other program is recorded and logged, and publishes nothing.
///
/// **Idempotency instead of one transaction.** The record is inserted in its own statement
/// before the handler returns, and the event goes out in the runtime's transaction with the
/// acknowledgement (``Effects``), so the two are not one transaction. Both halves are idempotent:
/// the insert is `ON CONFLICT (message_id) DO NOTHING`, and the event id is deterministic
/// (job, type, document, original message id), which the broker stores and delivers once. A crash
/// between the two re-delivers the dead letter, which records nothing new and publishes the event
/// that was missing; a dead letter delivered twice is recorded once and published once.
public struct DeadLetterHandler: MessageHandler {
    /// The `source` of the events published.
    public static let source = "exchanger-dlq"
    /// The program name of the dead-letter queue.
    public static let program = "dlq"

    /// The error event of each program's dead letters.
    public static let errorEvents: [String: EventType] = [
        "s3-copy": .s3DocCopied,
        "pre-uploader": .preUploaderFinished,
        "uploader": .uploaderFinished,
        "re-ocr": .reOCRFinished,
        "search-text": .searchTextFinished,
        "orchestrator": .exchangerFailed,
    ]

    public let broker: Broker
    public let store: DeadLetterStore

    public init(broker: Broker) {
        self.broker = broker
        self.store = DeadLetterStore(broker: broker)
    }

    /// Creates the dead-letter queue when it is missing (14 days retention, program `dlq`).
    public static func prepare(broker: Broker, settings: DeadLetterSettings, logger: Logger) async throws {
        try await GlobalQueue.ensureDeadLetterQueue(broker, settings.queue, logger: logger)
    }

    public func handle(_ message: WorkerMessage) async throws -> HandlerOutcome {
        let letter = try await DeadLetter.from(message, broker: broker)
        var logger = message.logger
        logger[metadataKey: "failedQueue"] = .string(letter.queue)
        logger[metadataKey: "originalMessageId"] = .string(letter.messageID)
        if let program = letter.program { logger[metadataKey: "failedProgram"] = .string(program) }
        for (key, value) in [("jobId", letter.jobID), ("caseId", letter.caseID.map(String.init)), ("batchId", letter.batchID.map(String.init)),
                             ("documentId", letter.documentID.map(String.init))] {
            if let value { logger[metadataKey: key] = .string(value) }
        }
        let recorded = try await store.record(letter)
        if recorded {
            logger.warning("dead letter recorded", metadata: ["reason": "\(letter.reason)", "error": "\(letter.error)"])
        } else {
            logger.info("dead letter was recorded before (delivered again)")
        }
        guard let event = try Self.errorEvent(for: letter) else {
            logger.warning("no error event for this program; recorded only", metadata: ["program": "\(letter.program ?? "unknown")"])
            return .success
        }
        return .success(Effects(events: [event]))
    }

    /// The error event of a dead letter, nil when its program has none.
    public static func errorEvent(for letter: DeadLetter) throws -> EventEnvelope? {
        guard let program = letter.program, let type = errorEvents[program] else { return nil }
        let detail = ProcessingErrorDetail(
            error: letter.error, queue: letter.queue, program: letter.program, messageID: letter.messageID,
            receiveCount: letter.receiveCount, reason: letter.reason)
        return try EventEnvelope(
            type: type, source: source, jobID: letter.jobID, caseID: letter.caseID, sourceCaseID: letter.sourceCaseID,
            batchID: letter.batchID, documentID: letter.documentID, correlationID: letter.correlationID, detail: detail,
            eventID: EventID.deterministic(jobID: letter.jobID ?? "", type: type, documentID: letter.documentID, qualifier: letter.messageID))
    }
}

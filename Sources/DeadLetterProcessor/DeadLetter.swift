import Broker
import ExchangerEvents
import Foundation
import WorkerRuntime

/// One dead letter as the dead-letter processor understands it, before it is recorded.
///
/// Two kinds arrive in the dead-letter queue:
/// - **wrapped**: the worker runtime moved the message itself (permanent error, retries
///   exhausted); the message carries the `exchanger.dead-letter` attribute and its body is a
///   ``DeadLetterEnvelope`` with the queue, program, error and reason;
/// - **raw**: the broker moved the message after its max receive count because no worker
///   acknowledged it (a worker crashed or its lease expired); the message is the original, and
///   ``ReceivedMessage/sourceQueue`` names the queue it came from.
public struct DeadLetter: Sendable, Hashable {
    /// The original message's id (unique per recorded dead letter).
    public var messageID: String
    /// The queue the message failed on.
    public var queue: String
    /// The program consuming that queue, when known.
    public var program: String?
    public var exchangeID: String?
    public var jobID: String?
    /// The destination case.
    public var caseID: Int64?
    public var sourceCaseID: Int64?
    public var batchID: Int64?
    public var documentID: Int64?
    public var correlationID: String?
    /// The original body as it was sent.
    public var body: String
    /// The original attributes.
    public var attributes: MessageAttributes
    public var receiveCount: Int
    public var error: String
    /// `permanent`, `retriesExhausted`, `leaseExpired` or `expired` (outlived its queue's retention).
    public var reason: String
    public var failedAt: Date

    /// The error text of a message the broker moved on its own.
    public static let leaseExpiredError =
        "exceeded the max receive count without being acknowledged (worker crashed or lease expired)"
    /// The reason of a message the broker moved on its own.
    public static let leaseExpiredReason = "leaseExpired"
    /// The reason of a message the broker moved because it outlived its queue's retention.
    public static let expiredReason = "expired"

    public init(
        messageID: String, queue: String, program: String?, exchangeID: String?, body: String, attributes: MessageAttributes,
        receiveCount: Int, error: String, reason: String, failedAt: Date
    ) {
        self.messageID = messageID
        self.queue = queue
        self.program = program
        self.exchangeID = exchangeID
        self.body = body
        self.attributes = attributes
        self.receiveCount = receiveCount
        self.error = error
        self.reason = reason
        self.failedAt = failedAt
        fillContext()
    }

    /// A dead letter the worker runtime wrapped.
    public init(envelope: DeadLetterEnvelope) {
        self.init(
            messageID: envelope.messageID, queue: envelope.queue, program: envelope.program, exchangeID: envelope.exchangeID,
            body: envelope.body, attributes: envelope.attributes, receiveCount: envelope.receiveCount, error: envelope.error,
            reason: envelope.reason, failedAt: envelope.failedAt)
    }

    /// Builds the dead letter of a message received from the dead-letter queue. A raw message's
    /// source queue is looked up for its program (it may be gone: then the program is unknown).
    public static func from(_ message: WorkerMessage, broker: Broker) async throws -> DeadLetter {
        let received = message.received
        var malformed: String?
        if received.attributes[DeadLetterEnvelope.attributeName] != nil {
            do {
                let envelope = try EventCoding.decode(DeadLetterEnvelope.self, from: message.body)
                return DeadLetter(envelope: envelope)
            } catch {
                malformed = "a dead-letter envelope that cannot be read (\(error))"
            }
        }
        let failedAt = Date(timeIntervalSince1970: Double(received.sentAtMilliseconds) / 1000)
        guard let source = received.sourceQueue else {
            // Sent to the dead-letter queue directly, or an envelope that cannot be read.
            return DeadLetter(
                messageID: received.messageID, queue: received.queue, program: nil, exchangeID: nil, body: message.body,
                attributes: received.attributes.filter { $0.key != DeadLetterEnvelope.attributeName },
                receiveCount: received.receiveCount,
                error: "the dead-letter queue received \(malformed ?? "a message with neither a dead-letter envelope nor a source queue")",
                reason: "unknown", failedAt: failedAt)
        }
        let queue = try await broker.queue(named: source)
        // A staged body was fetched by the runtime, which deletes the staged object after the
        // acknowledgement: keep the body itself, without the reference attribute.
        var attributes = received.attributes
        if message.body != received.body { attributes[PayloadStager.attributeName] = nil }
        if case .string(let seconds)? = attributes.removeValue(forKey: Broker.expiredAttribute) {
            return DeadLetter(
                messageID: received.messageID, queue: source, program: queue?.attributes.program, exchangeID: queue?.attributes.exchangeID,
                body: message.body, attributes: attributes, receiveCount: received.receiveCount,
                error: "the message was not handled within its queue's retention (\(seconds) s) and expired", reason: expiredReason,
                failedAt: failedAt)
        }
        return DeadLetter(
            messageID: received.messageID, queue: source, program: queue?.attributes.program, exchangeID: queue?.attributes.exchangeID,
            body: message.body, attributes: attributes, receiveCount: queue?.attributes.maxReceiveCount ?? received.receiveCount,
            error: leaseExpiredError, reason: leaseExpiredReason, failedAt: failedAt)
    }

    /// Fills the ids from the body (a ``DocumentTask`` or an ``EventEnvelope``), then from the
    /// message attributes for what the body did not say.
    mutating func fillContext() {
        if let task = try? DocumentTask.decode(body) {
            jobID = task.jobID
            caseID = task.caseID
            sourceCaseID = task.sourceCaseID
            batchID = task.batchID
            documentID = task.documentID
            correlationID = task.correlationID
        } else if let event = try? EventEnvelope.decode(body) {
            jobID = event.jobID
            caseID = event.caseID
            sourceCaseID = event.sourceCaseID
            batchID = event.batchID
            documentID = event.documentID
            correlationID = event.correlationID
        }
        if jobID == nil { jobID = Self.text(attributes["jobId"]) }
        if caseID == nil { caseID = Self.number(attributes["caseId"]) }
        if sourceCaseID == nil { sourceCaseID = Self.number(attributes["sourceCaseId"]) }
        if batchID == nil { batchID = Self.number(attributes["batchId"]) }
        if documentID == nil { documentID = Self.number(attributes["documentId"]) }
        if correlationID == nil { correlationID = Self.text(attributes["correlationId"]) }
    }

    private static func text(_ value: MessageAttributeValue?) -> String? {
        switch value {
        case .string(let text)?: text.isEmpty ? nil : text
        case .number(let number)?: Int64(exactly: number).map { String($0) } ?? String(number)
        default: nil
        }
    }

    private static func number(_ value: MessageAttributeValue?) -> Int64? {
        switch value {
        case .string(let text)?: Int64(text)
        case .number(let number)?: Int64(exactly: number)
        default: nil
        }
    }
}

import Broker
import ExchangerEvents
import Foundation

/// The body of a message the worker runtime moves to a dead-letter queue itself (permanent
/// errors, retries exhausted): the original message with why it failed.
///
/// Messages the broker moves on its own (receive count exceeded because the workers holding it
/// crashed or let the lease expire) arrive in the dead-letter queue unwrapped; the dead-letter
/// processor tells them apart by the ``attributeName`` attribute.
public struct DeadLetterEnvelope: Sendable, Hashable, Codable {
    /// The attribute that marks a wrapped dead letter.
    public static let attributeName = "exchanger.dead-letter"
    public static let currentVersion = 1

    public var version: Int
    public var queue: String
    public var program: String?
    public var exchangeID: String?
    public var messageID: String
    /// The original body, exactly as it was sent (a staged payload's reference stays a reference).
    public var body: String
    public var attributes: MessageAttributes
    public var receiveCount: Int
    public var sentAt: Date
    public var failedAt: Date
    public var error: String
    /// `permanent` or `retriesExhausted`.
    public var reason: String

    enum CodingKeys: String, CodingKey {
        case version, queue, program, exchangeID = "exchangeId", messageID = "messageId", body, attributes, receiveCount
        case sentAt, failedAt, error, reason
    }

    public init(message: ReceivedMessage, queue: QueueInfo, error: String, reason: String, failedAt: Date = Date()) {
        self.version = Self.currentVersion
        self.queue = message.queue
        self.program = queue.attributes.program
        self.exchangeID = queue.attributes.exchangeID
        self.messageID = message.messageID
        self.body = message.body
        self.attributes = message.attributes
        self.receiveCount = message.receiveCount
        self.sentAt = Date(timeIntervalSince1970: Double(message.sentAtMilliseconds) / 1000)
        self.failedAt = failedAt
        self.error = error
        self.reason = reason
    }

    /// Context attributes copied from the original message, so the dead letter can be filtered and logged.
    static let carriedAttributes = ["jobId", "caseId", "sourceCaseId", "batchId", "documentId", "eventType"]

    /// The dead letter as a message for the dead-letter queue.
    public func outgoing() throws -> OutgoingMessage {
        var attributes: MessageAttributes = [Self.attributeName: .string(reason)]
        for name in Self.carriedAttributes { if let value = self.attributes[name] { attributes[name] = value } }
        return OutgoingMessage(body: try EventCoding.string(self), attributes: attributes)
    }
}

import DatabaseSupport
import Foundation

/// A message to send to a queue.
public struct OutgoingMessage: Sendable, Hashable {
    public var body: String
    public var attributes: MessageAttributes
    /// Overrides the queue's default delay for this message (0 – 900 s).
    public var delay: Duration?
    /// Set by publish: the event this message carries.
    public var eventID: String?

    public init(body: String, attributes: MessageAttributes = [:], delay: Duration? = nil, eventID: String? = nil) {
        self.body = body
        self.attributes = attributes
        self.delay = delay
        self.eventID = eventID
    }

    public static let maxAttributes = 10

    func validate(maxBytes: Int?) throws(BrokerError) {
        guard !body.isEmpty else { throw BrokerError(.invalidMessage, "message body is empty") }
        guard !body.utf8.contains(0) else { throw BrokerError(.invalidMessage, "message body contains a NUL character") }
        if let maxBytes, body.utf8.count > maxBytes {
            throw BrokerError(.messageTooLarge, "message body is \(body.utf8.count) bytes; the queue allows \(maxBytes)")
        }
        if let delay, delay < .zero || delay > QueueAttributes.maxDelay {
            throw BrokerError(.invalidAttribute, "message delay must be between 0 and 900 s, not \(delay)")
        }
        try Self.validate(attributes)
    }

    static func validate(_ attributes: MessageAttributes) throws(BrokerError) {
        guard attributes.count <= maxAttributes else {
            throw BrokerError(.invalidMessage, "a message carries at most \(maxAttributes) attributes, not \(attributes.count)")
        }
        for key in attributes.keys {
            guard !key.isEmpty, key.utf8.count <= 256,
                key.unicodeScalars.allSatisfy({ $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "_-.".unicodeScalars.contains($0)) })
            else { throw BrokerError(.invalidMessage, "message attribute name '\(key)' must be 1–256 of [A-Za-z0-9_.-]") }
        }
    }
}

/// Identifies one receive of one message. Deleting or changing visibility with it only works while
/// it is the message's latest receipt: a stale handle never acts on a re-delivered message.
public struct ReceiptHandle: Sendable, Hashable, CustomStringConvertible, Codable {
    public let rowID: Int64
    public let token: String

    init(rowID: Int64, token: String) {
        self.rowID = rowID
        self.token = token
    }

    /// Parses the string form (`<row>.<token>`).
    public init(_ string: String) throws(BrokerError) {
        let parts = string.split(separator: ".", maxSplits: 1)
        guard parts.count == 2, let row = Int64(parts[0]), row > 0, parts[1].count == 32,
            parts[1].allSatisfy({ $0.isHexDigit && !$0.isUppercase })
        else { throw BrokerError(.invalidReceipt, "'\(string.prefix(80))' is not a receipt handle") }
        self.rowID = row
        self.token = String(parts[1])
    }

    public var description: String { "\(rowID).\(token)" }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        try self.init(text)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    /// A PostgreSQL uuid in canonical form from the 32-hex token.
    var uuidString: String {
        let t = Array(token)
        return String(t[0..<8]) + "-" + String(t[8..<12]) + "-" + String(t[12..<16]) + "-" + String(t[16..<20]) + "-" + String(t[20..<32])
    }

    static func token(fromUUID uuid: String) -> String {
        String(decoding: uuid.utf8.lazy.filter { $0 != UInt8(ascii: "-") }.map { $0 >= 0x41 && $0 <= 0x46 ? $0 + 0x20 : $0 }, as: UTF8.self)
    }
}

/// A message handed out by a receive.
public struct ReceivedMessage: Sendable, Hashable {
    public var queue: String
    public var messageID: String
    public var body: String
    public var attributes: MessageAttributes
    public var receipt: ReceiptHandle
    /// 1 on the first receive.
    public var receiveCount: Int
    public var sentAtMilliseconds: Int64
    public var firstReceivedAtMilliseconds: Int64
    /// The event this message carries, when it came from a publish.
    public var eventID: String?
    /// On a dead-letter queue: the queue the message was moved from.
    public var sourceQueue: String?
}

/// An event to publish on a topic.
public struct TopicMessage: Sendable, Hashable {
    /// Stored and fanned out once per id: publishing the same id again is a no-op.
    public var eventID: String
    public var body: String
    /// What subscription filter policies match against.
    public var attributes: MessageAttributes

    public init(eventID: String = MessageID.make(), body: String, attributes: MessageAttributes = [:]) {
        self.eventID = eventID
        self.body = body
        self.attributes = attributes
    }
}

/// What one publish did.
public struct PublishResult: Sendable, Hashable {
    public var eventID: String
    /// False when the event id had been published before: nothing was delivered again.
    public var published: Bool
    /// Queues that received a copy.
    public var deliveredTo: [String]
}

/// Per-entry outcome of a batch delete or visibility change: one bad entry never fails the rest.
public struct BatchOutcome: Sendable, Hashable {
    public var succeeded: [ReceiptHandle]
    public var failed: [ReceiptHandle: BrokerError]
}

enum AttributeCoding {
    static func encode(_ attributes: MessageAttributes) -> String? {
        guard !attributes.isEmpty else { return nil }
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        guard let data = try? encoder.encode(attributes) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    static func decode(_ value: SQLValue) -> MessageAttributes {
        guard let text = value.string, !text.isEmpty,
            let attributes = try? JSONDecoder().decode(MessageAttributes.self, from: Data(text.utf8))
        else { return [:] }
        return attributes
    }
}

import DatabaseSupport

/// Names of queues and topics: `[A-Za-z0-9_.-]{1,80}`.
public enum BrokerName {
    public static let maxLength = 80

    /// Throws ``BrokerError/Code/invalidName`` naming the fault.
    public static func validate(_ name: String, kind: String = "queue") throws(BrokerError) {
        guard !name.isEmpty else { throw BrokerError(.invalidName, "\(kind) name is empty") }
        guard name.utf8.count <= maxLength else {
            throw BrokerError(.invalidName, "\(kind) name '\(name.prefix(90))…' is longer than \(maxLength) characters")
        }
        for byte in name.utf8 {
            let ok = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-")
            guard ok else {
                throw BrokerError(.invalidName, "\(kind) name '\(name)' may only contain letters, digits, '_', '.' and '-'")
            }
        }
    }
}

/// A queue's settings, with SQS's defaults and limits.
public struct QueueAttributes: Sendable, Hashable, Codable {
    /// How long a received message stays hidden from other receivers (0 s – 12 h, default 30 s).
    public var visibilityTimeout: Duration = .seconds(30)
    /// Receives after which the next receive moves the message to ``deadLetterQueue`` (1–1000, default 3).
    public var maxReceiveCount: Int = 3
    /// Where messages go after ``maxReceiveCount`` receives; `nil` keeps them (they are redelivered).
    public var deadLetterQueue: String?
    /// Delay before a newly sent message becomes visible (0 – 900 s, default 0).
    public var delay: Duration = .zero
    /// How long a message is kept before the retention purge removes it (60 s – 14 days, default 4 days).
    public var retention: Duration = .seconds(4 * 86_400)
    /// Largest message body in bytes (1 KiB – 1 MiB, default 256 KiB).
    public var maxMessageBytes: Int = 262_144
    /// The exchange that owns the queue (its per-exchange queues), `nil` for global queues.
    public var exchangeID: String?
    /// The program that consumes it (`s3-copy`, `uploader`, …), for unbound workers.
    public var program: String?

    public init(
        visibilityTimeout: Duration = .seconds(30), maxReceiveCount: Int = 3, deadLetterQueue: String? = nil,
        delay: Duration = .zero, retention: Duration = .seconds(4 * 86_400), maxMessageBytes: Int = 262_144,
        exchangeID: String? = nil, program: String? = nil
    ) {
        self.visibilityTimeout = visibilityTimeout
        self.maxReceiveCount = maxReceiveCount
        self.deadLetterQueue = deadLetterQueue
        self.delay = delay
        self.retention = retention
        self.maxMessageBytes = maxMessageBytes
        self.exchangeID = exchangeID
        self.program = program
    }

    public static let maxVisibilityTimeout: Duration = .seconds(12 * 3600)
    public static let maxDelay: Duration = .seconds(900)
    public static let retentionRange: ClosedRange<Duration> = .seconds(60) ... .seconds(14 * 86_400)
    public static let maxMessageBytesRange: ClosedRange<Int> = 1024...1_048_576
    public static let maxReceiveCountRange: ClosedRange<Int> = 1...1000

    /// Throws ``BrokerError/Code/invalidAttribute`` naming the first attribute out of range.
    public func validate(queueName: String) throws(BrokerError) {
        guard visibilityTimeout >= .zero, visibilityTimeout <= Self.maxVisibilityTimeout else {
            throw BrokerError(.invalidAttribute, "visibility timeout must be between 0 s and 12 h, not \(visibilityTimeout)")
        }
        guard Self.maxReceiveCountRange.contains(maxReceiveCount) else {
            throw BrokerError(.invalidAttribute, "max receive count must be between 1 and 1000, not \(maxReceiveCount)")
        }
        guard delay >= .zero, delay <= Self.maxDelay else {
            throw BrokerError(.invalidAttribute, "delay must be between 0 and 900 s, not \(delay)")
        }
        guard Self.retentionRange.contains(retention) else {
            throw BrokerError(.invalidAttribute, "retention must be between 60 s and 14 days, not \(retention)")
        }
        guard Self.maxMessageBytesRange.contains(maxMessageBytes) else {
            throw BrokerError(.invalidAttribute, "max message size must be between 1024 and 1048576 bytes, not \(maxMessageBytes)")
        }
        if let deadLetterQueue {
            try BrokerName.validate(deadLetterQueue, kind: "dead-letter queue")
            guard deadLetterQueue != queueName else {
                throw BrokerError(.invalidAttribute, "queue '\(queueName)' cannot be its own dead-letter queue")
            }
        }
        if let exchangeID, exchangeID.isEmpty || exchangeID.utf8.count > 200 {
            throw BrokerError(.invalidAttribute, "exchange id must be 1 to 200 characters")
        }
        if let program { try BrokerName.validate(program, kind: "program") }
    }
}

/// A queue as stored.
public struct QueueInfo: Sendable, Hashable {
    public var name: String
    public var attributes: QueueAttributes
    /// A sealed queue refuses sends (and publishes skip it); receives and deletes go on.
    public var sealed: Bool
    public var createdAtMilliseconds: Int64
}

/// Approximate message counts of a queue, computed without scanning its backlog.
public struct QueueCounters: Sendable, Hashable, Codable {
    /// Messages a receive could return now.
    public var visible: Int
    /// Received and not yet deleted, still within their visibility timeout.
    public var inFlight: Int
    /// Sent with a delay that has not yet passed.
    public var delayed: Int

    public init(visible: Int, inFlight: Int, delayed: Int) {
        self.visible = visible
        self.inFlight = inFlight
        self.delayed = delayed
    }

    /// Every message the queue holds.
    public var total: Int { visible + inFlight + delayed }
}

/// A subscription of a queue to a topic.
public struct Subscription: Sendable, Hashable {
    public var id: Int64
    public var topic: String
    public var queue: String
    /// The filter policy's JSON, `nil` for "every message".
    public var filterPolicy: String?

    /// Whether a stored policy and a requested one are the same subscription (subscribing again
    /// with the same policy is a no-op; with another it is a conflict).
    static func samePolicy(_ stored: String?, _ requested: FilterPolicy?) -> Bool {
        guard let stored, let requested else { return stored == nil && requested == nil }
        return stored == requested.json
    }
}

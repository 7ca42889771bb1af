import CaseDatabase
import Foundation

/// Settings of the status-update processor; each from its environment variable, else the default.
///
/// | environment variable | meaning | default |
/// |---|---|---|
/// | `EXCHANGER_STATUS_QUEUE` | the queue it consumes | `exch-status` |
/// | `EXCHANGER_DLQ_QUEUE` | that queue's dead-letter queue | `exch-dlq` |
/// | `EXCHANGER_STATUS_MAX_RECEIVE_COUNT` | receives before a status event is dead-lettered | 3 |
/// | `EXCHANGER_CASE_DATABASE_URL`, `…_PREFIX`, `…_MAX_CONNECTIONS` | see ``CaseDatabaseSettings`` | |
public struct StatusUpdateSettings: Sendable, Hashable {
    public static let defaultQueue = "exch-status"
    public static let defaultDeadLetterQueue = "exch-dlq"
    public static let defaultMaxReceiveCount = 3

    /// The queue consumed (subscribed to the topic for the exchange lifecycle events).
    public var queue: String
    /// Where status events that cannot be written end.
    public var deadLetterQueue: String
    /// Receives of a status event before it moves to ``deadLetterQueue``.
    public var maxReceiveCount: Int
    /// The topic subscribed to; nil is the broker's default topic.
    public var topic: String?
    /// Where the case databases are.
    public var caseDatabase: CaseDatabaseSettings

    public init(
        caseDatabase: CaseDatabaseSettings, queue: String = Self.defaultQueue, deadLetterQueue: String = Self.defaultDeadLetterQueue,
        maxReceiveCount: Int = Self.defaultMaxReceiveCount, topic: String? = nil
    ) {
        self.caseDatabase = caseDatabase
        self.queue = queue
        self.deadLetterQueue = deadLetterQueue
        self.maxReceiveCount = maxReceiveCount
        self.topic = topic
    }

    /// Reads the settings from the environment (see the table above).
    /// - Throws: ``CaseDatabaseError`` or ``StatusUpdateError`` naming the variable at fault.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        self.init(caseDatabase: try CaseDatabaseSettings(environment: environment))
        if let value = environment["EXCHANGER_STATUS_QUEUE"], !value.isEmpty { queue = value }
        if let value = environment["EXCHANGER_DLQ_QUEUE"], !value.isEmpty { deadLetterQueue = value }
        if let text = environment["EXCHANGER_STATUS_MAX_RECEIVE_COUNT"], !text.isEmpty {
            guard let value = Int(text), (1...1000).contains(value) else {
                throw StatusUpdateError(.invalidConfiguration, "EXCHANGER_STATUS_MAX_RECEIVE_COUNT='\(text)' must be 1…1000")
            }
            maxReceiveCount = value
        }
    }
}

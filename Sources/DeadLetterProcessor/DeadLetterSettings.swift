import Foundation

/// Settings of the dead-letter processor.
///
/// | environment variable | meaning | default |
/// |---|---|---|
/// | `EXCHANGER_DLQ_QUEUE` | the dead-letter queue it consumes | `exch-dlq` |
public struct DeadLetterSettings: Sendable, Hashable {
    public static let defaultQueue = "exch-dlq"

    /// The global dead-letter queue.
    public var queue: String

    public init(queue: String = Self.defaultQueue) {
        self.queue = queue
    }

    /// Reads the settings from the environment (see the table above).
    public init(environment: [String: String]) {
        self.init(queue: environment["EXCHANGER_DLQ_QUEUE"].flatMap { $0.isEmpty ? nil : $0 } ?? Self.defaultQueue)
    }
}

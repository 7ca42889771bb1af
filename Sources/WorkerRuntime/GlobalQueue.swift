import Broker
import Logging

/// Creating the global queues a processor needs when they are missing.
public enum GlobalQueue {
    /// The dead-letter queue keeps messages 14 days (the longest retention), in case its processor is down.
    public static let deadLetterRetention: Duration = .seconds(14 * 86_400)
    /// The program of the dead-letter queue.
    public static let deadLetterProgram = "dlq"

    /// Creates `name` with `attributes` unless a queue of that name exists already (whatever its
    /// attributes: whoever created it first decided them; a difference is logged).
    public static func ensure(_ broker: Broker, _ name: String, _ attributes: QueueAttributes, logger: Logger) async throws {
        if let existing = try await broker.queue(named: name) {
            if existing.attributes != attributes {
                logger.notice("queue exists with other attributes; keeping them", metadata: ["queue": "\(name)"])
            }
            return
        }
        do {
            try await broker.createQueue(name, attributes: attributes)
            logger.info("queue created", metadata: ["queue": "\(name)"])
        } catch let error as BrokerError where error.code == .queueAlreadyExists {
            // Another process created it a moment ago.
        }
    }

    /// Creates the shared dead-letter queue `name` when missing (14 days retention, program `dlq`).
    public static func ensureDeadLetterQueue(_ broker: Broker, _ name: String, logger: Logger) async throws {
        try await ensure(broker, name, QueueAttributes(retention: deadLetterRetention, program: deadLetterProgram), logger: logger)
    }
}

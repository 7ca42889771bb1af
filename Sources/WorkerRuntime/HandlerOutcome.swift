import Broker
import ExchangerEvents
import Logging

/// What a processor implements: one message in, an outcome out.
///
/// Return ``HandlerOutcome`` for work that is done (its effects are committed with the
/// acknowledgement, in one transaction); throw for work that is not — a ``WorkerError`` says
/// which kind, anything else is classified by ``WorkerError/classify(_:)``. Handlers must be
/// idempotent: a message can be delivered again after a crash or a lost lease.
public protocol MessageHandler: Sendable {
    func handle(_ message: WorkerMessage) async throws -> HandlerOutcome

    /// Releases what the handler holds (HTTP clients, database connections) after the worker
    /// stopped. The default does nothing.
    func shutdown() async

    /// What the worker asks before each receive; nil (the default) receives without asking.
    var receiveGate: (any ReceiveGate)? { get }
}

extension MessageHandler {
    public func shutdown() async {}
    public var receiveGate: (any ReceiveGate)? { nil }
}

/// Holds a worker back from receiving, e.g. while a circuit breaker around what the handler calls
/// is open: messages then stay in the queue with their receive counts untouched instead of being
/// received, failed and dead-lettered.
public protocol ReceiveGate: Sendable {
    /// Whether the worker may receive now. While it answers false the worker receives nothing and
    /// asks again after ``WorkerConfiguration/gateRecheckInterval``; a stop request ends the wait.
    func permitsReceiving() async -> Bool
}

/// A received message as a handler sees it.
public struct WorkerMessage: Sendable {
    /// The message as the broker delivered it (for staged payloads: with the reference body).
    public var received: ReceivedMessage
    /// The body, with a staged payload already fetched.
    public var body: String
    /// The queue's attributes (visibility timeout, max receive count, owning exchange, program).
    public var queue: QueueInfo
    /// A logger carrying this message's context fields (queue, messageId, jobId, caseId, batchId, documentId).
    public var logger: Logger

    public init(received: ReceivedMessage, body: String, queue: QueueInfo, logger: Logger) {
        self.received = received
        self.body = body
        self.queue = queue
        self.logger = logger
    }
}

/// A message to send to a queue as part of an outcome.
public struct QueuedMessage: Sendable, Hashable {
    public var queue: String
    public var message: OutgoingMessage
    public init(queue: String, _ message: OutgoingMessage) {
        self.queue = queue
        self.message = message
    }
}

/// Everything a handled message causes on the broker side: events to publish and messages to
/// send. The runtime commits them together with the message's deletion, so "processed but not
/// acknowledged" and "acknowledged but not published" cannot happen.
public struct Effects: Sendable, Hashable {
    public var events: [EventEnvelope]
    public var messages: [QueuedMessage]

    public init(events: [EventEnvelope] = [], messages: [QueuedMessage] = []) {
        self.events = events
        self.messages = messages
    }

    public static let none = Effects()
    public var isEmpty: Bool { events.isEmpty && messages.isEmpty }
}

/// How a message ended when the handler returned normally.
public enum HandlerOutcome: Sendable, Hashable {
    /// Done: commit the effects and delete the message.
    case success(Effects)
    /// Already done earlier (silent): commit the effects (deduplicated by event id) and delete.
    case alreadyDone(reason: String, Effects)

    public static let success = HandlerOutcome.success(.none)

    var effects: Effects {
        switch self {
        case .success(let effects), .alreadyDone(_, let effects): effects
        }
    }
}

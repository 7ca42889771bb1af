import Broker
import ConcurrencySupport
import ExchangerEvents
import Logging
import Orchestrator
import Synchronization
import WorkerRuntime

/// A nudge the lifecycle work loop's idle wait returns early for.
public final class WorkLoopWakeup: Sendable {
    private let generation = Mutex(0)

    /// A wakeup not yet signalled.
    public init() {}

    /// Wakes the loop's current (or next) idle wait.
    public func signal() { generation.withLock { $0 += 1 } }

    /// The current generation; a wait returns once it differs.
    public var current: Int { generation.withLock { $0 } }
}

/// The orchestrator's second entry point: the `exch-orch` queue, subscribed to the events that end
/// a document's path (DOCUMENT_UPLOADED, DOCUMENT_INDEXED, DOCUMENT_NOT_FOUND and the dead-letter
/// error events). For each exchange named in a batch it brings the exchange's next completion
/// check forward (``ExchangeStore/expediteCompletionCheck(_:idleLease:)``) and wakes the work
/// loop, so an exchange is seen complete right after its last document, not a timer later. The
/// timer stays as the backstop (a lost event, a replica that was down).
///
/// Settings (environment): `EXCHANGER_ORCHESTRATOR_EVENT_QUEUE` (`exch-orch`),
/// `EXCHANGER_ORCHESTRATOR_EVENT_BATCH` (100), `EXCHANGER_ORCHESTRATOR_EVENT_WAIT_SECONDS` (5).
public struct LifecycleEventListener: Sendable {
    /// The listener's settings.
    public struct Settings: Sendable, Hashable {
        /// The queue (`exch-orch`).
        public var queue = "exch-orch"
        /// The topic it subscribes to; nil is the broker's default.
        public var topic: String?
        /// The dead-letter queue of the queue (`exch-dlq`).
        public var deadLetterQueue = "exch-dlq"
        /// Messages per receive (100).
        public var batchSize = 100
        /// Long-poll wait of a receive (5 s).
        public var wait: Duration = .seconds(5)
        /// Least time between two expedited checks of the same exchange (100 ms).
        public var minimumCheckGap: Duration = .milliseconds(100)

        /// Every setting at its default.
        public init() {}
    }

    /// The event types that can end a document's path.
    public static let eventTypes: [EventType] = [
        .documentUploaded, .documentIndexed, .documentNotFound,
        .s3DocCopied, .preUploaderFinished, .uploaderFinished, .reOCRFinished, .searchTextFinished,
    ]

    /// The subscription's filter policy.
    public static var filterPolicy: String {
        #"{"eventType":["# + eventTypes.map { "\"\($0.rawValue)\"" }.joined(separator: ",") + "]}"
    }

    /// The broker.
    public let broker: Broker
    /// The exchanges.
    public let store: ExchangeStore
    /// The listener's settings.
    public let settings: Settings
    /// The completion-check interval (an idle PROCESSING lease is at most this long).
    public let checkInterval: Duration
    /// Woken after each expedited check.
    public let wakeup: WorkLoopWakeup
    /// Where it logs.
    public let logger: Logger

    /// A listener with the given parts.
    public init(
        broker: Broker, store: ExchangeStore, settings: Settings, checkInterval: Duration, wakeup: WorkLoopWakeup, logger: Logger
    ) {
        self.broker = broker
        self.store = store
        self.settings = settings
        self.checkInterval = checkInterval
        self.wakeup = wakeup
        self.logger = logger
    }

    /// Creates the queue (and the dead-letter queue) when missing and subscribes it. Safe to run
    /// from every replica at once.
    public func prepare() async throws {
        try await GlobalQueue.ensureDeadLetterQueue(broker, settings.deadLetterQueue, logger: logger)
        try await GlobalQueue.ensure(
            broker, settings.queue,
            QueueAttributes(visibilityTimeout: .seconds(30), maxReceiveCount: 5, deadLetterQueue: settings.deadLetterQueue, program: "orchestrator"),
            logger: logger)
        _ = try await broker.subscribe(settings.queue, topic: settings.topic, filterPolicy: Self.filterPolicy)
    }

    /// Receives until `stop` is requested or the task is cancelled; failures are logged and
    /// retried after a pause (the timer keeps exchanges moving meanwhile).
    public func run(stop: StopSignal) async {
        var prepared = false
        var lastCheck: [String: ContinuousClock.Instant] = [:]
        // Exchanges whose event came within the gap of their last check: checked once the gap passed,
        // so the last document of an exchange never waits for the timer.
        var deferred: Set<String> = []
        var receipts: [ReceiptHandle] = []
        while !stop.isRequested, !Task.isCancelled {
            do {
                if !prepared {
                    try await prepare()
                    prepared = true
                }
                let wait = deferred.isEmpty ? settings.wait : settings.minimumCheckGap
                let (_, messages) = try await broker.acknowledgeAndReceive(
                    settings.queue, acknowledging: receipts, maxMessages: settings.batchSize, wait: wait)
                receipts = messages.map(\.receipt)
                var jobs = deferred
                deferred = []
                for message in messages {
                    if case .string(let jobID)? = message.attributes["jobId"], !jobID.isEmpty { jobs.insert(jobID) }
                }
                let now = ContinuousClock.now
                lastCheck = lastCheck.filter { now - $0.value < .seconds(60) }
                var expedited = false
                for jobID in jobs.sorted() {
                    if let last = lastCheck[jobID], now - last < settings.minimumCheckGap {
                        deferred.insert(jobID)
                        continue
                    }
                    lastCheck[jobID] = now
                    if try await store.expediteCompletionCheck(jobID, idleLease: checkInterval) { expedited = true }
                }
                if expedited { wakeup.signal() }
            } catch {
                if Task.isCancelled || error is CancellationError { break }
                // Unacknowledged messages come back after the visibility timeout; nothing is lost.
                receipts = []
                prepared = false
                logger.warning("lifecycle event listener failed; retrying", metadata: ["error": "\(error)", "queue": "\(settings.queue)"])
                await stop.sleep(for: .seconds(2))
            }
        }
        if !receipts.isEmpty { _ = try? await broker.deleteBatch(settings.queue, receipts) }
    }
}

import Broker
import ConcurrencySupport
import Foundation
import Logging
import ObjectStorage

/// The poll loop every processor runs.
///
/// Receives a batch, handles its messages concurrently (up to ``WorkerConfiguration/concurrency``),
/// extends the leases of messages still in hand, and ends each message in one of four ways:
/// success (effects and deletion committed in one transaction), recoverable (lease changed to a
/// jittered backoff; dead-lettered once the queue's max receive count is reached), permanent
/// (dead-lettered now, with the error) or silent (acknowledged). One message's failure never
/// touches its neighbours.
///
/// ``requestStop()`` (SIGTERM) stops receiving at once — a parked long poll is cancelled — lets
/// the batch in hand finish and be acknowledged, and then ``run()`` returns.
public final class Worker: Sendable {
    public let broker: Broker
    public let handler: any MessageHandler
    public let configuration: WorkerConfiguration
    public let stager: PayloadStager
    let logger: Logger
    let metrics: WorkerMetrics

    private struct State {
        var stopping = false
        var receiveTask: Task<[ReceivedMessage], any Error>?
        var queues: [String: QueueInfo] = [:]
        /// Exchanges (jobId) this worker has handled a message of, oldest first, at most
        /// ``Worker/exchangesRemembered``.
        var exchangesSeen: [String] = []
    }

    /// How many exchange ids a worker remembers for its "first message of an exchange" log line.
    static let exchangesRemembered = 256

    private let state = LockedBox(State())

    public init(
        broker: Broker, handler: any MessageHandler, configuration: WorkerConfiguration, stager: PayloadStager,
        logger: Logger
    ) {
        self.broker = broker
        self.handler = handler
        self.configuration = configuration
        self.stager = stager
        // `program` in every line is the executable's (set by the log handler).
        self.logger = logger
        self.metrics = WorkerMetrics(program: configuration.program)
    }

    /// Stops receiving; the batch in hand is finished and acknowledged, then ``run()`` returns.
    public func requestStop() {
        let task = state.withLock { state -> Task<[ReceivedMessage], any Error>? in
            state.stopping = true
            return state.receiveTask
        }
        task?.cancel()
    }

    /// Whether ``requestStop()`` was called.
    public var isStopping: Bool { state.withLock { $0.stopping } }

    /// Runs until ``requestStop()``, or (bound mode) until the queue is deleted.
    public func run() async throws {
        logger.info("worker started", metadata: ["source": "\(configuration.source)"])
        var rotation = QueueRotation()
        var lastRefresh: ContinuousClock.Instant?
        var errorDelay = configuration.receiveErrorDelay
        var gated = false
        var hold = StorageAccessHold(initial: configuration.storageHold, maximum: configuration.storageHoldMaximum)
        var batchLimit: Int?
        while !isStopping {
            switch hold.decide(now: .now) {
            case .receive:
                batchLimit = nil
            case .wait:
                try? await sleepUnlessStopping(min(configuration.gateRecheckInterval, hold.until.map { $0 - .now } ?? .zero))
                continue
            case .probe:
                if let backed = handler as? any StorageBackedHandler {
                    do {
                        try await backed.store.probe()
                        hold.cleared()
                        logger.notice("receiving resumed: the object store lets this worker in again")
                    } catch where StorageAccessHold.isAccessRefusal(error) {
                        hold.refused(now: .now)
                        continue
                    } catch {
                        // Unreachable rather than refusing: let the messages' own retries deal with it.
                        hold.cleared()
                    }
                } else {
                    // No store to probe: one message finds out.
                    batchLimit = 1
                }
            }
            if let gate = handler.receiveGate {
                if !(await gate.permitsReceiving()) {
                    if !gated { logger.warning("receiving paused: the handler's receive gate is closed") }
                    gated = true
                    try? await sleepUnlessStopping(configuration.gateRecheckInterval)
                    continue
                }
                if gated { logger.notice("receiving resumed: the handler's receive gate opened") }
                gated = false
            }
            let queueName: String
            let wait: Duration
            switch configuration.source {
            case .queue(let name):
                queueName = name
                wait = configuration.wait
            case .program(let program):
                let now = ContinuousClock.now
                if lastRefresh.map({ now - $0 >= configuration.queueRefreshInterval }) ?? true {
                    do {
                        let queues = try await broker.listQueues(QueueFilter(program: program)).filter { !$0.sealed }
                        rotation.replace(with: queues.map(\.name))
                        state.withLock { state in for queue in queues { state.queues[queue.name] = queue } }
                        lastRefresh = now
                    } catch {
                        logger.warning("could not list queues", metadata: ["error": "\(error)"])
                        try? await Task.sleep(for: errorDelay)
                        continue
                    }
                }
                guard let next = rotation.next() else {
                    try? await sleepUnlessStopping(configuration.unboundIdleWait)
                    continue
                }
                queueName = next
                // Every queue gets a quick look first; only a full round of empty queues long-polls.
                wait = rotation.roundWasEmpty ? configuration.unboundIdleWait : .zero
            }

            let messages: [ReceivedMessage]
            let queue: QueueInfo
            do {
                queue = try await queueInfo(queueName)
                messages = try await receive(queueName, queue: queue, wait: wait, limit: batchLimit)
                errorDelay = configuration.receiveErrorDelay
            } catch let error as BrokerError where error.code == .queueNotFound {
                state.withLock { _ = $0.queues.removeValue(forKey: queueName) }
                if case .queue = configuration.source {
                    logger.info("queue no longer exists; worker exits", metadata: ["queue": "\(queueName)"])
                    return
                }
                rotation.remove(queueName)
                continue
            } catch {
                if isStopping { break }
                logger.warning("receive failed", metadata: ["queue": "\(queueName)", "error": "\(error)"])
                try? await sleepUnlessStopping(errorDelay)
                errorDelay = min(errorDelay * 2, configuration.receiveErrorDelay * 10)
                continue
            }
            rotation.record(empty: messages.isEmpty)
            if messages.isEmpty { continue }
            let (refusal, passed) = await process(messages, queue: queue)
            if let refusal, !passed {
                let first = hold.until == nil
                hold.refused(now: .now)
                if first {
                    logger.warning("receiving paused: the object store refuses this worker; fix its access, documents wait in the queue", metadata: [
                        "error": "\(refusal)", "pauseSeconds": "\(configuration.storageHold.components.seconds)",
                    ])
                }
            } else if passed, hold.until != nil {
                hold.cleared()
                logger.notice("receiving resumed: the object store lets this worker in again")
            }
        }
        logger.info("worker stopped")
    }

    // MARK: Receiving

    private func receive(_ name: String, queue: QueueInfo, wait: Duration, limit: Int? = nil) async throws -> [ReceivedMessage] {
        let broker = self.broker
        let batch = min(configuration.batchSize, limit ?? configuration.batchSize)
        let lease = configuration.visibilityTimeout
        let task = Task { try await broker.receive(name, maxMessages: batch, wait: wait, visibilityTimeout: lease) }
        let stopping = state.withLock { state -> Bool in
            state.receiveTask = task
            return state.stopping
        }
        if stopping { task.cancel() }
        defer { state.withLock { $0.receiveTask = nil } }
        // Messages a cancelled receive still returns are handled: they are leased to us now.
        return try await task.value
    }

    private func sleepUnlessStopping(_ duration: Duration) async throws {
        let step = Duration.milliseconds(50)
        var left = duration
        while left > .zero, !isStopping {
            try await Task.sleep(for: min(step, left))
            left -= step
        }
    }

    /// The queue's attributes, cached (they change only through `setAttributes`).
    func queueInfo(_ name: String) async throws -> QueueInfo {
        if let cached = state.withLock({ $0.queues[name] }) { return cached }
        guard let info = try await broker.queue(named: name) else {
            throw BrokerError(.queueNotFound, "queue \(name) does not exist")
        }
        state.withLock { $0.queues[name] = info }
        return info
    }

    // MARK: Handling

    /// One handled message and how it ended.
    struct Handled: Sendable {
        var message: ReceivedMessage
        var logger: Logger
        var result: Result<HandlerOutcome, any Error>
        var stagedInput: ObjectKey?
    }

    /// Handles and settles a batch; returns the first error that was the object store refusing
    /// access, and whether any message went through (see ``StorageAccessHold``).
    @discardableResult
    private func process(_ messages: [ReceivedMessage], queue: QueueInfo) async -> (refusal: (any Error)?, passed: Bool) {
        let lease = configuration.visibilityTimeout ?? queue.attributes.visibilityTimeout
        let inHand = LockedBox(Set(messages.map(\.receipt)))
        let extender = Task { [broker, logger, configuration] in
            let interval = configuration.extensionInterval(lease: lease)
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                if Task.isCancelled { return }
                let receipts = Array(inHand.withLock { $0 })
                if receipts.isEmpty { continue }
                do {
                    _ = try await broker.changeVisibilityBatch(queue.name, receipts, timeout: lease)
                } catch {
                    logger.warning("could not extend leases", metadata: ["queue": "\(queue.name)", "error": "\(error)"])
                }
            }
        }
        metrics.inFlight(add: messages.count)
        let handled = await withTaskGroup(of: Handled.self, returning: [Handled].self) { group in
            var iterator = messages.makeIterator()
            var results: [Handled] = []
            var running = 0
            while running < max(1, configuration.concurrency), let message = iterator.next() {
                group.addTask { await self.handle(message, queue: queue) }
                running += 1
            }
            while let done = await group.next() {
                results.append(done)
                if let message = iterator.next() { group.addTask { await self.handle(message, queue: queue) } }
            }
            return results
        }
        await settle(handled, queue: queue)
        extender.cancel()
        metrics.inFlight(add: -messages.count)
        var refusal: (any Error)?
        var passed = false
        for item in handled {
            switch item.result {
            case .success: passed = true
            case .failure(let error) where StorageAccessHold.isAccessRefusal(error): refusal = refusal ?? error
            case .failure: break
            }
        }
        return (refusal, passed)
    }

    private func handle(_ message: ReceivedMessage, queue: QueueInfo) async -> Handled {
        let logger = Self.contextLogger(logger, message)
        noteExchange(message, logger: logger)
        let started = ContinuousClock.now
        var stagedInput: ObjectKey?
        let result: Result<HandlerOutcome, any Error>
        do {
            stagedInput = try PayloadStager.stagedKey(of: message)
            let body = try await stager.resolve(message)
            let outcome = try await handler.handle(WorkerMessage(received: message, body: body, queue: queue, logger: logger))
            result = .success(outcome)
        } catch {
            result = .failure(error)
        }
        metrics.handled(duration: ContinuousClock.now - started, queue: queue.name)
        return Handled(message: message, logger: logger, result: result, stagedInput: stagedInput)
    }

    /// Logs (info) the first message of each exchange this worker handles: a log tail then shows
    /// every stage of an exchange with its jobId, without a line per message.
    private func noteExchange(_ message: ReceivedMessage, logger: Logger) {
        guard case .string(let job)? = message.attributes["jobId"] else { return }
        let first = state.withLock { state -> Bool in
            if state.exchangesSeen.contains(job) { return false }
            state.exchangesSeen.append(job)
            if state.exchangesSeen.count > Self.exchangesRemembered { state.exchangesSeen.removeFirst() }
            return true
        }
        if first { logger.info("first message of this exchange") }
    }

    /// A logger with the message's context fields.
    static func contextLogger(_ base: Logger, _ message: ReceivedMessage) -> Logger {
        var logger = base
        logger[metadataKey: "queue"] = .string(message.queue)
        logger[metadataKey: "messageId"] = .string(message.messageID)
        logger[metadataKey: "receiveCount"] = .stringConvertible(message.receiveCount)
        for key in ["jobId", "caseId", "sourceCaseId", "batchId", "documentId", "eventType"] {
            switch message.attributes[key] {
            case .string(let value)?: logger[metadataKey: key] = .string(value)
            case .number(let value)?:
                logger[metadataKey: key] = value.rounded() == value ? .string(String(Int64(value))) : .string(String(value))
            default: break
            }
        }
        return logger
    }
}

/// Round-robin over an unbound worker's queues, remembering whether a whole round came back empty.
struct QueueRotation {
    private(set) var names: [String] = []
    private var index = 0
    private var emptyInRound = 0

    mutating func replace(with names: [String]) {
        let sorted = names.sorted()
        if sorted != self.names {
            self.names = sorted
            index = 0
            emptyInRound = 0
        }
    }

    mutating func remove(_ name: String) { replace(with: names.filter { $0 != name }) }

    mutating func next() -> String? {
        guard !names.isEmpty else { return nil }
        let name = names[index % names.count]
        index = (index + 1) % names.count
        return name
    }

    /// True when the last `names.count` receives all came back empty.
    var roundWasEmpty: Bool { !names.isEmpty && emptyInRound >= names.count }

    mutating func record(empty: Bool) { emptyInRound = empty ? emptyInRound + 1 : 0 }
}

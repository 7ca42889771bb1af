import ConcurrencySupport
import DatabaseSupport
import ExchangerLogging
import Foundation
import Logging
import PostgresClient
import SQLiteClient

/// Settings for a ``Broker``. Every timing and size has a default and can be changed.
public struct BrokerConfiguration: Sendable {
    /// Most database connections this process opens to the broker database.
    public var maxConnections: Int = 8
    /// How long a call waits for a free connection.
    public var connectionAcquireTimeout: Duration = .seconds(30)
    /// PostgreSQL session settings (statement and idle-in-transaction timeouts, …).
    ///
    /// Broker sessions turn sequential and bitmap scans off and always plan with the actual
    /// parameter values: every broker statement is written for an ordered index scan or primary-key
    /// lookups, and the planner otherwise leaves them in two ways. A queue table analyzed while it
    /// was empty but still holding its pages has statistics of "0 tuples per page", so the planner
    /// estimates 0 rows however large the queue grows and reads and sorts the whole queue on every
    /// receive until the next ANALYZE (measured here: 20 ms instead of 0.1 ms per receive at 20k
    /// messages). And after five executions a prepared statement may switch to a generic plan that
    /// cannot see `LIMIT $n` and keeps a whole-queue plan for the life of the connection. Either
    /// showed as runs of 0.8–1.8k instead of 9–11k messages/s in `exchanger bench broker`.
    public var postgres: PostgresConfiguration = {
        var configuration = PostgresConfiguration()
        configuration.sessionParameters = [("enable_seqscan", "off"), ("enable_bitmapscan", "off"), ("plan_cache_mode", "force_custom_plan")]
        return configuration
    }()
    /// A long-polling receiver looks at its queue at least this often even without a notification (≤ 1 s).
    public var fallbackPollInterval: Duration = .seconds(1)
    /// SQLite: how often a waiting process checks whether another process wrote.
    public var sqliteChangePollInterval: Duration = .milliseconds(10)
    /// PostgreSQL: wait between attempts to re-open a lost listener connection (doubles up to 5 s).
    public var listenerReconnectDelay: Duration = .milliseconds(100)
    /// Most messages one receive may return.
    public var maxReceiveBatch: Int = 10_000
    /// Longest long-poll wait a receive may ask for.
    public var maxWait: Duration = .seconds(300)
    /// Rows deleted per statement by purges and the retention sweep.
    public var purgeBatchSize: Int = 5_000
    /// The topic `publish` uses when none is named.
    public var defaultTopic: String = "exchanger-events"
    /// How often ``Broker/runMaintenance()`` sweeps expired messages and checks the message table.
    public var maintenanceInterval: Duration = .seconds(2)
    /// Dead rows in the message table above which maintenance vacuums it (PostgreSQL).
    public var vacuumDeadRowThreshold: Int = 10_000

    public init() {}

    /// The defaults, with the PostgreSQL session timeouts a long-running process (worker,
    /// orchestrator, supervisor) takes from its environment:
    ///
    /// | variable | meaning | default |
    /// |---|---|---|
    /// | `EXCHANGER_BROKER_STATEMENT_TIMEOUT_SECONDS` | `statement_timeout` of broker sessions (0: the server's) | 60 |
    /// | `EXCHANGER_BROKER_IDLE_IN_TRANSACTION_SECONDS` | `idle_in_transaction_session_timeout` (0: the server's): how long the server keeps the transaction of a client that vanished mid-commit, and so how long a takeover of its message may wait on its row locks | 10 |
    /// | `EXCHANGER_BROKER_LOCK_TIMEOUT_SECONDS` | `lock_timeout` (0, the default: none) | 0 |
    ///
    /// - Throws: ``BrokerError/Code/invalidAttribute`` naming the variable for a value that is not
    ///   a number of seconds in 0…3600.
    public init(environment: [String: String]) throws(BrokerError) {
        self.init()
        func seconds(_ name: String) throws(BrokerError) -> Duration?? {
            guard let text = environment[name], !text.isEmpty else { return .none }
            guard let value = Double(text), value.isFinite, (0...3600).contains(value) else {
                throw BrokerError(.invalidAttribute, "\(name)='\(text)' must be a number of seconds in 0…3600")
            }
            return .some(value == 0 ? nil : .milliseconds(Int64((value * 1000).rounded())))
        }
        postgres.idleInTransactionTimeout = .seconds(10)
        if let value = try seconds("EXCHANGER_BROKER_STATEMENT_TIMEOUT_SECONDS") { postgres.statementTimeout = value }
        if let value = try seconds("EXCHANGER_BROKER_IDLE_IN_TRANSACTION_SECONDS") { postgres.idleInTransactionTimeout = value }
        if let value = try seconds("EXCHANGER_BROKER_LOCK_TIMEOUT_SECONDS") { postgres.lockTimeout = value }
    }
}

/// A point in the history of a notification name (see ``Broker/notificationMark(_:)``); only
/// meaningful to the broker instance that made it.
public struct NotificationMark: Sendable, Hashable {
    /// The notification name.
    public let name: String
    let generation: UInt64
    let sequence: Int64
}

/// A message broker with SQS queue semantics and an SNS-style topic, stored in PostgreSQL
/// (`postgres://…`) or SQLite (`sqlite:///path`). Many processes may share one database.
public final class Broker: Sendable {
    /// The database kind behind this broker.
    public let dialect: SQLDialect
    public let configuration: BrokerConfiguration
    let backend: any BrokerBackend
    let hub = WakeupHub()
    let logger: Logger
    private let wakeups = LockedBox<WakeupTask?>(nil)
    private let closed = LockedBox(false)

    private init(backend: any BrokerBackend, configuration: BrokerConfiguration, logger: Logger) {
        self.backend = backend
        self.dialect = backend.dialect
        self.configuration = configuration
        self.logger = logger
    }

    /// Opens a broker on `url` and checks that its schema is current.
    /// - Throws: ``BrokerError/Code/schemaOutdated`` when `exchanger migrate` has not been run.
    public static func connect(
        url: String, configuration: BrokerConfiguration = .init(),
        logger: Logger = Logger(label: "exchanger.broker")
    ) async throws -> Broker {
        let broker = try await open(url: url, configuration: configuration, logger: logger)
        do {
            let version = try await translatingErrors { try await broker.backend.schemaVersion() }
            guard version >= BrokerSchema.currentVersion else {
                throw BrokerError(.schemaOutdated,
                    "the broker database is at schema version \(version), this build needs \(BrokerSchema.currentVersion): run `exchanger migrate`")
            }
        } catch {
            await broker.close()
            throw error
        }
        return broker
    }

    /// ``connect(url:configuration:logger:)``, retrying while the database is not reachable yet
    /// (containers start together): waits 0.5 s doubling to 5 s, for at most `patience`. An
    /// outdated schema is not retried: `exchanger migrate` has to run first.
    public static func connectWhenAvailable(
        url: String, configuration: BrokerConfiguration = .init(), patience: Duration = .seconds(60),
        logger: Logger = Logger(label: "exchanger.broker")
    ) async throws -> Broker {
        var delay = Duration.milliseconds(500)
        let deadline = ContinuousClock.now + patience
        while true {
            do {
                return try await connect(url: url, configuration: configuration, logger: logger)
            } catch let error as BrokerError where error.code == .schemaOutdated {
                throw error
            } catch {
                guard ContinuousClock.now < deadline else { throw error }
                logger.warning("broker not reachable yet; retrying", metadata: ["error": "\(error)", "url": "\(redact(url))"])
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        }
    }

    /// Applies every pending migration to the database at `url`. Safe when several processes run
    /// it at once: one applies, the others wait and find nothing left to do.
    /// - Returns: the versions this call applied.
    @discardableResult
    public static func migrate(
        url: String, configuration: BrokerConfiguration = .init(), logger: Logger = Logger(label: "exchanger.broker")
    ) async throws -> [Int] {
        let broker = try await open(url: url, configuration: configuration, logger: logger)
        do {
            let applied = try await translatingErrors { try await broker.backend.migrate() }
            await broker.close()
            return applied
        } catch {
            await broker.close()
            throw error
        }
    }

    private static func open(url: String, configuration: BrokerConfiguration, logger: Logger) async throws -> Broker {
        if let warning = ConnectionSecurity.weakTLSWarning(url) { logger.warning("broker database: \(warning)") }
        let backend: any BrokerBackend
        if url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") {
            backend = PostgresBroker(url: url, configuration: configuration, logger: logger)
        } else if url.hasPrefix("sqlite:") {
            backend = try translatingErrorsSync { try SQLiteBroker(url: url, configuration: configuration, logger: logger) }
        } else {
            throw BrokerError(.invalidURL, "the database URL must start with postgres:// or sqlite:///, not '\(Self.redact(url))'")
        }
        return Broker(backend: backend, configuration: configuration, logger: logger)
    }

    /// Stops the wake-up listener and closes every connection.
    public func close() async {
        let alreadyClosed = closed.withLock { value in
            defer { value = true }
            return value
        }
        guard !alreadyClosed else { return }
        wakeups.withLock { $0?.cancel() }
        await hub.signalAll()
        await backend.close()
    }

    /// The URL with any password (user info, `?password=`, libpq `password=`) replaced by `***`, for logs.
    public static func redact(_ url: String) -> String { SecretRedaction.redact(url) }

    /// The schema version the database is at.
    public func schemaVersion() async throws -> Int {
        try await translatingErrors { try await backend.schemaVersion() }
    }

    // MARK: Queues

    /// Creates a queue, or returns the existing one when it has the same attributes.
    /// - Throws: ``BrokerError/Code/queueAlreadyExists`` when it exists with other attributes;
    ///   ``BrokerError/Code/queueNotFound`` when the dead-letter queue does not exist.
    @discardableResult
    public func createQueue(_ name: String, attributes: QueueAttributes = .init()) async throws -> QueueInfo {
        try BrokerName.validate(name)
        try attributes.validate(queueName: name)
        return try await translatingErrors { try await backend.createQueue(name, attributes) }
    }

    /// The queue's stored attributes, or `nil` when there is no such queue.
    public func queue(named name: String) async throws -> QueueInfo? {
        try BrokerName.validate(name)
        return try await translatingErrors { try await backend.queue(named: name) }
    }

    /// Queues matching the filter, by name.
    public func listQueues(_ filter: QueueFilter = .init()) async throws -> [QueueInfo] {
        try await translatingErrors { try await backend.listQueues(filter) }
    }

    /// Replaces a queue's attributes.
    @discardableResult
    public func setAttributes(_ name: String, _ attributes: QueueAttributes) async throws -> QueueInfo {
        try BrokerName.validate(name)
        try attributes.validate(queueName: name)
        return try await translatingErrors { try await backend.setAttributes(name, attributes) }
    }

    /// Seals queues in one transaction: sends to them are refused from now on, their topic
    /// subscriptions are removed (unless `removeSubscriptions` is false), and the returned counters
    /// are read after the seal, so an empty result means nothing can arrive any more.
    @discardableResult
    public func seal(_ names: [String], removeSubscriptions: Bool = true) async throws -> [String: QueueCounters] {
        for name in names { try BrokerName.validate(name) }
        return try await translatingErrors { try await backend.seal(names, sealed: true, removeSubscriptions: removeSubscriptions) }
    }

    /// Lifts a seal (subscriptions removed by the seal are not restored).
    public func unseal(_ names: [String]) async throws {
        for name in names { try BrokerName.validate(name) }
        _ = try await translatingErrors { try await backend.seal(names, sealed: false, removeSubscriptions: false) }
    }

    /// Deletes a queue with its messages and subscriptions.
    /// - Throws: ``BrokerError/Code/queueInUse`` when another queue uses it as its dead-letter queue.
    public func deleteQueue(_ name: String) async throws {
        try BrokerName.validate(name)
        try await translatingErrors { try await backend.deleteQueue(name) }
    }

    /// Deletes every message of a queue; returns how many.
    @discardableResult
    public func purge(_ name: String) async throws -> Int {
        try BrokerName.validate(name)
        return try await translatingErrors { try await backend.purgeQueue(name, batchSize: configuration.purgeBatchSize) }
    }

    /// Visible / in-flight / delayed counts of one queue.
    public func counters(_ name: String) async throws -> QueueCounters {
        try BrokerName.validate(name)
        guard let counters = try await translatingErrors({ try await backend.counters([name]) })[name] else {
            throw BrokerError(.queueNotFound, "queue '\(name)' does not exist")
        }
        return counters
    }

    /// Counters of every queue (or of the named ones), keyed by queue name.
    public func counters(_ names: [String]? = nil) async throws -> [String: QueueCounters] {
        for name in names ?? [] { try BrokerName.validate(name) }
        return try await translatingErrors { try await backend.counters(names) }
    }

    // MARK: Messages

    /// Sends one message; returns its message id.
    @discardableResult
    public func send(_ queue: String, _ message: OutgoingMessage) async throws -> String {
        try await sendBatch(queue, [message])[0]
    }

    /// Sends messages in one statement; all or none are stored. Returns their message ids.
    @discardableResult
    public func sendBatch(_ queue: String, _ messages: [OutgoingMessage]) async throws -> [String] {
        try await withSession(transactional: false) { try await $0.send(queue, messages) }
    }

    /// Receives up to `maxMessages` messages, waiting up to `wait` for the first one to arrive.
    /// Each returned message is hidden from other receivers for `visibilityTimeout` (the queue's
    /// setting when `nil`); a message received more than the queue's max receive count moves to
    /// its dead-letter queue instead.
    public func receive(
        _ queue: String, maxMessages: Int = 1, wait: Duration = .zero, visibilityTimeout: Duration? = nil
    ) async throws -> [ReceivedMessage] {
        try await acknowledgeAndReceive(queue, acknowledging: [], maxMessages: maxMessages, wait: wait,
            visibilityTimeout: visibilityTimeout).messages
    }

    /// Deletes the messages of `receipts` (the batch just processed) and receives the next batch
    /// in the same statement and transaction: one commit per batch instead of two. Each receipt
    /// succeeds or fails on its own, exactly as with ``deleteBatch(_:_:)``; the deletes are
    /// committed before any waiting for new messages begins.
    public func acknowledgeAndReceive(
        _ queue: String, acknowledging receipts: [ReceiptHandle], maxMessages: Int = 1, wait: Duration = .zero,
        visibilityTimeout: Duration? = nil
    ) async throws -> (acknowledged: BatchOutcome, messages: [ReceivedMessage]) {
        try BrokerName.validate(queue)
        guard maxMessages >= 1, maxMessages <= configuration.maxReceiveBatch else {
            throw BrokerError(.invalidAttribute, "max messages must be between 1 and \(configuration.maxReceiveBatch), not \(maxMessages)")
        }
        guard receipts.count <= configuration.maxReceiveBatch else {
            throw BrokerError(.invalidAttribute, "a batch holds at most \(configuration.maxReceiveBatch) receipts, not \(receipts.count)")
        }
        guard wait >= .zero, wait <= configuration.maxWait else {
            throw BrokerError(.invalidAttribute, "wait must be between 0 and \(configuration.maxWait), not \(wait)")
        }
        if let visibilityTimeout, visibilityTimeout < .zero || visibilityTimeout > QueueAttributes.maxVisibilityTimeout {
            throw BrokerError(.invalidAttribute, "visibility timeout must be between 0 s and 12 h, not \(visibilityTimeout)")
        }
        try ensureOpen()
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: wait)
        var pending = receipts
        var acknowledged = BatchOutcome(succeeded: [], failed: [:])
        while true {
            let generation = await hub.generation(of: queue)
            let acks = pending
            let result = try await translatingErrors {
                try await backend.receive(queue, max: maxMessages, visibility: visibilityTimeout, acknowledging: acks)
            }
            if !pending.isEmpty {
                acknowledged = Self.outcome(pending, result.acknowledged, action: "delete")
                pending = []
            }
            let now = clock.now
            if !result.messages.isEmpty || now >= deadline || Task.isCancelled { return (acknowledged, result.messages) }
            startWakeupsIfNeeded()
            await hub.wait(for: queue, after: generation, timeout: min(deadline - now, configuration.fallbackPollInterval))
        }
    }

    /// Deletes a received message.
    /// - Throws: ``BrokerError/Code/staleReceipt`` when the receipt is no longer the message's latest.
    public func delete(_ queue: String, _ receipt: ReceiptHandle) async throws {
        let outcome = try await deleteBatch(queue, [receipt])
        if let error = outcome.failed[receipt] { throw error }
    }

    /// Deletes received messages in one statement; each receipt succeeds or fails on its own.
    public func deleteBatch(_ queue: String, _ receipts: [ReceiptHandle]) async throws -> BatchOutcome {
        try await withSession(transactional: false) { session in
            let done = try await session.delete(queue, receipts)
            return Self.outcome(receipts, done, action: "delete")
        }
    }

    /// Hides a received message for `timeout` from now (0 makes it visible again at once).
    public func changeVisibility(_ queue: String, _ receipt: ReceiptHandle, timeout: Duration) async throws {
        let outcome = try await changeVisibilityBatch(queue, [receipt], timeout: timeout)
        if let error = outcome.failed[receipt] { throw error }
    }

    /// Changes the visibility of several received messages; each succeeds or fails on its own.
    public func changeVisibilityBatch(_ queue: String, _ receipts: [ReceiptHandle], timeout: Duration) async throws -> BatchOutcome {
        try await withSession(transactional: false) { session in
            let done = try await session.changeVisibility(queue, receipts, timeout)
            return Self.outcome(receipts, done, action: "change the visibility of")
        }
    }

    static func outcome(_ receipts: [ReceiptHandle], _ done: Set<ReceiptHandle>, action: String) -> BatchOutcome {
        var outcome = BatchOutcome(succeeded: [], failed: [:])
        for receipt in receipts {
            if done.contains(receipt) {
                outcome.succeeded.append(receipt)
            } else {
                outcome.failed[receipt] = BrokerError(.staleReceipt,
                    "cannot \(action) message with receipt \(receipt): it was received again, deleted, or is in another queue")
            }
        }
        return outcome
    }

    /// Moves messages from a dead-letter queue back to the queue each came from (or to `target`),
    /// as new messages with new ids, at most `perSecond` a second. Returns how many moved.
    @discardableResult
    public func redrive(from deadLetterQueue: String, to target: String? = nil, perSecond: Int = 500, limit: Int? = nil) async throws -> Int {
        try BrokerName.validate(deadLetterQueue)
        if let target { try BrokerName.validate(target) }
        guard perSecond >= 1 else { throw BrokerError(.invalidAttribute, "redrive rate must be at least 1 message a second") }
        guard try await queue(named: deadLetterQueue) != nil else {
            throw BrokerError(.queueNotFound, "queue '\(deadLetterQueue)' does not exist")
        }
        if let target, try await queue(named: target) == nil {
            throw BrokerError(.queueNotFound, "queue '\(target)' does not exist")
        }
        let clock = ContinuousClock()
        let batch = max(1, min(perSecond, 100))
        let interval = Duration.seconds(1) * (Double(batch) / Double(perSecond))
        var moved = 0
        while limit.map({ moved < $0 }) ?? true {
            let started = clock.now
            let take = min(batch, (limit ?? Int.max) - moved)
            let targets = try await translatingErrors { try await backend.redrive(from: deadLetterQueue, to: target, limit: take) }
            moved += targets.count
            await hub.signal(targets)
            if targets.count < take { break }
            let elapsed = clock.now - started
            if elapsed < interval { try await Task.sleep(for: interval - elapsed) }
        }
        return moved
    }

    /// The attribute a message expired by retention carries into its dead-letter queue: its
    /// queue's retention in seconds.
    public static let expiredAttribute = "exchanger.expired"

    /// Takes messages older than their queue's retention out of it, in capped batches; returns how many.
    ///
    /// A message counts as expired once both its send time and its last visibility time are older
    /// than the retention period; a message that is in flight right now is kept until its lease
    /// ends (so a worker never loses a message it is processing), and one received again and again
    /// reaches its dead-letter queue first. An expired message of a queue with a dead-letter queue
    /// is moved there (source queue set, ``expiredAttribute`` added), so the exchange counts and
    /// names it; only messages of queues without one (dead-letter queues themselves) are deleted.
    @discardableResult
    public func purgeExpired() async throws -> Int {
        var total = 0
        while true {
            let deleted = try await translatingErrors { try await backend.purgeExpired(limit: configuration.purgeBatchSize) }
            total += deleted
            if deleted < configuration.purgeBatchSize { break }
        }
        if total > 0 { logger.warning("retention: expired messages moved to their dead-letter queues or deleted", metadata: ["expired": "\(total)"]) }
        return total
    }

    /// One maintenance pass: the retention sweep, then a VACUUM of the message table when it has
    /// collected more than ``BrokerConfiguration/vacuumDeadRowThreshold`` dead rows. Safe to run
    /// from many processes: only one vacuums at a time.
    public func maintain() async throws {
        try await purgeExpired()
        if try await translatingErrors({ try await backend.vacuumIfNeeded(threshold: configuration.vacuumDeadRowThreshold) }) {
            logger.debug("vacuumed the message table")
        }
    }

    /// Runs ``maintain()`` every ``BrokerConfiguration/maintenanceInterval`` until the task is
    /// cancelled; errors are logged and the next pass tries again. Long-running processes run this.
    public func runMaintenance() async {
        while !Task.isCancelled {
            do {
                try await maintain()
            } catch {
                if !Task.isCancelled { logger.warning("broker maintenance failed", metadata: ["error": "\(error)"]) }
            }
            try? await Task.sleep(for: configuration.maintenanceInterval)
        }
    }

    // MARK: Topic

    /// Subscribes a queue to a topic with an optional SNS filter policy. Subscribing again with
    /// the same policy returns the same subscription.
    /// - Throws: ``BrokerError/Code/invalidFilterPolicy`` naming the fault;
    ///   ``BrokerError/Code/subscriptionConflict`` when subscribed with another policy.
    @discardableResult
    public func subscribe(_ queue: String, topic: String? = nil, filterPolicy: String? = nil) async throws -> Subscription {
        let topic = topic ?? configuration.defaultTopic
        try BrokerName.validate(topic, kind: "topic")
        try BrokerName.validate(queue)
        var policy: FilterPolicy?
        if let filterPolicy {
            do {
                policy = try FilterPolicy(json: filterPolicy)
            } catch {
                throw BrokerError(.invalidFilterPolicy, error.description)
            }
        }
        return try await translatingErrors { try await backend.subscribe(topic: topic, queue: queue, policy: policy) }
    }

    /// Removes a subscription; returns false when there was none with this id.
    @discardableResult
    public func unsubscribe(_ id: Int64) async throws -> Bool {
        try await translatingErrors { try await backend.unsubscribe(id: id) }
    }

    /// Subscriptions, optionally of one topic and/or one queue.
    public func subscriptions(topic: String? = nil, queue: String? = nil) async throws -> [Subscription] {
        try await translatingErrors { try await backend.subscriptions(topic: topic, queue: queue) }
    }

    /// Publishes an event: appends it to the event log and delivers a copy to every subscribed
    /// queue whose filter policy matches its attributes, all in one transaction. An event id that
    /// was published before is neither stored nor delivered again.
    @discardableResult
    public func publish(_ event: TopicMessage, topic: String? = nil) async throws -> PublishResult {
        try await publishBatch([event], topic: topic)[0]
    }

    /// Publishes several events in one transaction.
    @discardableResult
    public func publishBatch(_ events: [TopicMessage], topic: String? = nil) async throws -> [PublishResult] {
        let topic = topic ?? configuration.defaultTopic
        return try await withSession(transactional: true) { try await $0.publish(topic, events) }
    }

    // MARK: Transactions

    /// Runs `body` in one database transaction: everything it sends, publishes, deletes and
    /// queries commits together or not at all ("processed but not acknowledged" and "acknowledged
    /// but not published" cannot happen).
    public func transaction<T: Sendable>(_ body: @Sendable (BrokerTransaction) async throws -> T) async throws -> T {
        try await withSession(transactional: true) { session in
            try await body(BrokerTransaction(session: session, defaultTopic: configuration.defaultTopic))
        }
    }

    // MARK: Notifications

    /// Where a notification name stands now; ``waitForNotification(after:timeout:)`` returns as soon
    /// as a notification of that name was sent after this point, also one sent before the wait begins.
    /// Take the mark before looking at what the notification is about, then wait.
    public func notificationMark(_ name: String) async throws -> NotificationMark {
        try BrokerName.validate(name, kind: "notification")
        try ensureOpen()
        startWakeupsIfNeeded()
        let key = BrokerNotification.payload(name)
        let generation = await hub.generation(of: key)
        let sequence = try await notificationSequence(name)
        return NotificationMark(name: name, generation: generation, sequence: sequence)
    }

    /// Waits until a transaction sends a notification of `name` (``BrokerTransaction/notify(_:)``),
    /// in this process or another, or until `timeout` passes; returns early on cancellation too.
    /// May also return early without a notification (the PostgreSQL listener reconnected), never late.
    public func waitForNotification(_ name: String, timeout: Duration) async throws {
        try await waitForNotification(after: notificationMark(name), timeout: timeout)
    }

    /// Waits until a notification of `mark.name` was sent after `mark` was taken, or until
    /// `timeout` passes (see ``waitForNotification(_:timeout:)``).
    public func waitForNotification(after mark: NotificationMark, timeout: Duration) async throws {
        try ensureOpen()
        startWakeupsIfNeeded()
        let key = BrokerNotification.payload(mark.name)
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        var generation = mark.generation
        while true {
            switch dialect {
            case .postgres:
                // The listener bumps the name's generation for each `@name` payload.
                if await hub.generation(of: key) != mark.generation { return }
            case .sqlite:
                // Every commit anywhere wakes the hub; only a changed count is a notification.
                generation = await hub.generation(of: key)
                if try await notificationSequence(mark.name) != mark.sequence { return }
            }
            let now = clock.now
            if now >= deadline || Task.isCancelled { return }
            try ensureOpen()
            await hub.wait(for: key, after: generation, timeout: deadline - now)
        }
    }

    /// SQLite: how many notifications of `name` were sent so far (PostgreSQL: 0, not counted).
    private func notificationSequence(_ name: String) async throws -> Int64 {
        guard dialect == .sqlite else { return 0 }
        return try await withSession(transactional: false) { session in
            try await session.query(BrokerNotification.sqliteSequence, [.text(name)]).first?["seq"].int64 ?? 0
        }
    }

    func withSession<T: Sendable>(transactional: Bool, _ body: @Sendable (any BrokerSession) async throws -> T) async throws -> T {
        try ensureOpen()
        let maxBatch = configuration.maxReceiveBatch
        return try await translatingErrors {
            try await backend.withSession(transactional: transactional) { session in
                try await body(ValidatingSession(inner: session, maxBatch: maxBatch))
            }
        }
    }

    private func ensureOpen() throws(BrokerError) {
        if closed.withLock({ $0 }) { throw BrokerError(.closed, "the broker is closed") }
    }

    private func startWakeupsIfNeeded() {
        wakeups.withLock { task in
            guard task == nil, !closed.withLock({ $0 }) else { return }
            task = backend.startWakeups(hub: hub, logger: logger)
        }
    }
}

func translatingErrorsSync<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch { throw BrokerError.wrap(error) }
}

import ConcurrencySupport
import DatabaseSupport
import Logging

/// Which SQL dialect a transaction speaks, for callers that run their own statements in it.
public enum SQLDialect: String, Sendable {
    case postgres, sqlite
}

extension SQLDialect {
    /// Statements are written with PostgreSQL's `$1` placeholders; SQLite spells them `?1`
    /// (``SQLPlaceholders/sqlite(_:)``).
    public func placeholders(_ sql: String) -> String {
        self == .sqlite ? SQLPlaceholders.sqlite(sql) : sql
    }
}

/// Filters for listing queues.
public struct QueueFilter: Sendable, Hashable {
    public var namePrefix: String?
    public var exchangeID: String?
    public var program: String?
    public init(namePrefix: String? = nil, exchangeID: String? = nil, program: String? = nil) {
        self.namePrefix = namePrefix
        self.exchangeID = exchangeID
        self.program = program
    }
}

/// What each database backend implements. The public ``Broker`` validates input, then calls this.
protocol BrokerBackend: Sendable {
    var dialect: SQLDialect { get }
    func migrate() async throws -> [Int]
    func schemaVersion() async throws -> Int
    func createQueue(_ name: String, _ attributes: QueueAttributes) async throws -> QueueInfo
    func queue(named name: String) async throws -> QueueInfo?
    func listQueues(_ filter: QueueFilter) async throws -> [QueueInfo]
    func setAttributes(_ name: String, _ attributes: QueueAttributes) async throws -> QueueInfo
    func seal(_ names: [String], sealed: Bool, removeSubscriptions: Bool) async throws -> [String: QueueCounters]
    func deleteQueue(_ name: String) async throws
    func purgeQueue(_ name: String, batchSize: Int) async throws -> Int
    func counters(_ names: [String]?) async throws -> [String: QueueCounters]
    /// Deletes the `acknowledging` receipts' messages and leases up to `max` due messages, in one
    /// transaction; returns the leased messages and the receipts whose messages were deleted.
    func receive(_ queue: String, max: Int, visibility: Duration?, acknowledging: [ReceiptHandle]) async throws
        -> (messages: [ReceivedMessage], acknowledged: Set<ReceiptHandle>)
    /// Moves up to `limit` visible messages off a dead-letter queue; returns each moved message's target queue.
    func redrive(from dlq: String, to target: String?, limit: Int) async throws -> [String]
    func subscribe(topic: String, queue: String, policy: FilterPolicy?) async throws -> Subscription
    func unsubscribe(id: Int64) async throws -> Bool
    func subscriptions(topic: String?, queue: String?) async throws -> [Subscription]
    func purgeExpired(limit: Int) async throws -> Int
    /// Vacuums the message table when it holds more than `threshold` dead rows (PostgreSQL; one
    /// process at a time). Returns whether it vacuumed.
    func vacuumIfNeeded(threshold: Int) async throws -> Bool
    func withSession<T: Sendable>(transactional: Bool, _ body: @Sendable (any BrokerSession) async throws -> T) async throws -> T
    /// Starts whatever tells this process that other processes sent messages (LISTEN, data_version polling).
    func startWakeups(hub: WakeupHub, logger: Logger) -> WakeupTask
    func close() async
}

/// Operations that can share one database transaction.
protocol BrokerSession: Sendable {
    var dialect: SQLDialect { get }
    func send(_ queue: String, _ messages: [OutgoingMessage]) async throws -> [String]
    func publish(_ topic: String, _ events: [TopicMessage]) async throws -> [PublishResult]
    /// Returns the receipts whose messages were deleted.
    func delete(_ queue: String, _ receipts: [ReceiptHandle]) async throws -> Set<ReceiptHandle>
    /// Returns the receipts whose messages got the new timeout.
    func changeVisibility(_ queue: String, _ receipts: [ReceiptHandle], _ timeout: Duration) async throws -> Set<ReceiptHandle>
    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow]
}

/// A running wake-up source; cancelled when the broker closes.
struct WakeupTask: Sendable {
    let task: Task<Void, Never>
    func cancel() { task.cancel() }
}

/// Compiled filter policies by subscription id, so a policy is parsed once per process, not per message.
final class PolicyCache: Sendable {
    private let storage = LockedBox<[Int64: FilterPolicy]>([:])

    func policy(id: Int64, json: String?) -> FilterPolicy? {
        guard let json else { return nil }
        if let cached = storage.withLock({ $0[id] }), cached.json == json { return cached }
        guard let parsed = try? FilterPolicy(json: json) else { return nil }
        storage.withLock { $0[id] = parsed }
        return parsed
    }

    /// Whether the subscription accepts a message with these attributes. A stored policy that no
    /// longer parses matches nothing (it was validated at subscribe time, so this means tampering).
    func accepts(id: Int64, json: String?, attributes: MessageAttributes) -> Bool {
        guard json != nil else { return true }
        guard let policy = policy(id: id, json: json) else { return false }
        return policy.matches(attributes)
    }
}

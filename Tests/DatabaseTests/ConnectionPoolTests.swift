import ConcurrencySupport
import DatabaseSupport
import Foundation
import PostgresClient
import Testing

/// ConnectionPool with an in-memory fake connection (exact bookkeeping) and with PostgreSQL.
@Suite("ConnectionPool")
struct ConnectionPoolTests {
    @Test func neverOpensMoreThanTheMaximumUnderTwentyUsers() async throws {
        let ledger = Ledger()
        let maximum = 4
        let pool = ConnectionPool<FakeConnection>(maxConnections: maximum) { ledger.open() }
        let users = 20
        let usesPerUser = 5
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<users {
                group.addTask {
                    for _ in 0..<usesPerUser {
                        try await pool.withConnection { connection in
                            try await connection.use { try await Task.sleep(for: .milliseconds(2)) }
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let report = ledger.report
        #expect(report.uses == users * usesPerUser)
        #expect(report.sharedUses == 0, "a connection was used by two tasks at once")
        #expect(report.mostOpen <= maximum, "\(report.mostOpen) connections were open at once")
        #expect(report.mostOpen == maximum, "20 users should have needed all \(maximum) connections")
        #expect(report.mostInUse == maximum)
        #expect(report.opened == maximum, "healthy connections are reused, not reopened")
        let statistics = await pool.statistics
        #expect(statistics.open == maximum)
        #expect(statistics.idle == maximum)
        #expect(statistics.waiting == 0)
        await pool.shutdown()
        #expect(ledger.report.closed == maximum)
        #expect(await pool.statistics.open == 0)
    }

    @Test func acquireTimesOutWhenNoConnectionFrees() async throws {
        let ledger = Ledger()
        let pool = ConnectionPool<FakeConnection>(maxConnections: 1, acquireTimeout: .milliseconds(200)) { ledger.open() }
        let gate = Gate()
        let holder = Task { try await pool.withConnection { _ in await gate.wait() } }
        try await waitUntil { await pool.statistics == (open: 1, idle: 0, waiting: 0) }

        let start = ContinuousClock.now
        let error = try await #require(throws: DatabaseError.self) { try await pool.withConnection { _ in 1 } }
        let waited = ContinuousClock.now - start
        #expect(error.code == .poolTimeout)
        #expect(error.isTransient)
        #expect(waited >= .milliseconds(180), "timed out after \(waited)")
        #expect(waited < .seconds(2))
        #expect(await pool.statistics.waiting == 0)

        gate.open()
        try await holder.value
        #expect(try await pool.withConnection { $0.id } == 0)
        #expect(ledger.report.opened == 1)
        await pool.shutdown()
    }

    @Test func aWaiterGetsTheConnectionReleasedByAnother() async throws {
        let ledger = Ledger()
        let pool = ConnectionPool<FakeConnection>(maxConnections: 1, acquireTimeout: .seconds(10)) { ledger.open() }
        let gate = Gate()
        let holder = Task { try await pool.withConnection { connection in await gate.wait(); return connection.id } }
        try await waitUntil { await pool.statistics.open == 1 }
        let waiter = Task { try await pool.withConnection { $0.id } }
        try await waitUntil { await pool.statistics.waiting == 1 }
        gate.open()
        #expect(try await holder.value == 0)
        #expect(try await waiter.value == 0)
        #expect(ledger.report.opened == 1)
        await pool.shutdown()
    }

    @Test func shutdownFailsWaitersWithPoolClosed() async throws {
        let ledger = Ledger()
        let pool = ConnectionPool<FakeConnection>(maxConnections: 1, acquireTimeout: .seconds(30)) { ledger.open() }
        let gate = Gate()
        let holder = Task { try await pool.withConnection { connection in await gate.wait(); return connection.id } }
        try await waitUntil { await pool.statistics.open == 1 }
        let waiters = (0..<2).map { _ in Task { try await pool.withConnection { $0.id } } }
        try await waitUntil { await pool.statistics.waiting == 2 }

        let start = ContinuousClock.now
        await pool.shutdown()
        for waiter in waiters {
            let error = await #expect(throws: DatabaseError.self) { try await waiter.value }
            #expect(error?.code == .poolClosed)
        }
        #expect(ContinuousClock.now - start < .seconds(5), "waiters were not failed promptly")
        let late = await #expect(throws: DatabaseError.self) { try await pool.withConnection { $0.id } }
        #expect(late?.code == .poolClosed)

        // The connection in use finishes its work, then is closed instead of returning to the pool.
        #expect(ledger.report.closed == 0)
        gate.open()
        #expect(try await holder.value == 0)
        #expect(ledger.report.closed == 1)
        #expect(await pool.statistics == (open: 0, idle: 0, waiting: 0))
    }

    @Test func brokenConnectionsAreReplaced() async throws {
        let ledger = Ledger()
        let pool = ConnectionPool<FakeConnection>(maxConnections: 1) { ledger.open() }
        // A statement error does not make the connection suspect.
        let queryFailed = await #expect(throws: DatabaseError.self) {
            try await pool.withConnection { _ in throw DatabaseError(.queryFailed, sqlState: "23505", message: "duplicate") }
        }
        #expect(queryFailed?.code == .queryFailed)
        #expect(try await pool.withConnection { $0.id } == 0)
        // Neither does any other error.
        await #expect(throws: ExpectedFailure(tag: "app")) { try await pool.withConnection { _ in throw ExpectedFailure(tag: "app") } }
        #expect(try await pool.withConnection { $0.id } == 0)

        // A connection error does: the connection is closed and the next caller gets a new one.
        await #expect(throws: DatabaseError.self) {
            try await pool.withConnection { _ in throw DatabaseError(.connectionClosed, message: "server went away") }
        }
        #expect(ledger.report.closed == 1)
        #expect(try await pool.withConnection { $0.id } == 1)

        // An idle connection that reports itself unusable is replaced when next taken.
        let idle = try await pool.withConnection { $0 }
        idle.breakIt()
        #expect(try await pool.withConnection { $0.id } == 2)
        #expect(ledger.report.closed == 2)
        #expect(await pool.statistics.open == 1)
        await pool.shutdown()
    }

    @Test func aFailingFactoryDoesNotLeakASlot() async throws {
        let ledger = Ledger()
        let failures = LockedBox(2)
        let pool = ConnectionPool<FakeConnection>(maxConnections: 1, acquireTimeout: .milliseconds(500)) {
            if failures.withLock({ remaining in defer { remaining -= 1 }; return remaining > 0 }) {
                throw DatabaseError(.connectionFailed, message: "refused")
            }
            return ledger.open()
        }
        for _ in 0..<2 {
            let error = await #expect(throws: DatabaseError.self) { try await pool.withConnection { $0.id } }
            #expect(error?.code == .connectionFailed)
        }
        #expect(await pool.statistics.open == 0)
        #expect(try await pool.withConnection { $0.id } == 0)
        await pool.shutdown()
    }

    // MARK: With PostgreSQL

    @Test func postgresPoolStaysWithinItsMaximumUnderTwentyUsers() async throws {
        let url = try PostgresTestServer.url()
        let application = uniqueName("pooltest")
        let configuration = {
            var configuration = PostgresConfiguration()
            configuration.applicationName = application
            return configuration
        }()
        let maximum = 3
        let pool = ConnectionPool<PostgresConnection>(maxConnections: maximum) {
            try await PostgresConnection.connect(url: url, configuration: configuration)
        }
        try await withPostgres { monitor in
            let done = LockedBox(false)
            let watcher = Task {
                var most = 0
                while !done.withLock({ $0 }) {
                    let rows = try await monitor.query("SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1", [.text(application)])
                    most = max(most, rows.first?["n"].int ?? 0)
                    try await Task.sleep(for: .milliseconds(10))
                }
                return most
            }
            let backends = try await withThrowingTaskGroup(of: Set<Int32>.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        var seen: Set<Int32> = []
                        for _ in 0..<3 {
                            seen.insert(try await pool.withConnection { connection in
                                try await connection.query("SELECT pg_sleep(0.02)")
                                return await connection.backendPID
                            })
                        }
                        return seen
                    }
                }
                return try await group.reduce(into: Set<Int32>()) { $0.formUnion($1) }
            }
            done.withLock { $0 = true }
            let mostOnServer = try await watcher.value
            #expect(backends.count == maximum, "20 users used \(backends.count) different server connections")
            #expect(mostOnServer <= maximum, "the server saw \(mostOnServer) pool connections at once")
            #expect(mostOnServer >= 1)
            #expect(await pool.statistics.open == maximum)
        }
        await pool.shutdown()
    }

    @Test func postgresPoolReplacesAConnectionWhoseBackendWasTerminated() async throws {
        let url = try PostgresTestServer.url()
        let pool = ConnectionPool<PostgresConnection>(maxConnections: 1, acquireTimeout: .seconds(10)) {
            try await PostgresConnection.connect(url: url)
        }
        try await withPostgres { admin in
            let firstPID = try await pool.withConnection { await $0.backendPID }
            let error = try await #require(throws: DatabaseError.self) {
                try await pool.withConnection { connection in
                    #expect(await connection.backendPID == firstPID, "the pool should hand out its idle connection")
                    let killed = try await admin.query("SELECT pg_terminate_backend($1::int, 5000) AS killed", [.integer(Int64(firstPID))])
                    #expect(killed.first?["killed"] == .bool(true))
                    return try await connection.query("SELECT 1")
                }
            }
            #expect(error.code == .connectionClosed)
            #expect(error.isTransient)
            #expect(await pool.statistics.open == 0)

            let (secondPID, rows) = try await pool.withConnection { connection in
                (await connection.backendPID, try await connection.query("SELECT 1 AS one"))
            }
            #expect(secondPID != firstPID)
            #expect(secondPID > 0)
            #expect(rows.first?["one"] == .integer(1))
            #expect(await pool.statistics.open == 1)
        }
        await pool.shutdown()
    }
}

// MARK: Fakes

/// Counts what the pool does with its connections.
final class Ledger: Sendable {
    struct Report {
        var opened = 0
        var closed = 0
        var mostOpen = 0
        var inUse = 0
        var mostInUse = 0
        var uses = 0
        var sharedUses = 0
    }

    private let state = LockedBox(Report())

    var report: Report { state.withLock { $0 } }

    func open() -> FakeConnection {
        state.withLock { report in
            defer { report.opened += 1 }
            report.mostOpen = max(report.mostOpen, report.opened + 1 - report.closed)
            return FakeConnection(id: report.opened, ledger: self)
        }
    }

    fileprivate func closed() { state.withLock { $0.closed += 1 } }

    fileprivate func begin(shared: Bool) {
        state.withLock { report in
            report.uses += 1
            if shared { report.sharedUses += 1 }
            report.inUse += 1
            report.mostInUse = max(report.mostInUse, report.inUse)
        }
    }

    fileprivate func end() { state.withLock { $0.inUse -= 1 } }
}

final class FakeConnection: PoolableConnection {
    let id: Int
    private let ledger: Ledger
    private let state = LockedBox((usable: true, closed: false, busy: false))

    init(id: Int, ledger: Ledger) {
        self.id = id
        self.ledger = ledger
    }

    var isUsable: Bool { state.withLock { $0.usable && !$0.closed } }

    func close() async {
        let first = state.withLock { state in
            defer { state.closed = true }
            return !state.closed
        }
        if first { ledger.closed() }
    }

    func breakIt() { state.withLock { $0.usable = false } }

    /// Records a use; flags it when another task is using this connection at the same time.
    func use<T>(_ body: () async throws -> T) async rethrows -> T {
        let shared = state.withLock { state in
            defer { state.busy = true }
            return state.busy || state.closed
        }
        ledger.begin(shared: shared)
        defer {
            state.withLock { $0.busy = false }
            ledger.end()
        }
        return try await body()
    }
}

/// A one-shot gate tasks can wait on.
final class Gate: Sendable {
    private let state = LockedBox<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func wait() async {
        await withCheckedContinuation { continuation in
            let resumeNow = state.withLock { state in
                if state.open { return true }
                state.waiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    func open() {
        let waiters = state.withLock { state in
            state.open = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}

/// Polls `condition` until it holds, failing after `timeout`.
func waitUntil(timeout: Duration = .seconds(5), _ condition: () async -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while !(await condition()) {
        guard ContinuousClock.now < deadline else {
            Issue.record("condition not met within \(timeout)")
            throw ExpectedFailure(tag: "timeout")
        }
        try await Task.sleep(for: .milliseconds(5))
    }
}

import ConcurrencySupport
import DatabaseSupport
import Foundation
import PostgresClient
import SQLiteClient
import Testing

// Shared helpers of the DatabaseTests target: the PostgreSQL server under test, unique names,
// a ticker that proves the cooperative thread pool keeps running, and a deadline for calls that
// might hang.

enum PostgresTestServer {
    static let variable = "EXCHANGER_TEST_POSTGRES_URL"

    /// The server `scripts/test` started. When the variable is missing the calling test FAILS
    /// (it never skips): PostgreSQL tests are part of the suite.
    static func url() throws -> String {
        let url = ProcessInfo.processInfo.environment[variable].flatMap { $0.isEmpty ? nil : $0 }
        return try #require(
            url,
            "\(variable) is not set: run the tests with scripts/test, which starts a throwaway PostgreSQL server")
    }

    static func connect(_ configure: (inout PostgresConfiguration) -> Void = { _ in }) async throws -> PostgresConnection {
        var configuration = PostgresConfiguration()
        configuration.applicationName = "exchanger-dbtests"
        configure(&configuration)
        return try await PostgresConnection.connect(url: try url(), configuration: configuration)
    }
}

/// Opens a connection for `body` and closes it afterwards (temporary tables vanish with it).
func withPostgres<T>(
    _ configure: (inout PostgresConfiguration) -> Void = { _ in },
    _ body: (PostgresConnection) async throws -> T
) async throws -> T {
    let connection = try await PostgresTestServer.connect(configure)
    do {
        let result = try await body(connection)
        await connection.close()
        return result
    } catch {
        await connection.close()
        throw error
    }
}

/// Creates a regular (not temporary) table with a unique name, visible to every connection, and
/// drops it after `body`.
func withScratchTable<T>(
    _ columns: String, on connection: PostgresConnection, _ body: (String) async throws -> T
) async throws -> T {
    let table = uniqueName("scratch")
    try await connection.execute("CREATE TABLE \(table) (\(columns))")
    do {
        let result = try await body(table)
        try await connection.execute("DROP TABLE IF EXISTS \(table)")
        return result
    } catch {
        try? await connection.execute("DROP TABLE IF EXISTS \(table)")
        throw error
    }
}

/// A fresh temporary directory for SQLite files, removed afterwards.
func withSQLiteDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("dbtests-sqlite")).path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    return try await body(directory)
}

/// A connection to a fresh database file, closed afterwards.
func withSQLiteDatabase<T>(_ body: (SQLiteConnection) async throws -> T) async throws -> T {
    try await withSQLiteDirectory { directory in
        let db = try await SQLiteConnection.open(path: directory + "/test.db")
        do {
            let result = try await body(db)
            await db.close()
            return result
        } catch {
            await db.close()
            throw error
        }
    }
}

/// A lower-case identifier that no other test uses.
func uniqueName(_ prefix: String) -> String {
    prefix + "_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16).lowercased()
}

/// An error thrown by test code, to check it comes back out unchanged.
struct ExpectedFailure: Error, Equatable {
    var tag: String
}

/// A task on Swift's cooperative pool that records an instant every `interval`. If something
/// blocked the pool's threads, the ticks would stop: `measure(_:)` counts how many happened
/// while an operation ran and the longest gap between two of them.
final class Ticker: Sendable {
    private let instants = LockedBox<[ContinuousClock.Instant]>([])
    private let task: Task<Void, Never>

    init(interval: Duration = .milliseconds(20)) {
        let instants = self.instants
        task = Task.detached {
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                let now = ContinuousClock.now
                instants.withLock { $0.append(now) }
            }
        }
    }

    deinit { task.cancel() }

    func stop() { task.cancel() }

    struct Measurement {
        /// Ticks recorded while the operation ran.
        var ticks: Int
        /// The longest stretch without a tick, measured from the operation's start to its end.
        var longestGap: Duration
        /// How long the operation took.
        var elapsed: Duration
    }

    /// Runs `operation`, then reports how the ticker fared meanwhile.
    func measure<T>(_ operation: () async throws -> T) async rethrows -> (result: T, measurement: Measurement) {
        let start = ContinuousClock.now
        let result = try await operation()
        let end = ContinuousClock.now
        let during = instants.withLock { all in all.filter { $0 > start && $0 <= end } }
        var longestGap: Duration = .zero
        var previous = start
        for instant in during + [end] {
            longestGap = max(longestGap, instant - previous)
            previous = instant
        }
        return (result, Measurement(ticks: during.count, longestGap: longestGap, elapsed: end - start))
    }
}

/// Runs `operation` in a task of its own and waits at most `timeout` for it. Returns `nil` when it
/// had not finished by then (the task is left behind). For calls that might hang forever: a hung
/// call then fails its test instead of stalling the whole run.
func outcome<T: Sendable>(
    within timeout: Duration, of operation: @escaping @Sendable () async throws -> T
) async -> Result<T, any Error>? {
    await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, any Error>?, Never>) in
        let pending = LockedBox<CheckedContinuation<Result<T, any Error>?, Never>?>(continuation)
        let take: @Sendable () -> CheckedContinuation<Result<T, any Error>?, Never>? = { pending.withLock { box -> CheckedContinuation<Result<T, any Error>?, Never>? in
            defer { box = nil }
            return box
        } }
        Task.detached {
            let result: Result<T, any Error>
            do { result = .success(try await operation()) } catch { result = .failure(error) }
            take()?.resume(returning: result)
        }
        Task.detached {
            try? await Task.sleep(for: timeout)
            take()?.resume(returning: nil)
        }
    }
}

extension Duration {
    var inSeconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

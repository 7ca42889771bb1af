// What every test target shares: the backends, the servers `scripts/test` started, fresh
// databases and brokers, the executables of this build, polling helpers.
import Broker
import DatabaseSupport
import Foundation
import PostgresClient
import ProcessSupport
import Testing

/// The two backends every conformance test runs against.
public enum Backend: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case postgres, sqlite
    public var testDescription: String { rawValue }
}

public enum TestEnvironment {
    /// The PostgreSQL server `scripts/test` started. Missing means the tests were not started by
    /// the test script: that fails, it never skips.
    public static func postgresURL(_ variable: String = "EXCHANGER_TEST_POSTGRES_URL") throws -> String {
        guard let url = ProcessInfo.processInfo.environment[variable], !url.isEmpty else {
            Issue.record("\(variable) is not set: run the tests with scripts/test, which starts PostgreSQL")
            throw TestSetupError(message: "\(variable) is not set")
        }
        return url
    }

    /// The `exchanger` executable of this build (a dependency of the test target).
    public static var exchanger: String {
        if let override = ProcessInfo.processInfo.environment["EXCHANGER_BIN"] { return override }
        let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var directory = URL(fileURLWithPath: me).deletingLastPathComponent()
        // The test binary may live inside an .xctest bundle directory.
        while !FileManager.default.isExecutableFile(atPath: directory.appendingPathComponent("exchanger").path),
            directory.path != "/"
        {
            directory.deleteLastPathComponent()
        }
        return directory.appendingPathComponent("exchanger").path
    }
}

public struct TestSetupError: Error, CustomStringConvertible {
    public var message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

/// Replaces the database name of a postgres:// URL.
public func postgresURL(_ base: String, database: String) -> String {
    guard let slash = base.range(of: "/", options: .backwards), base[..<slash.lowerBound].contains("@") || base.contains("://") else {
        return base
    }
    var query = ""
    if let mark = base.firstIndex(of: "?") { query = String(base[mark...]) }
    return String(base[..<slash.upperBound]) + database + query
}

/// A fresh, migrated broker database for one test (a new PostgreSQL database or a new SQLite
/// file), dropped afterwards.
public func withTestDatabase<T: Sendable>(
    _ backend: Backend, serverVariable: String = "EXCHANGER_TEST_POSTGRES_URL", migrate: Bool = true,
    _ body: (String) async throws -> T
) async throws -> T {
    switch backend {
    case .postgres:
        let server = try TestEnvironment.postgresURL(serverVariable)
        let name = "exch_t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16).lowercased()
        let admin = try await PostgresConnection.connect(url: server, configuration: .administration)
        try await admin.execute("CREATE DATABASE \(name)")
        await admin.close()
        let url = postgresURL(server, database: name)
        do {
            if migrate { try await Broker.migrate(url: url) }
            let result = try await body(url)
            try await dropDatabase(server, name)
            return result
        } catch {
            try? await dropDatabase(server, name)
            throw error
        }
    case .sqlite:
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("exch-t-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = "sqlite://" + directory.appendingPathComponent("broker.sqlite").path
        if migrate { try await Broker.migrate(url: url) }
        return try await body(url)
    }
}

private func dropDatabase(_ server: String, _ name: String) async throws {
    let admin = try await PostgresConnection.connect(url: server, configuration: .administration)
    try await admin.execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
    await admin.close()
}

/// A connected broker on a fresh database, closed afterwards.
public func withTestBroker<T: Sendable>(
    _ backend: Backend, configuration: BrokerConfiguration = .init(), _ body: (Broker, String) async throws -> T
) async throws -> T {
    try await withTestDatabase(backend) { url in
        let broker = try await Broker.connect(url: url, configuration: configuration)
        do {
            let result = try await body(broker, url)
            await broker.close()
            return result
        } catch {
            await broker.close()
            throw error
        }
    }
}

/// Runs `exchanger` to completion and returns its exit status and standard output.
/// - Parameter executable: another program to run instead (e.g. a shell around `exchanger`).
public func runExchanger(
    _ arguments: [String], environment: [String: String] = [:], executable: String = TestEnvironment.exchanger
) async throws -> (status: Int32, output: String) {
    let child = try ChildProcess(executable: executable, arguments: arguments, environment: environment)
    let output = try await child.readAll()
    let status = try await child.wait()
    return (status, output)
}

/// The JSON lines `exchanger queues receive` printed.
public func receivedLines(_ output: String) -> [[String: Any]] {
    output.split(separator: "\n").compactMap { line in
        try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
    }
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
public func eventually(timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(50))
    }
    return try await condition()
}

extension Broker {
    /// Receives until `count` messages came or `timeout` passed.
    public func drain(_ queue: String, count: Int, timeout: Duration = .seconds(10), delete: Bool = true) async throws -> [ReceivedMessage] {
        var all: [ReceivedMessage] = []
        let deadline = ContinuousClock.now + timeout
        while all.count < count, ContinuousClock.now < deadline {
            let batch = try await receive(queue, maxMessages: min(100, count - all.count), wait: .milliseconds(500))
            if delete, !batch.isEmpty {
                let outcome = try await deleteBatch(queue, batch.map(\.receipt))
                #expect(outcome.failed.isEmpty)
            }
            all += batch
        }
        return all
    }
}

extension TestEnvironment {
    /// A sibling executable of this build (`exchanger-s3-copy`, `exchanger-dlq`, …).
    public static func executable(_ name: String) -> String {
        URL(fileURLWithPath: exchanger).deletingLastPathComponent().appendingPathComponent(name).path
    }
}

/// A fresh temporary directory, removed afterwards.
public func withTemporaryDirectory<T>(_ body: (URL) async throws -> T) async throws -> T {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("exch-w-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    return try await body(directory)
}

extension TestEnvironment {
    /// A variable `scripts/test` sets (a server's address, credentials). Missing means the tests
    /// were not started by the test script: that fails, it never skips.
    public static func required(_ variable: String) throws -> String {
        guard let value = ProcessInfo.processInfo.environment[variable], !value.isEmpty else {
            Issue.record("\(variable) is not set: run the tests with scripts/test, which starts the test servers")
            throw TestSetupError(message: "\(variable) is not set")
        }
        return value
    }
}

/// The second PostgreSQL server of `scripts/test`, which tests restart. Tests that use it hold
/// it exclusively (they run in one process, in parallel), so one test's restart never lands in
/// another's work.
public enum RestartablePostgres {
    private static let lock = AsyncLock()

    /// Runs `body` with a fresh database on the restartable server, holding the server alone.
    public static func withDatabase<T: Sendable>(_ body: (String) async throws -> T) async throws -> T {
        await lock.acquire()
        do {
            let result = try await withTestDatabase(.postgres, serverVariable: "EXCHANGER_TEST_RESTART_POSTGRES_URL", body)
            await lock.release()
            return result
        } catch {
            await lock.release()
            throw error
        }
    }

    /// `pg_ctl restart -m fast` as the server's owner: connections are cut, in-flight transactions
    /// rolled back, and the server comes back at the same address.
    public static func restart() async throws {
        try await pgCtl(["-w", "-m", "fast", "restart"])
    }

    /// `pg_ctl stop -m fast`: the server is down (connections refused) until ``start()``.
    public static func stop() async throws {
        try await pgCtl(["-w", "-m", "fast", "stop"])
    }

    /// `pg_ctl start`, after ``stop()``: the server is back at the same address.
    public static func start() async throws {
        try await pgCtl(["-w", "start"])
    }

    private static func pgCtl(_ arguments: [String]) async throws {
        let environment = ProcessInfo.processInfo.environment
        let dataDirectory = try TestEnvironment.required("EXCHANGER_TEST_RESTART_POSTGRES_DATA")
        let pgCtl = try TestEnvironment.required("EXCHANGER_TEST_PG_CTL")
        let user = environment["EXCHANGER_TEST_PG_USER"] ?? "postgres"
        let logFile = environment["EXCHANGER_TEST_RESTART_POSTGRES_LOG"] ?? "/dev/null"
        let logArguments = arguments.contains("stop") ? [] : ["-l", logFile]
        let child = try ChildProcess(executable: "/usr/sbin/runuser", arguments: [
            "-u", user, "--", pgCtl, "-D", dataDirectory,
        ] + logArguments + arguments, stdout: .discard, stderr: .discard, newProcessGroup: false)
        let status = try await child.wait()
        guard status == 0 else { throw TestSetupError(message: "pg_ctl \(arguments.joined(separator: " ")) exited with \(status)") }
    }
}

/// A FIFO lock for async code.
actor AsyncLock {
    private var held = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func acquire() async {
        if !held {
            held = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func release() {
        if waiters.isEmpty { held = false } else { waiters.removeFirst().resume() }
    }
}

extension PostgresConfiguration {
    /// For `CREATE DATABASE` / `DROP DATABASE` in tests: no statement timeout. A drop waits for a
    /// checkpoint, and with many suites creating and dropping databases at once on two cores
    /// (fsync on) that wait can pass the sessions' usual 60 s; it is slow, not wrong.
    public static var administration: PostgresConfiguration {
        var configuration = PostgresConfiguration()
        configuration.statementTimeout = nil
        return configuration
    }
}

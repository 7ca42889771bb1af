import ConcurrencySupport
import ExchangerTestSupport
import Foundation
import ProcessSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A real `exchanger-supervisor` process with a config file written by the test, its stdout
/// (the multiplexed JSON stream) collected line by line.
final class SupervisorHarness: Sendable {
    let process: ChildProcess
    let directory: URL
    let configPath: String
    private let collected = LockedBox<[String]>([])
    private let reader: Task<Void, Never>

    static var child: String { TestEnvironment.executable("exchanger-test-child") }

    /// Starts a supervisor on `config` (the `[supervisor]` section gets `http_port = 0` unless given).
    init(config: String, directory: URL, arguments: [String] = ["--no-broker"], environment: [String: String] = [:]) throws {
        self.directory = directory
        self.configPath = directory.appendingPathComponent("supervisor.conf").path
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        process = try ChildProcess(
            executable: TestEnvironment.executable("exchanger-supervisor"),
            arguments: ["--config", configPath] + arguments,
            environment: environment, stdout: .pipe, stderr: .inherit
        )
        let lines = process.lines()
        let box = collected
        reader = Task {
            do {
                for try await line in lines { box.withLock { $0.append(line) } }
            } catch {}
        }
    }

    /// Every line so far, parsed (non-JSON lines are skipped: the supervisor writes only JSON).
    var records: [[String: Any]] {
        collected.withLock { $0 }.compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
        }
    }

    var rawLines: [String] { collected.withLock { $0 } }

    /// Waits until a line matches.
    @discardableResult
    func waitFor(_ description: String, timeout: Duration = .seconds(15), _ match: ([String: Any]) -> Bool) async throws -> [String: Any] {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let found = records.first(where: match) { return found }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestSetupError(message: "timed out waiting for \(description); last lines:\n" + rawLines.suffix(30).joined(separator: "\n"))
    }

    /// Lines matching, in order.
    func all(_ match: ([String: Any]) -> Bool) -> [[String: Any]] { records.filter(match) }

    func signal(_ number: Int32) { process.signal(number) }

    /// SIGTERM and wait; returns the exit status.
    func stop(timeout: Duration = .seconds(30)) async throws -> Int32 {
        process.signal(SIGTERM)
        return try await waitForExit(timeout: timeout)
    }

    func waitForExit(timeout: Duration = .seconds(30)) async throws -> Int32 {
        let process = self.process
        return try await withThrowingTaskGroup(of: Int32?.self) { group in
            group.addTask { try await process.wait() }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let status = first else {
                process.signal(SIGKILL)
                throw TestSetupError(message: "the supervisor did not exit within \(timeout)")
            }
            return status
        }
    }

    /// Kills the supervisor if a test failed before stopping it.
    func cleanUp() async {
        if kill(process.pid, 0) == 0 {
            process.signal(SIGKILL)
            _ = try? await process.wait()
        }
        reader.cancel()
    }
}

/// Facts about processes, read from /proc.
enum Processes {
    /// Whether the pid exists and is not a zombie.
    static func alive(_ pid: Int32) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        return state(pid) != "Z"
    }

    static func state(_ pid: Int32) -> String? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let rest = stat[stat.index(after: close)...].split(separator: " ")
        return rest.first.map(String.init)
    }

    static func parent(_ pid: Int32) -> Int32? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        let rest = stat[stat.index(after: close)...].split(separator: " ")
        return rest.count > 1 ? Int32(rest[1]) : nil
    }

    /// Children of `pid` (any state).
    static func children(of pid: Int32) -> [Int32] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap(Int32.init).filter { parent($0) == pid }
    }

    /// Zombie children of `pid`.
    static func zombies(of pid: Int32) -> [Int32] {
        children(of: pid).filter { state($0) == "Z" }
    }

    /// Waits until none of `pids` is alive.
    static func waitGone(_ pids: [Int32], timeout: Duration = .seconds(10)) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if !pids.contains(where: alive) { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return !pids.contains(where: alive)
    }

    /// "PID PPID PGID" lines the test child appends to EXCHANGER_TEST_PID_FILE on every start.
    static func starts(_ file: URL) -> [(pid: Int32, parent: Int32, group: Int32)] {
        guard let text = try? String(contentsOf: file, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let parts = line.split(separator: " ").compactMap { Int32($0) }
            return parts.count == 3 ? (parts[0], parts[1], parts[2]) : nil
        }
    }
}

extension Dictionary where Key == String, Value == Any {
    func string(_ key: String) -> String? { self[key] as? String }
    func int(_ key: String) -> Int? { (self[key] as? NSNumber)?.intValue ?? (self[key] as? String).flatMap { Int($0) } }
}

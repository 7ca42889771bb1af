import ArgumentParser
import Broker
import Foundation
import ProcessSupport
import Supervisor
#if canImport(Glibc)
import Glibc
#endif

/// `exchanger bench supervisor`: a real `exchanger-supervisor` running N real, idle, unbound
/// `exchanger-s3-copy` workers on a SQLite broker; measures spawn-to-ready latency per worker,
/// the supervisor's CPU while everything idles, idle worker RSS, the drain on SIGTERM, and the
/// log multiplexer's throughput. The last stdout line is JSON.
struct SupervisorBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "supervisor",
        abstract: "Measure spawn-to-ready latency, idle supervisor CPU, worker RSS and log multiplexing throughput.")

    @Option(help: "Idle worker processes.") var workers: Int = 20
    @Option(help: "Seconds of idle time over which the supervisor's CPU is measured.") var idleSeconds: Double = 10
    @Option(help: "Lines through the log multiplexer benchmark.") var logLines: Int = 1_000_000
    @Option(help: "Pipes (writer threads) in the log multiplexer benchmark.") var logPipes: Int = 8
    @Option(help: "Seconds to wait for every worker to be ready.") var timeout: Double = 120

    func validate() throws {
        guard workers >= 1, idleSeconds > 0, logLines >= 1, logPipes >= 1 else {
            throw ValidationError("--workers, --idle-seconds, --log-lines and --log-pipes must be positive")
        }
    }

    func run() async throws {
        let binDirectory = URL(fileURLWithPath: currentExecutable()).deletingLastPathComponent()
        let supervisorPath = binDirectory.appendingPathComponent("exchanger-supervisor").path
        let workerPath = binDirectory.appendingPathComponent("exchanger-s3-copy").path
        for path in [supervisorPath, workerPath, binDirectory.appendingPathComponent("exchanger-exec").path]
        where !FileManager.default.isExecutableFile(atPath: path) {
            throw ValidationError("\(path) is missing: build it next to exchanger (swift build -c release)")
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("exchanger-bench-supervisor-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let brokerURL = "sqlite://" + directory.appendingPathComponent("broker.db").path
        try await Broker.migrate(url: brokerURL)
        let storage = directory.appendingPathComponent("storage")
        try FileManager.default.createDirectory(at: storage, withIntermediateDirectories: true)
        let config = """
            [supervisor]
            identifier = bench-\(getpid())
            http_port = 0

            [program:s3-copy]
            command = \(workerPath) --program s3-copy
            numprocs = \(workers)
            environment = EXCHANGER_STORAGE_URL="file://\(storage.path)"
            """
        let configPath = directory.appendingPathComponent("supervisor.conf").path
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)

        say("==> exchanger-supervisor with \(workers) idle exchanger-s3-copy workers")
        let supervisor = try ChildProcess(
            executable: supervisorPath, arguments: ["--config", configPath, "--database", brokerURL],
            stdout: .pipe, stderr: .inherit)
        let lines = LockedLines()
        let reader = Task {
            do { for try await line in supervisor.lines() { lines.append(line) } } catch {}
        }

        // Spawn → ready ("worker started", the worker's first line after it connected).
        let deadline = ContinuousClock.now + .seconds(timeout)
        var latencies: [Double] = []
        while ContinuousClock.now < deadline {
            latencies = Self.latencies(lines.all)
            if latencies.count >= workers { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        guard latencies.count >= workers else {
            supervisor.signal(SIGKILL)
            _ = try? await supervisor.wait()
            throw ValidationError("only \(latencies.count) of \(workers) workers became ready within \(timeout) s")
        }
        let workerPIDs = Self.workerPIDs(lines.all)

        // Idle: the supervisor's CPU over the window, workers' RSS at the end.
        try await Task.sleep(for: .seconds(2))
        let before = Self.cpuTicks(supervisor.pid)
        let started = ContinuousClock.now
        try await Task.sleep(for: .seconds(idleSeconds))
        let after = Self.cpuTicks(supervisor.pid)
        let elapsed = Self.seconds(ContinuousClock.now - started)
        let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
        let cpuPercent = Double(after - before) / ticksPerSecond / elapsed * 100
        let rss = workerPIDs.compactMap { residentKilobytes(pid: $0) }.sorted()
        let supervisorRSS = residentKilobytes(pid: supervisor.pid) ?? 0

        // Drain.
        let drainStarted = ContinuousClock.now
        supervisor.signal(SIGTERM)
        let status = try await supervisor.wait()
        let drainSeconds = Self.seconds(ContinuousClock.now - drainStarted)
        _ = await reader.value
        let leftover = workerPIDs.filter { kill($0, 0) == 0 }

        say("==> log multiplexer: \(logLines) lines through \(logPipes) pipes")
        let logs = try await LogMultiplexer.benchmark(lines: logLines, children: logPipes)

        let sorted = latencies.sorted()
        let report = SupervisorBenchReport(
            workers: workers,
            spawn_to_ready_ms_median: Self.round(Self.percentile(sorted, 0.5)),
            spawn_to_ready_ms_p95: Self.round(Self.percentile(sorted, 0.95)),
            spawn_to_ready_ms_max: Self.round(sorted.last ?? 0),
            spawn_to_ready_target_ms: 100,
            supervisor_idle_cpu_percent: Self.round(cpuPercent, places: 3),
            supervisor_idle_cpu_target_percent: 1,
            idle_seconds: Self.round(elapsed),
            log_lines_per_second: Self.round(logs.linesPerSecond, places: 0),
            log_lines_target_per_second: 50_000,
            log_pipes: logPipes,
            idle_worker_rss_mb_median: Self.round(Double(rss.isEmpty ? 0 : rss[rss.count / 2]) / 1024),
            idle_worker_rss_mb_max: Self.round(Double(rss.last ?? 0) / 1024),
            supervisor_rss_mb: Self.round(Double(supervisorRSS) / 1024),
            drain_seconds: Self.round(drainSeconds),
            supervisor_exit_status: Int(status),
            workers_left_after_drain: leftover.count
        )
        say("spawn→ready median \(report.spawn_to_ready_ms_median) ms (p95 \(report.spawn_to_ready_ms_p95), max \(report.spawn_to_ready_ms_max)); idle supervisor CPU \(report.supervisor_idle_cpu_percent) %; idle worker RSS median \(report.idle_worker_rss_mb_median) MB; logs \(report.log_lines_per_second) lines/s; drain \(report.drain_seconds) s")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        FileHandle.standardOutput.write(try encoder.encode(report) + Data("\n".utf8))
        guard status == 0, leftover.isEmpty else { throw ExitCode(1) }
    }

    /// Milliseconds from "process spawned" (the supervisor's line) to "worker started" (the
    /// worker's own line, multiplexed with its pid), per pid.
    static func latencies(_ lines: [String]) -> [Double] {
        var spawned: [Int: Double] = [:]
        var ready: [Int: Double] = [:]
        for line in lines {
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any],
                  let message = object["msg"] as? String, let time = (object["time"] as? String).flatMap(parseTimestamp)
            else { continue }
            let pid = (object["pid"] as? NSNumber)?.intValue ?? (object["pid"] as? String).flatMap { Int($0) }
            guard let pid else { continue }
            if message == "process spawned" { spawned[pid] = time } else if message == "worker started" { ready[pid] = time }
        }
        return ready.compactMap { pid, at in spawned[pid].map { (at - $0) * 1000 } }
    }

    static func workerPIDs(_ lines: [String]) -> [pid_t] {
        lines.compactMap { line -> pid_t? in
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any],
                  object["msg"] as? String == "worker started" else { return nil }
            return (object["pid"] as? NSNumber).map { pid_t($0.int32Value) }
        }
    }

    static func cpuTicks(_ pid: pid_t) -> Int {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command: state(0) … utime(11) stime(12).
        guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { return 0 }
        return user + system
    }

    static func percentile(_ sorted: [Double], _ fraction: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * fraction).rounded()))]
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func round(_ value: Double, places: Int = 2) -> Double {
        let scale = pow(10.0, Double(places))
        return (value * scale).rounded() / scale
    }
}

struct SupervisorBenchReport: Codable, Sendable {
    var workers: Int
    var spawn_to_ready_ms_median: Double
    var spawn_to_ready_ms_p95: Double
    var spawn_to_ready_ms_max: Double
    var spawn_to_ready_target_ms: Double
    var supervisor_idle_cpu_percent: Double
    var supervisor_idle_cpu_target_percent: Double
    var idle_seconds: Double
    var log_lines_per_second: Double
    var log_lines_target_per_second: Double
    var log_pipes: Int
    var idle_worker_rss_mb_median: Double
    var idle_worker_rss_mb_max: Double
    var supervisor_rss_mb: Double
    var drain_seconds: Double
    var supervisor_exit_status: Int
    var workers_left_after_drain: Int
}

/// Writes a line to stdout unbuffered, so progress lines and the final JSON stay in order.
private func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// Lines collected from a reader task.
final class LockedLines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ line: String) { lock.withLock { lines.append(line) } }
    var all: [String] { lock.withLock { lines } }
}

/// `2026-11-25T12:00:00.123Z` → seconds since 1970.
func parseTimestamp(_ text: String) -> Double? {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return formatter.date(from: text)?.timeIntervalSince1970
}

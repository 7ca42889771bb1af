import ArgumentParser
import Foundation

/// The options every worker executable takes. Each falls back to its environment variable, then
/// to the default of ``WorkerConfiguration``.
public struct WorkerOptions: ParsableArguments, Sendable {
    @Option(help: "Broker database URL (default: EXCHANGER_DATABASE_URL, else the file named by EXCHANGER_DATABASE_URL_FILE).")
    public var database: String?

    @Option(help: "Bound mode: serve exactly this queue.")
    public var queue: String?

    @Option(help: "Unbound mode: serve every unsealed queue whose program is this name.")
    public var program: String?

    @Option(help: "Messages per receive (EXCHANGER_WORKER_BATCH_SIZE, default 10).")
    public var batchSize: Int?

    @Option(help: "Messages handled at once (EXCHANGER_WORKER_CONCURRENCY, default 8).")
    public var concurrency: Int?

    @Option(help: "Long-poll wait in seconds (EXCHANGER_WORKER_WAIT_SECONDS, default 20).")
    public var wait: Double?

    @Option(help: "Lease per receive in seconds (EXCHANGER_WORKER_VISIBILITY_TIMEOUT_SECONDS, default: the queue's).")
    public var visibilityTimeout: Double?

    @Option(help: "Serve Prometheus metrics on this port (EXCHANGER_METRICS_PORT; none by default).")
    public var metricsPort: Int?

    @Option(help: "Object storage for oversized message bodies, e.g. s3://bucket/prefix or file:///dir (EXCHANGER_STAGING_URL).")
    public var stagingURL: String?

    public init() {}

    /// The environment the defaults come from (tests pass their own).
    public typealias Environment = [String: String]

    /// The broker URL from the option, `EXCHANGER_DATABASE_URL` or `EXCHANGER_DATABASE_URL_FILE`
    /// (see ``resolveDatabaseURL(option:environment:)``).
    public func databaseURL(_ environment: Environment = ProcessInfo.processInfo.environment) throws -> String {
        try Self.resolveDatabaseURL(option: database, environment: environment)
    }

    /// The broker database URL every executable uses (workers, the CLI, the supervisor): `option`
    /// (`--database`) if given, else `EXCHANGER_DATABASE_URL`, else the contents of the file named by
    /// `EXCHANGER_DATABASE_URL_FILE` (a container secret such as `/run/secrets/exchanger-database-url`;
    /// surrounding whitespace and the trailing newline are trimmed), so the password in the URL
    /// never has to be an environment value.
    /// - Throws: `ValidationError` when none is set, or the file cannot be read or is empty.
    public static func resolveDatabaseURL(option: String?, environment: Environment) throws -> String {
        if let option, !option.isEmpty { return option }
        if let url = environment["EXCHANGER_DATABASE_URL"], !url.isEmpty { return url }
        if let path = environment["EXCHANGER_DATABASE_URL_FILE"], !path.isEmpty {
            let contents: String
            do {
                contents = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw ValidationError("cannot read EXCHANGER_DATABASE_URL_FILE '\(path)': \(error.localizedDescription)")
            }
            let url = contents.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !url.isEmpty else { throw ValidationError("EXCHANGER_DATABASE_URL_FILE '\(path)' is empty") }
            return url
        }
        throw ValidationError("no broker database: pass --database URL or set EXCHANGER_DATABASE_URL (or EXCHANGER_DATABASE_URL_FILE)")
    }

    /// The staging store URL from the option or `EXCHANGER_STAGING_URL`, if any.
    public func stagingStoreURL(_ environment: Environment = ProcessInfo.processInfo.environment) -> String? {
        if let stagingURL, !stagingURL.isEmpty { return stagingURL }
        if let url = environment["EXCHANGER_STAGING_URL"], !url.isEmpty { return url }
        return nil
    }

    /// The address the metrics endpoint listens on: `EXCHANGER_METRICS_HOST`, default `127.0.0.1`
    /// (loopback only; a container sets `0.0.0.0` for its scraper).
    public func metricsHost(_ environment: Environment = ProcessInfo.processInfo.environment) -> String {
        environment["EXCHANGER_METRICS_HOST"].flatMap { $0.isEmpty ? nil : $0 } ?? "127.0.0.1"
    }

    /// The metrics port from the option or `EXCHANGER_METRICS_PORT`, if any.
    public func metricsPort(_ environment: Environment = ProcessInfo.processInfo.environment) throws -> Int? {
        if let metricsPort { return metricsPort }
        return try Self.number(environment, "EXCHANGER_METRICS_PORT", range: 0...65535)
    }

    /// The worker configuration for `program` (used for logs and metrics), from these options,
    /// then the environment, then the defaults.
    ///
    /// Without `--queue` or `--program`, `defaultQueue` (global processors) is served bound.
    public func configuration(
        program name: String, defaultQueue: String? = nil, _ environment: Environment = ProcessInfo.processInfo.environment
    ) throws -> WorkerConfiguration {
        let source: WorkerConfiguration.Source
        switch (queue, program) {
        case (let queue?, nil): source = .queue(queue)
        case (nil, let program?): source = .program(program)
        case (nil, nil):
            guard let defaultQueue else { throw ValidationError("pass --queue NAME (bound) or --program NAME (unbound)") }
            source = .queue(defaultQueue)
        case (_?, _?): throw ValidationError("--queue and --program exclude each other")
        }
        var configuration = WorkerConfiguration(source: source, program: name)
        if let value = try batchSize ?? Self.number(environment, "EXCHANGER_WORKER_BATCH_SIZE", range: 1...10_000) {
            guard (1...10_000).contains(value) else { throw ValidationError("--batch-size must be 1…10000") }
            configuration.batchSize = value
        }
        if let value = try concurrency ?? Self.number(environment, "EXCHANGER_WORKER_CONCURRENCY", range: 1...1_000) {
            guard (1...1_000).contains(value) else { throw ValidationError("--concurrency must be 1…1000") }
            configuration.concurrency = value
        }
        if let value = try wait ?? Self.seconds(environment, "EXCHANGER_WORKER_WAIT_SECONDS") {
            guard (0...300).contains(value) else { throw ValidationError("--wait must be 0…300 seconds") }
            configuration.wait = .milliseconds(Int64(value * 1000))
        }
        if let value = try visibilityTimeout ?? Self.seconds(environment, "EXCHANGER_WORKER_VISIBILITY_TIMEOUT_SECONDS") {
            guard value > 0, value <= 43_200 else { throw ValidationError("--visibility-timeout must be > 0 and ≤ 43200 seconds") }
            configuration.visibilityTimeout = .milliseconds(Int64(value * 1000))
        }
        if let value = try Self.seconds(environment, "EXCHANGER_WORKER_BACKOFF_BASE_SECONDS") {
            configuration.backoff.base = .milliseconds(Int64(max(value, 1) * 1000))
        }
        if let value = try Self.seconds(environment, "EXCHANGER_WORKER_BACKOFF_CAP_SECONDS") {
            configuration.backoff.cap = .milliseconds(Int64(max(value, 1) * 1000))
        }
        if let value = try Self.seconds(environment, "EXCHANGER_WORKER_QUEUE_REFRESH_SECONDS") {
            configuration.queueRefreshInterval = .milliseconds(Int64(max(value, 0.1) * 1000))
        }
        if let value = try Self.seconds(environment, "EXCHANGER_WORKER_EXIT_GRACE_SECONDS") {
            configuration.exitGrace = .milliseconds(Int64(max(value, 0) * 1000))
        }
        if let value = try Self.seconds(environment, "EXCHANGER_WORKER_STORAGE_HOLD_SECONDS") {
            configuration.storageHold = .milliseconds(Int64(min(max(value, 0.1), 3600) * 1000))
        }
        if let value = try Self.seconds(environment, "EXCHANGER_WORKER_STORAGE_HOLD_MAX_SECONDS") {
            configuration.storageHoldMaximum = .milliseconds(Int64(min(max(value, 0.1), 86_400) * 1000))
        }
        if let value = try Self.seconds(environment, "EXCHANGER_WORKER_PRESENCE_SECONDS") {
            configuration.presenceInterval = value > 0 ? .milliseconds(Int64(min(max(value, 0.1), 1200) * 1000)) : nil
        }
        return configuration
    }

    static func number(_ environment: Environment, _ name: String, range: ClosedRange<Int>) throws -> Int? {
        guard let text = environment[name], !text.isEmpty else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw ValidationError("\(name)='\(text)' must be an integer in \(range.lowerBound)…\(range.upperBound)")
        }
        return value
    }

    static func seconds(_ environment: Environment, _ name: String) throws -> Double? {
        guard let text = environment[name], !text.isEmpty else { return nil }
        guard let value = Double(text), value.isFinite, value >= 0 else {
            throw ValidationError("\(name)='\(text)' must be a number of seconds ≥ 0")
        }
        return value
    }
}

import Foundation
import Logging
import Synchronization

/// A swift-log handler writing one JSON object per line: `time`, `level`, `msg`, `program`, then
/// the metadata (jobId, caseId, batchId, documentId, …) as top-level fields.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    public var logLevel: Logger.Level
    private let label: String
    private let program: String
    private let stream: Stream

    /// Where the lines go.
    public enum Stream: Sendable {
        case standardOutput, standardError
        /// Each line (without its newline) goes to this function: the supervisor puts its own
        /// lines into the same ordered stream as its children's.
        case custom(@Sendable (String) -> Void)
    }

    public init(label: String, program: String, level: Logger.Level = .info, stream: Stream = .standardError) {
        self.label = label
        self.program = program
        self.logLevel = level
        self.stream = stream
    }

    /// Bootstraps swift-log with this handler; the level comes from `EXCHANGER_LOG_LEVEL` (default `info`).
    public static func bootstrap(program: String, stream: Stream = .standardError) {
        let level = ProcessInfo.processInfo.environment["EXCHANGER_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        LoggingSystem.bootstrap { label in JSONLogHandler(label: label, program: program, level: level, stream: stream) }
    }

    private static let bootstrapped = Mutex(false)

    /// Bootstraps swift-log with this handler the first time it is called in a process and does
    /// nothing after that (commands and workers may run several times in one test process).
    public static func bootstrapOnce(program: String, stream: Stream = .standardError) {
        let first = bootstrapped.withLock { done in
            defer { done = true }
            return !done
        }
        if first { bootstrap(program: program, stream: stream) }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var object: [String: Any] = [
            "time": Self.timestamp(), "level": event.level.rawValue, "msg": event.message.description, "program": program,
            "logger": label,
        ]
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided, uniquingKeysWith: { $1 }) }
        if let explicit = event.metadata { merged.merge(explicit, uniquingKeysWith: { $1 }) }
        for (key, value) in merged { object[key] = Self.json(value) }
        if let error = event.error { object["error"] = String(describing: error) }
        guard var data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
        switch stream {
        case .standardOutput, .standardError:
            data.append(UInt8(ascii: "\n"))
            let handle = if case .standardOutput = stream { FileHandle.standardOutput } else { FileHandle.standardError }
            handle.write(data)
        case .custom(let write):
            write(String(decoding: data, as: UTF8.self))
        }
    }

    private static func json(_ value: Logger.MetadataValue) -> Any {
        switch value {
        case .string(let string): string
        case .stringConvertible(let convertible): convertible.description
        case .array(let array): array.map(json)
        case .dictionary(let dictionary): dictionary.mapValues(json)
        }
    }

    /// `2026-11-25T12:00:00.123Z`, formatted without ICU (a formatter per line cost both time and
    /// the ICU data pages in every process's memory).
    private static func timestamp() -> String {
        Date().formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }
}

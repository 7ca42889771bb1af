import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a child's stdout or stderr is also written: a file rotated at `maxBytes`, keeping `backups` old files.
public struct LogFileSettings: Sendable, Equatable {
    /// The path; for programs a template that may use `%(program_name)s`, `%(process_num)d` and the other expansions.
    public var path: String
    /// Rotate when the file reaches this size; 0 = never rotate.
    public var maxBytes: Int
    /// How many rotated files to keep (`path.1` … `path.N`).
    public var backups: Int

    /// Creates log file settings.
    public init(path: String, maxBytes: Int = 50 * 1024 * 1024, backups: Int = 10) {
        self.path = path
        self.maxBytes = maxBytes
        self.backups = backups
    }
}

/// One environment variable of a program: `name=value`, where the value is a template.
public struct EnvironmentVariable: Sendable, Equatable {
    /// The variable name, `^[A-Za-z_][A-Za-z0-9_]*$`.
    public var name: String
    /// The value as written (unquoted), before expansion.
    public var value: String

    /// Creates a variable.
    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// A `[program:NAME]` section with every default and every inherited `[supervisor]` value resolved.
public struct ProgramConfiguration: Sendable, Equatable {
    /// Whether one set of processes serves the whole system or each exchange gets its own.
    public enum Scope: String, Sendable, Equatable {
        /// One set of processes for the whole system, started with the supervisor.
        case global
        /// One set of processes per exchange deployment, started when the orchestrator writes a deployment row.
        case perExchange = "per-exchange"
    }

    /// What to do when a process exits (supervisord's `autorestart`).
    public enum AutoRestart: String, Sendable, Equatable {
        /// Always restart.
        case always = "true"
        /// Never restart.
        case never = "false"
        /// Restart when the exit status is not in ``ProgramConfiguration/exitCodes``.
        case unexpected
    }

    /// The program name (`[program:NAME]`), `^[A-Za-z0-9_.-]{1,64}$`.
    public var name: String
    /// `scope`.
    public var scope: Scope
    /// `command`: the raw command line; see ``argv(_:)``.
    public var command: String
    /// The fewest instances (`numprocs` or `min_procs`); for per-exchange programs a default the deployment may override.
    public var minProcs: Int
    /// The most instances (`numprocs` or `max_procs`); for per-exchange programs a default the deployment may override.
    public var maxProcs: Int
    /// `messages_per_proc`: the queue depth one instance is expected to handle; scaling aims at `depth / messagesPerProc` instances.
    public var messagesPerProc: Int
    /// `queue`: the queue a global program scales on (nil: it runs `minProcs` instances); always nil for per-exchange programs.
    public var queue: String?
    /// `autostart`: whether a global program starts with the supervisor (always true for per-exchange programs).
    public var autostart: Bool
    /// `priority`: lower starts first and stops last.
    public var priority: Int
    /// `autorestart`.
    public var autorestart: AutoRestart
    /// `exitcodes`: the expected exit statuses.
    public var exitCodes: Set<Int32>
    /// `startsecs`: how long a process must stay up to count as started.
    public var startSeconds: Duration
    /// `startretries`: failed starts (exits before `startsecs`) in a row before the instance is marked failed.
    public var startRetries: Int
    /// `stopsignal`, as a signal number.
    public var stopSignal: Int32
    /// `stopwaitsecs`: how long to wait after the stop signal before SIGKILL.
    public var stopWait: Duration
    /// `environment`, in order; values are templates (see ``expandedEnvironment(_:)``).
    public var environment: [EnvironmentVariable]
    /// `directory`: the working directory template, or nil for the supervisor's.
    public var directory: String?
    /// `stdout_logfile` and its `_maxbytes` / `_backups`; nil = none.
    public var stdoutLog: LogFileSettings?
    /// `stderr_logfile` and its `_maxbytes` / `_backups`; nil = none.
    public var stderrLog: LogFileSettings?
    /// `backoff_initial` (this program's or the `[supervisor]` one): the first restart delay, ≥ 1 s.
    public var backoffInitial: Duration
    /// `backoff_max`: the cap of the exponential restart delay.
    public var backoffMax: Duration
    /// `crashloop_deaths`: deaths within ``crashLoopWindow`` that mark the instance as crash-looping.
    public var crashLoopDeaths: Int
    /// `crashloop_window`.
    public var crashLoopWindow: Duration
    /// The configuration file the program was read from (for messages).
    public var file: String
    /// The directory of the configuration file: `%(here)s`.
    public var here: String
    /// The line of the `[program:NAME]` header (for messages); 0 when built in code.
    public var line: Int

    /// A program with supervisord's and this project's defaults (1 instance for global programs,
    /// 1…4 for per-exchange ones), as if written as a section with only `command`.
    public init(name: String, command: String, scope: Scope = .global, here: String = ".", file: String = "supervisor.conf") {
        let defaults = SupervisorSettings()
        self.name = name
        self.scope = scope
        self.command = command
        self.minProcs = 1
        self.maxProcs = scope == .global ? 1 : 4
        self.messagesPerProc = 100
        self.queue = nil
        self.autostart = true
        self.priority = 999
        self.autorestart = .unexpected
        self.exitCodes = [0]
        self.startSeconds = .seconds(1)
        self.startRetries = 3
        self.stopSignal = SIGTERM
        self.stopWait = .seconds(10)
        self.environment = []
        self.directory = nil
        self.stdoutLog = nil
        self.stderrLog = nil
        self.backoffInitial = defaults.backoffInitial
        self.backoffMax = defaults.backoffMax
        self.crashLoopDeaths = defaults.crashLoopDeaths
        self.crashLoopWindow = defaults.crashLoopWindow
        self.file = file
        self.here = here
        self.line = 0
    }

    /// Whether a process that exited with `exitStatus` is restarted: `always` → true, `never` →
    /// false, `unexpected` → when the status is not in ``exitCodes``. A death by signal N is
    /// reported as 128 + N, so it is unexpected unless listed.
    public func shouldRestart(exitStatus: Int32) -> Bool {
        switch autorestart {
        case .always: return true
        case .never: return false
        case .unexpected: return !exitCodes.contains(exitStatus)
        }
    }

    /// A context for instance `processNumber` of this program, with `programName` and `here` filled in.
    public func expansionContext(
        processNumber: Int,
        queue: String? = nil,
        exchangeID: String? = nil,
        deploymentID: String? = nil,
        hostName: String = SupervisorSettings.localHostName(),
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> ExpansionContext {
        ExpansionContext(
            programName: name, processNumber: processNumber, queue: queue ?? self.queue, exchangeID: exchangeID,
            deploymentID: deploymentID, here: here, hostName: hostName, environment: environment
        )
    }

    /// The command split into words, then every word expanded: an expanded value containing
    /// spaces stays one argument. `argv[0]` may be relative; the spawner resolves it.
    ///
    /// - Throws: ``ConfigurationError`` `.badValue` naming the key, e.g. for an unset `%(ENV_X)s`.
    public func argv(_ context: ExpansionContext) throws -> [String] {
        let words = try templateCall("command") { () throws(TemplateFailure) in try CommandTemplate.splitWords(command) }
        guard !words.isEmpty else { throw error("command", "the command is empty") }
        return try words.map { word in try expand(word, key: "command", context) }
    }

    /// The `environment` pairs, in order, with values expanded.
    ///
    /// - Throws: ``ConfigurationError`` `.badValue`, e.g. for an unset `%(ENV_X)s`.
    public func expandedEnvironment(_ context: ExpansionContext) throws -> [(String, String)] {
        try environment.map { variable in (variable.name, try expand(variable.value, key: "environment", context)) }
    }

    /// The expanded working directory, or nil for the supervisor's.
    public func expandedDirectory(_ context: ExpansionContext) throws -> String? {
        try directory.map { try expand($0, key: "directory", context) }
    }

    /// The expanded `stdout_logfile`, or nil when there is none.
    public func stdoutLogPath(_ context: ExpansionContext) throws -> String? {
        try stdoutLog.map { try expand($0.path, key: "stdout_logfile", context) }
    }

    /// The expanded `stderr_logfile`, or nil when there is none.
    public func stderrLogPath(_ context: ExpansionContext) throws -> String? {
        try stderrLog.map { try expand($0.path, key: "stderr_logfile", context) }
    }

    private func expand(_ text: String, key: String, _ context: ExpansionContext) throws -> String {
        try templateCall(key) { () throws(TemplateFailure) in try CommandTemplate(text).expand(context) }
    }

    private func templateCall<T>(_ key: String, _ body: () throws(TemplateFailure) -> T) throws(ConfigurationError) -> T {
        do {
            return try body()
        } catch {
            throw self.error(key, error.reason)
        }
    }

    private func error(_ key: String, _ reason: String) -> ConfigurationError {
        ConfigurationError(.badValue, file: file, line: line == 0 ? nil : line, section: "program:\(name)", key: key, reason: reason)
    }
}

extension ProgramConfiguration {
    /// Parses supervisord's `environment` syntax: `KEY="val",KEY2=val2`, entries separated by
    /// unquoted commas or newlines (continuation lines); values may be quoted with `'…'` (literal)
    /// or `"…"` (backslash escapes `"` and `\`); unquoted spaces around keys and values are dropped.
    static func parseEnvironment(_ text: String) throws(TemplateFailure) -> [EnvironmentVariable] {
        /// One character of an entry and whether it was quoted.
        typealias Piece = (character: Character, quoted: Bool)
        var entries: [[Piece]] = []
        var current: [Piece] = []
        var quote: Character?
        var index = text.startIndex
        while index < text.endIndex {
            let character = text[index]
            index = text.index(after: index)
            if let open = quote {
                if character == open {
                    quote = nil
                } else if open == "\"", character == "\\", index < text.endIndex, text[index] == "\"" || text[index] == "\\" {
                    current.append((text[index], true))
                    index = text.index(after: index)
                } else {
                    current.append((character, true))
                }
                continue
            }
            switch character {
            case "'", "\"": quote = character
            case ",", "\n", "\r\n":
                entries.append(current)
                current = []
            default: current.append((character, false))
            }
        }
        guard quote == nil else { throw TemplateFailure(reason: "unterminated quote in '\(text)'") }
        entries.append(current)

        func trimmed(_ pieces: ArraySlice<Piece>) -> ArraySlice<Piece> {
            var slice = pieces
            while let first = slice.first, !first.quoted, first.character.isWhitespace { slice.removeFirst() }
            while let last = slice.last, !last.quoted, last.character.isWhitespace { slice.removeLast() }
            return slice
        }

        var variables: [EnvironmentVariable] = []
        for entry in entries {
            let pieces = trimmed(entry[...])
            if pieces.isEmpty { continue }
            let written = String(pieces.map(\.character))
            guard let equals = pieces.firstIndex(where: { $0.character == "=" && !$0.quoted }) else {
                throw TemplateFailure(reason: "expected KEY=value, got '\(written)'")
            }
            let keyPieces = trimmed(pieces[..<equals])
            let name = String(keyPieces.map(\.character))
            guard !keyPieces.contains(where: \.quoted), CommandTemplate.isVariableName(name[...]) else {
                throw TemplateFailure(reason: "'\(name)' is not a variable name (^[A-Za-z_][A-Za-z0-9_]*$) in '\(written)'")
            }
            guard !variables.contains(where: { $0.name == name }) else {
                throw TemplateFailure(reason: "variable '\(name)' is given twice")
            }
            let value = String(trimmed(pieces[pieces.index(after: equals)...]).map(\.character))
            variables.append(EnvironmentVariable(name: name, value: value))
        }
        return variables
    }
}

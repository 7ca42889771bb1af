import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The `[supervisor]` section with defaults filled in.
public struct SupervisorSettings: Sendable, Equatable {
    /// `identifier`: this supervisor's id in the broker (several supervisors share one); default: the host name.
    public var identifier: String
    /// `broker_url` as written (a template that may use `%(ENV_X)s`, `%(here)s`, `%(host_node_name)s`);
    /// empty = `EXCHANGER_DATABASE_URL`. See ``SupervisorConfiguration/brokerURL(environment:)``.
    public var brokerURL: String
    /// `http_host`: the address of `/healthz`, `/readyz`, `/metrics`.
    public var httpHost: String
    /// `http_port`; 0 = no HTTP endpoint.
    public var httpPort: Int
    /// `logfile` (a template, see ``SupervisorConfiguration/logFilePath(environment:)``), `logfile_maxbytes`,
    /// `logfile_backups`: a copy of the combined JSON stream; nil = none.
    public var logFile: LogFileSettings?
    /// `reconcile_interval`: the periodic deployment pass besides NOTIFY.
    public var reconcileInterval: Duration
    /// `lease_seconds`: the lease of this supervisor and of the deployments it runs.
    public var leaseDuration: Duration
    /// `fence_seconds`: how long after the start of its last pass that renewed its lease a
    /// supervisor that cannot renew it stops its per-exchange workers (default: half the lease).
    /// It is shorter than the lease, and another supervisor takes the deployments over only once
    /// the lease has expired, so the cut-off host's workers are stopping before anyone else starts
    /// the same deployments.
    public var fenceAfter: Duration?
    /// ``fenceAfter``, or half the lease.
    public var effectiveFenceAfter: Duration { fenceAfter ?? leaseDuration / 2 }
    /// `scale_down_window`: how long a lower desired count must hold before instances are stopped.
    public var scaleDownWindow: Duration
    /// `backoff_initial`: the first restart delay (≥ 1 s); programs inherit it.
    public var backoffInitial: Duration
    /// `backoff_max`: the cap of the exponential restart delay; programs inherit it.
    public var backoffMax: Duration
    /// `crashloop_deaths`: deaths within ``crashLoopWindow`` that mark an instance as crash-looping; programs inherit it.
    public var crashLoopDeaths: Int
    /// `crashloop_window`; programs inherit it.
    public var crashLoopWindow: Duration
    /// `shutdown_timeout`: the cap on the whole drain on SIGTERM.
    public var shutdownTimeout: Duration

    /// The defaults, with ``identifier`` set to the host name.
    public init() {
        identifier = Self.localHostName()
        brokerURL = ""
        httpHost = "127.0.0.1"
        httpPort = 9100
        logFile = nil
        reconcileInterval = .seconds(5)
        leaseDuration = .seconds(30)
        fenceAfter = nil
        scaleDownWindow = .seconds(60)
        backoffInitial = .seconds(1)
        backoffMax = .seconds(60)
        crashLoopDeaths = 5
        crashLoopWindow = .seconds(60)
        shutdownTimeout = .seconds(60)
    }

    /// The host name (`gethostname`), or `localhost` when it cannot be read.
    public static func localHostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        let bytes = buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }
        let name = String(decoding: bytes, as: UTF8.self)
        return name.isEmpty ? "localhost" : name
    }
}

/// A parsed and validated `supervisor.conf`.
public struct SupervisorConfiguration: Sendable, Equatable {
    /// The path it was read from (as given).
    public var file: String
    /// The directory of ``file``: `%(here)s` (absolute after ``load(path:)``).
    public var here: String
    /// The `[supervisor]` section.
    public var supervisor: SupervisorSettings
    /// The `[program:NAME]` sections in file order.
    public var programs: [ProgramConfiguration]

    /// Creates a configuration from parts (tests, tools).
    public init(file: String, here: String, supervisor: SupervisorSettings = SupervisorSettings(), programs: [ProgramConfiguration] = []) {
        self.file = file
        self.here = here
        self.supervisor = supervisor
        self.programs = programs
    }

    /// The program named `name`.
    public func program(named name: String) -> ProgramConfiguration? {
        programs.first { $0.name == name }
    }

    /// Reads and parses the file at `path`; `%(here)s` is its absolute directory.
    ///
    /// - Throws: ``ConfigurationError`` (`.unreadable` when the file cannot be read).
    public static func load(path: String) throws -> SupervisorConfiguration {
        let manager = FileManager.default
        guard let data = manager.contents(atPath: path) else {
            var isDirectory: ObjCBool = false
            let reason: String
            if !manager.fileExists(atPath: path, isDirectory: &isDirectory) {
                reason = "no such file"
            } else if isDirectory.boolValue {
                reason = "is a directory"
            } else {
                reason = "cannot be read (permissions?)"
            }
            throw ConfigurationError(.unreadable, file: path, reason: reason)
        }
        guard let text = String(validating: data, as: UTF8.self) else {
            throw ConfigurationError(.unreadable, file: path, reason: "not valid UTF-8")
        }
        let absolute = normalized(path.hasPrefix("/") ? path : manager.currentDirectoryPath + "/" + path)
        return try parse(text, file: path, here: directory(of: absolute))
    }

    /// Parses configuration text; `file` names it in errors and gives `%(here)s` (its directory, `.` when it has none).
    ///
    /// - Throws: ``ConfigurationError`` for the first mistake found.
    public static func parse(_ text: String, file: String) throws -> SupervisorConfiguration {
        try parse(text, file: file, here: directory(of: file))
    }

    /// The broker URL: `broker_url` expanded, or `EXCHANGER_DATABASE_URL` when it is empty; nil when neither is set.
    ///
    /// - Throws: ``ConfigurationError`` `.badValue` when a `%(ENV_X)s` it uses is not set.
    public func brokerURL(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String? {
        if supervisor.brokerURL.isEmpty {
            guard let url = environment["EXCHANGER_DATABASE_URL"], !url.isEmpty else { return nil }
            return url
        }
        let url = try expandSupervisorTemplate(supervisor.brokerURL, key: "broker_url", environment: environment)
        return url.isEmpty ? nil : url
    }

    /// The expanded `logfile` path, or nil when there is none.
    ///
    /// - Throws: ``ConfigurationError`` `.badValue` when a `%(ENV_X)s` it uses is not set.
    public func logFilePath(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String? {
        guard let logFile = supervisor.logFile else { return nil }
        return try expandSupervisorTemplate(logFile.path, key: "logfile", environment: environment)
    }

    private func expandSupervisorTemplate(_ text: String, key: String, environment: [String: String]) throws(ConfigurationError) -> String {
        let context = ExpansionContext(programName: "", here: here, hostName: SupervisorSettings.localHostName(), environment: environment)
        do {
            return try CommandTemplate(text, allowedNames: CommandTemplate.supervisorNames).expand(context)
        } catch {
            throw ConfigurationError(.badValue, file: file, section: "supervisor", key: key, reason: error.reason)
        }
    }

    /// An absolute path without `.`, `..` and repeated slashes (symbolic links are kept).
    static func normalized(_ path: String) -> String {
        var components: [Substring] = []
        for component in path.split(separator: "/") {
            switch component {
            case ".": continue
            case "..": _ = components.popLast()
            default: components.append(component)
            }
        }
        return "/" + components.joined(separator: "/")
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let directory = path[..<slash]
        return directory.isEmpty ? "/" : String(directory)
    }
}

// MARK: - Interpreting the sections

extension SupervisorConfiguration {
    static let supervisorKeys: Set<String> = [
        "identifier", "broker_url", "http_host", "http_port", "logfile", "logfile_maxbytes", "logfile_backups",
        "reconcile_interval", "lease_seconds", "fence_seconds", "scale_down_window", "backoff_initial", "backoff_max",
        "crashloop_deaths", "crashloop_window", "shutdown_timeout",
    ]

    static let programKeys: Set<String> = [
        "command", "scope", "numprocs", "min_procs", "max_procs", "messages_per_proc", "queue", "autostart",
        "priority", "autorestart", "exitcodes", "startsecs", "startretries", "stopsignal", "stopwaitsecs",
        "environment", "directory",
        "stdout_logfile", "stdout_logfile_maxbytes", "stdout_logfile_backups",
        "stderr_logfile", "stderr_logfile_maxbytes", "stderr_logfile_backups",
        "backoff_initial", "backoff_max", "crashloop_deaths", "crashloop_window",
    ]

    static func parse(_ text: String, file: String, here: String) throws(ConfigurationError) -> SupervisorConfiguration {
        let ini = try INIFile.parse(text, file: file)
        var supervisorSection: INIFile.Section?
        var programSections: [(name: String, section: INIFile.Section)] = []
        for section in ini.sections {
            if section.name == "supervisor" {
                if let earlier = supervisorSection {
                    throw ConfigurationError(
                        .duplicateSection, file: file, line: section.line, section: section.name,
                        reason: "given twice (first on line \(earlier.line))"
                    )
                }
                supervisorSection = section
            } else if section.name.hasPrefix("program:") {
                let name = String(section.name.dropFirst("program:".count))
                guard isProgramName(name) else {
                    throw ConfigurationError(
                        .badValue, file: file, line: section.line, section: section.name,
                        reason: "program name '\(name)' must match ^[A-Za-z0-9_.-]{1,64}$"
                    )
                }
                if let earlier = programSections.first(where: { $0.name == name }) {
                    throw ConfigurationError(
                        .duplicateSection, file: file, line: section.line, section: section.name,
                        reason: "program '\(name)' is defined twice (first on line \(earlier.section.line))"
                    )
                }
                programSections.append((name, section))
            } else {
                throw ConfigurationError(
                    .unknownSection, file: file, line: section.line, section: section.name,
                    reason: "unknown section (expected [supervisor] or [program:NAME])"
                )
            }
        }

        var settings = SupervisorSettings()
        if let supervisorSection {
            settings = try parseSupervisor(ConfigurationSectionReader(file: file, section: supervisorSection, known: supervisorKeys))
        }
        var programs: [ProgramConfiguration] = []
        for (name, section) in programSections {
            let reader = try ConfigurationSectionReader(file: file, section: section, known: programKeys)
            programs.append(try parseProgram(name: name, reader, settings: settings, file: file, here: here))
        }
        return SupervisorConfiguration(file: file, here: here, supervisor: settings, programs: programs)
    }

    static func isProgramName(_ name: String) -> Bool {
        (1...64).contains(name.count) && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "_.-".contains($0)) }
    }

    private static func parseSupervisor(_ reader: ConfigurationSectionReader) throws(ConfigurationError) -> SupervisorSettings {
        var settings = SupervisorSettings()
        if let entry = reader["identifier"] {
            let value = entry.value
            guard (1...128).contains(value.count), !value.contains(where: { $0.isWhitespace || ($0.asciiValue.map { $0 < 32 || $0 == 127 } ?? false) }) else {
                throw reader.error(entry, "expected 1 to 128 characters without spaces, got '\(value)'")
            }
            settings.identifier = value
        }
        if let entry = reader["broker_url"] {
            try reader.validateTemplate(entry, allowedNames: CommandTemplate.supervisorNames)
            settings.brokerURL = entry.value
        }
        if let entry = reader["http_host"] {
            guard !entry.value.isEmpty, !entry.value.contains(where: \.isWhitespace) else {
                throw reader.error(entry, "expected a host name or address, got '\(entry.value)'")
            }
            settings.httpHost = entry.value
        }
        settings.httpPort = try reader.integer("http_port", in: 0...65535) ?? settings.httpPort
        let maxBytes = try reader.size("logfile_maxbytes") ?? 50 * 1024 * 1024
        let backups = try reader.integer("logfile_backups", in: 0...Int.max) ?? 10
        if let entry = reader["logfile"], !entry.value.isEmpty, entry.value.uppercased() != "NONE" {
            try reader.validateTemplate(entry, allowedNames: CommandTemplate.supervisorNames)
            settings.logFile = LogFileSettings(path: entry.value, maxBytes: maxBytes, backups: backups)
        }
        settings.reconcileInterval = try reader.seconds("reconcile_interval", positive: true) ?? settings.reconcileInterval
        settings.leaseDuration = try reader.seconds("lease_seconds", positive: true) ?? settings.leaseDuration
        if let fence = try reader.seconds("fence_seconds", positive: true) {
            guard fence < settings.leaseDuration else {
                throw reader.error(reader["fence_seconds"], "fence_seconds must be shorter than lease_seconds (\(settings.leaseDuration))")
            }
            settings.fenceAfter = fence
        }
        settings.scaleDownWindow = try reader.seconds("scale_down_window") ?? settings.scaleDownWindow
        settings.shutdownTimeout = try reader.seconds("shutdown_timeout") ?? settings.shutdownTimeout
        let policy = try reader.restartPolicy(inheriting: InheritedRestartPolicy(settings))
        settings.backoffInitial = policy.backoffInitial
        settings.backoffMax = policy.backoffMax
        settings.crashLoopDeaths = policy.crashLoopDeaths
        settings.crashLoopWindow = policy.crashLoopWindow
        return settings
    }

    private static func parseProgram(
        name: String, _ reader: ConfigurationSectionReader, settings: SupervisorSettings, file: String, here: String
    ) throws(ConfigurationError) -> ProgramConfiguration {
        guard let commandEntry = reader["command"] else {
            throw ConfigurationError(.missingKey, file: file, line: reader.section.line, section: reader.section.name, key: "command", reason: "every program needs a command")
        }
        var scope = ProgramConfiguration.Scope.global
        if let entry = reader["scope"] {
            guard let value = ProgramConfiguration.Scope(rawValue: entry.value.lowercased()) else {
                throw reader.error(entry, "expected 'global' or 'per-exchange', got '\(entry.value)'")
            }
            scope = value
        }
        var program = ProgramConfiguration(name: name, command: commandEntry.value, scope: scope, here: here, file: file)
        program.line = reader.section.line

        // The command: split into words, every word a valid template.
        let words: [String]
        do {
            words = try CommandTemplate.splitWords(commandEntry.value)
        } catch {
            throw reader.error(commandEntry, error.reason)
        }
        guard !words.isEmpty else { throw reader.error(commandEntry, "the command is empty") }
        for word in words { try reader.validateTemplate(commandEntry, word) }

        // Instances.
        let numprocs = try reader.integer("numprocs", in: 0...Int.max)
        let minProcs = try reader.integer("min_procs", in: 0...Int.max)
        let maxProcs = try reader.integer("max_procs", in: 0...Int.max)
        program.messagesPerProc = try reader.integer("messages_per_proc", in: 1...Int.max) ?? 100
        if let entry = reader["queue"] {
            guard scope == .global else {
                throw reader.error(entry, "per-exchange programs get their queue from the deployment; 'queue' is for global programs")
            }
            guard isQueueName(entry.value) else {
                throw reader.error(entry, "expected a queue name matching ^[A-Za-z0-9_.-]{1,80}$, got '\(entry.value)'")
            }
            program.queue = entry.value
        }
        if let numprocs {
            guard scope == .global, let entry = reader["numprocs"] else {
                throw reader.error(reader["numprocs"], "numprocs is for global programs; per-exchange programs use min_procs and max_procs")
            }
            if minProcs != nil || maxProcs != nil {
                throw reader.error(entry, "give either numprocs or min_procs/max_procs, not both")
            }
            program.minProcs = numprocs
            program.maxProcs = numprocs
        } else {
            let defaultMin = 1
            let defaultMax = scope == .global ? 1 : 4
            switch (minProcs, maxProcs) {
            case (let low?, let high?):
                program.minProcs = low
                program.maxProcs = high
            case (let low?, nil):
                program.minProcs = low
                program.maxProcs = max(defaultMax, low)
            case (nil, let high?):
                program.minProcs = min(defaultMin, high)
                program.maxProcs = high
            case (nil, nil):
                program.minProcs = defaultMin
                program.maxProcs = defaultMax
            }
            if program.minProcs > program.maxProcs {
                throw reader.error(reader["min_procs"], "min_procs (\(program.minProcs)) is greater than max_procs (\(program.maxProcs))")
            }
            if scope == .global, program.minProcs < program.maxProcs, program.queue == nil {
                throw ConfigurationError(
                    .missingKey, file: file, line: reader.section.line, section: reader.section.name, key: "queue",
                    reason: "a global program with min_procs < max_procs scales on a queue; set 'queue' or use numprocs"
                )
            }
        }

        // Starting and stopping.
        if let entry = reader["autostart"] {
            guard scope == .global else {
                throw reader.error(entry, "autostart is for global programs; per-exchange programs start with their deployment")
            }
            program.autostart = try reader.boolean(entry)
        }
        program.priority = try reader.integer("priority", in: Int.min...Int.max) ?? program.priority
        if let entry = reader["autorestart"] {
            switch entry.value.lowercased() {
            case "unexpected": program.autorestart = .unexpected
            default: program.autorestart = try reader.boolean(entry, expected: "true, false or unexpected") ? .always : .never
            }
        }
        if let entry = reader["exitcodes"] {
            var codes: Set<Int32> = []
            for piece in entry.value.split(separator: ",", omittingEmptySubsequences: false) {
                let text = piece.trimmingCharacters(in: .whitespaces)
                guard !text.isEmpty, text.allSatisfy(\.isASCIINumber), text.count <= 3, let code = Int32(text), (0...255).contains(code) else {
                    throw reader.error(entry, "expected a comma-separated list of exit codes from 0 to 255, got '\(entry.value)'")
                }
                codes.insert(code)
            }
            program.exitCodes = codes
        }
        program.startSeconds = try reader.seconds("startsecs") ?? program.startSeconds
        program.startRetries = try reader.integer("startretries", in: 0...Int.max) ?? program.startRetries
        if let entry = reader["stopsignal"] {
            var name = entry.value.uppercased()
            if name.hasPrefix("SIG") { name.removeFirst(3) }
            guard let signal = stopSignals[name] else {
                throw reader.error(entry, "expected one of TERM, HUP, INT, QUIT, KILL, USR1, USR2, got '\(entry.value)'")
            }
            program.stopSignal = signal
        }
        program.stopWait = try reader.seconds("stopwaitsecs") ?? program.stopWait

        // The process environment.
        if let entry = reader["environment"] {
            do {
                program.environment = try ProgramConfiguration.parseEnvironment(entry.value)
            } catch {
                throw reader.error(entry, error.reason)
            }
            for variable in program.environment { try reader.validateTemplate(entry, variable.value) }
        }
        if let entry = reader["directory"], !entry.value.isEmpty {
            try reader.validateTemplate(entry)
            program.directory = entry.value
        }
        program.stdoutLog = try reader.logFile("stdout")
        program.stderrLog = try reader.logFile("stderr")

        // Restart policy, inherited from [supervisor].
        let policy = try reader.restartPolicy(inheriting: InheritedRestartPolicy(settings))
        program.backoffInitial = policy.backoffInitial
        program.backoffMax = policy.backoffMax
        program.crashLoopDeaths = policy.crashLoopDeaths
        program.crashLoopWindow = policy.crashLoopWindow

        // '%(queue)s' would expand to nothing in a global program without a queue.
        if scope == .global, program.queue == nil {
            for entry in reader.section.entries where ["command", "environment", "directory", "stdout_logfile", "stderr_logfile"].contains(entry.key) {
                if entry.value.contains("%(queue)") {
                    throw reader.error(entry, "'%(queue)s' is empty in a global program without 'queue'")
                }
            }
        }
        return program
    }

    static func isQueueName(_ name: String) -> Bool {
        (1...80).contains(name.count) && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "_.-".contains($0)) }
    }

    static let stopSignals: [String: Int32] = [
        "TERM": SIGTERM, "HUP": SIGHUP, "INT": SIGINT, "QUIT": SIGQUIT, "KILL": SIGKILL, "USR1": SIGUSR1, "USR2": SIGUSR2,
    ]
}

/// The restart settings a program inherits from `[supervisor]` unless it overrides them.
struct InheritedRestartPolicy {
    var backoffInitial: Duration
    var backoffMax: Duration
    var crashLoopDeaths: Int
    var crashLoopWindow: Duration

    init(_ settings: SupervisorSettings) {
        backoffInitial = settings.backoffInitial
        backoffMax = settings.backoffMax
        crashLoopDeaths = settings.crashLoopDeaths
        crashLoopWindow = settings.crashLoopWindow
    }
}

/// Reads the values of one section, with errors naming file, line, section and key.
struct ConfigurationSectionReader {
    let file: String
    let section: INIFile.Section
    private let entries: [String: INIFile.Entry]

    /// Rejects keys outside `known`.
    init(file: String, section: INIFile.Section, known: Set<String>) throws(ConfigurationError) {
        self.file = file
        self.section = section
        var entries: [String: INIFile.Entry] = [:]
        for entry in section.entries {
            guard known.contains(entry.key) else {
                throw ConfigurationError(.unknownKey, file: file, line: entry.line, section: section.name, key: entry.key, reason: "unknown key")
            }
            entries[entry.key] = entry
        }
        self.entries = entries
    }

    subscript(key: String) -> INIFile.Entry? { entries[key] }

    func error(_ entry: INIFile.Entry?, _ reason: String) -> ConfigurationError {
        ConfigurationError(.badValue, file: file, line: entry?.line ?? section.line, section: section.name, key: entry?.key, reason: reason)
    }

    func validateTemplate(
        _ entry: INIFile.Entry, _ text: String? = nil, allowedNames: Set<String> = CommandTemplate.programNames
    ) throws(ConfigurationError) {
        do {
            _ = try CommandTemplate(text ?? entry.value, allowedNames: allowedNames)
        } catch {
            throw self.error(entry, error.reason)
        }
    }

    /// An integer in `range`.
    func integer(_ key: String, in range: ClosedRange<Int>) throws(ConfigurationError) -> Int? {
        guard let entry = entries[key] else { return nil }
        let expected: String
        if range == Int.min...Int.max {
            expected = "an integer"
        } else if range.upperBound == Int.max {
            expected = range.lowerBound == 0 ? "a non-negative integer" : "an integer of at least \(range.lowerBound)"
        } else {
            expected = "an integer from \(range.lowerBound) to \(range.upperBound)"
        }
        let digits = entry.value.hasPrefix("-") ? entry.value.dropFirst() : entry.value[...]
        guard !digits.isEmpty, digits.allSatisfy(\.isASCIINumber), let value = Int(entry.value), range.contains(value) else {
            throw error(entry, "expected \(expected), got '\(entry.value)'")
        }
        return value
    }

    /// A number of seconds, decimals allowed (`0.5`); `positive` rejects 0.
    func seconds(_ key: String, positive: Bool = false, minimum: Duration? = nil) throws(ConfigurationError) -> Duration? {
        guard let entry = entries[key] else { return nil }
        guard let value = Self.parseSeconds(entry.value) else {
            throw error(entry, "expected a non-negative number of seconds, got '\(entry.value)'")
        }
        if positive, value == .zero {
            throw error(entry, "expected a positive number of seconds, got '\(entry.value)'")
        }
        if let minimum, value < minimum {
            throw error(entry, "expected at least \(Self.format(minimum)) seconds, got '\(entry.value)'")
        }
        return value
    }

    /// `123`, `1.5`, `.5`, `2.` → a duration; anything else (signs, exponents, words) → nil.
    static func parseSeconds(_ text: String) -> Duration? {
        let parts = text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        let whole = parts[0]
        let fraction = parts.count > 1 ? parts[1] : ""
        guard !(whole.isEmpty && fraction.isEmpty), whole.count <= 15, fraction.count <= 18,
              whole.allSatisfy(\.isASCIINumber), fraction.allSatisfy(\.isASCIINumber) else { return nil }
        let seconds = Int64(whole) ?? 0
        let attoseconds = Int64(fraction + String(repeating: "0", count: 18 - fraction.count)) ?? 0
        return Duration(secondsComponent: seconds, attosecondsComponent: attoseconds)
    }

    static func format(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        guard attoseconds != 0 else { return String(seconds) }
        var fraction = String(attoseconds)
        fraction = String(repeating: "0", count: max(0, 18 - fraction.count)) + fraction
        while fraction.hasSuffix("0") { fraction.removeLast() }
        return "\(seconds).\(fraction)"
    }

    /// supervisord's byte sizes: `1024`, `10KB`, `50MB`, `1GB` (powers of 1024; case-insensitive).
    func size(_ key: String) throws(ConfigurationError) -> Int? {
        guard let entry = entries[key] else { return nil }
        let text = entry.value.uppercased()
        var multiplier = 1
        var digits = Substring(text)
        for (suffix, factor) in [("KB", 1024), ("MB", 1024 * 1024), ("GB", 1024 * 1024 * 1024)] where text.hasSuffix(suffix) {
            multiplier = factor
            digits = text.dropLast(2)
        }
        let (product, overflow) = (Int(digits) ?? 0).multipliedReportingOverflow(by: multiplier)
        guard !digits.isEmpty, digits.allSatisfy(\.isASCIINumber), Int(digits) != nil, !overflow else {
            throw error(entry, "expected a size in bytes (e.g. 1024, 10KB, 50MB, 1GB; 0 = no rotation), got '\(entry.value)'")
        }
        return product
    }

    /// supervisord's booleans: true/yes/on/1, false/no/off/0 (case-insensitive).
    func boolean(_ entry: INIFile.Entry, expected: String = "true or false") throws(ConfigurationError) -> Bool {
        switch entry.value.lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default: throw error(entry, "expected \(expected), got '\(entry.value)'")
        }
    }

    /// `backoff_initial` (≥ 1 s), `backoff_max` (≥ backoff_initial), `crashloop_deaths` (≥ 1),
    /// `crashloop_window` (> 0); absent keys keep the inherited values.
    func restartPolicy(inheriting inherited: InheritedRestartPolicy) throws(ConfigurationError) -> InheritedRestartPolicy {
        var policy = inherited
        policy.backoffInitial = try seconds("backoff_initial", minimum: .seconds(1)) ?? policy.backoffInitial
        policy.backoffMax = try seconds("backoff_max") ?? policy.backoffMax
        if policy.backoffMax < policy.backoffInitial {
            throw error(
                entries["backoff_max"] ?? entries["backoff_initial"],
                "backoff_max (\(Self.format(policy.backoffMax)) s) must be at least backoff_initial (\(Self.format(policy.backoffInitial)) s)"
            )
        }
        policy.crashLoopDeaths = try integer("crashloop_deaths", in: 1...Int.max) ?? policy.crashLoopDeaths
        policy.crashLoopWindow = try seconds("crashloop_window", positive: true) ?? policy.crashLoopWindow
        return policy
    }

    /// `<stream>_logfile`, `<stream>_logfile_maxbytes`, `<stream>_logfile_backups`; nil when the path is empty or `NONE`.
    func logFile(_ stream: String) throws(ConfigurationError) -> LogFileSettings? {
        let maxBytes = try size("\(stream)_logfile_maxbytes") ?? 50 * 1024 * 1024
        let backups = try integer("\(stream)_logfile_backups", in: 0...Int.max) ?? 10
        guard let entry = entries["\(stream)_logfile"], !entry.value.isEmpty, entry.value.uppercased() != "NONE" else { return nil }
        if entry.value.uppercased() == "AUTO" || entry.value.lowercased() == "syslog" {
            throw error(entry, "'\(entry.value)' is not supported; give a path or NONE")
        }
        try validateTemplate(entry)
        return LogFileSettings(path: entry.value, maxBytes: maxBytes, backups: backups)
    }
}

extension Character {
    /// `0`…`9`.
    fileprivate var isASCIINumber: Bool { isASCII && isNumber }
}

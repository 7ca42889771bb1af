import Supervisor
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Helpers

/// The repository's `supervisor.conf`, found from this file's path.
private let shippedConfigurationPath: String = {
    var components = #filePath.split(separator: "/", omittingEmptySubsequences: false)
    components.removeLast(3)  // Tests/SupervisorTests/ConfigurationTests.swift
    return components.joined(separator: "/") + "/supervisor.conf"
}()

private func parse(_ text: String, file: String = "test.conf") throws -> SupervisorConfiguration {
    try SupervisorConfiguration.parse(text, file: file)
}

/// `[program:p]` (line 1), `command = run` (line 2), then `lines` from line 3.
private func programText(_ lines: String..., scope: String? = nil) -> String {
    var text = "[program:p]\ncommand = run\n"
    if let scope { text += "scope = \(scope)\n" }
    return text + lines.map { $0 + "\n" }.joined()
}

/// The one program of `text`.
private func onlyProgram(_ text: String) throws -> ProgramConfiguration {
    let configuration = try parse(text)
    try #require(configuration.programs.count == 1)
    return configuration.programs[0]
}

private func context(
    _ program: ProgramConfiguration, number: Int = 0, queue: String? = nil, exchange: String? = nil,
    deployment: String? = nil, environment: [String: String] = [:]
) -> ExpansionContext {
    program.expansionContext(
        processNumber: number, queue: queue, exchangeID: exchange, deploymentID: deployment, hostName: "host-a",
        environment: environment
    )
}

/// Runs `body` and returns the ``ConfigurationError`` it throws.
private func configurationError(_ body: () throws -> Void) -> ConfigurationError? {
    do {
        try body()
        return nil
    } catch let error as ConfigurationError {
        return error
    } catch {
        return nil
    }
}

// MARK: - The shipped file

@Suite struct ConfigurationTests {
    @Test func shippedFileLoads() throws {
        let configuration = try SupervisorConfiguration.load(path: shippedConfigurationPath)
        #expect(configuration.file == shippedConfigurationPath)
        #expect(configuration.here + "/supervisor.conf" == shippedConfigurationPath)
        #expect(configuration.programs.allSatisfy { $0.here == configuration.here && $0.file == shippedConfigurationPath })
        #expect(configuration.programs.map(\.name) == ["status-update", "dlq", "orchestrator", "s3-copy", "pre-uploader", "uploader", "re-ocr", "search-text"])

        let settings = configuration.supervisor
        #expect(settings == SupervisorSettings())
        #expect(settings.identifier == SupervisorSettings.localHostName())
        #expect(settings.brokerURL.isEmpty)
        #expect(settings.logFile == nil)
        #expect(try configuration.brokerURL(environment: ["EXCHANGER_DATABASE_URL": "sqlite:///tmp/x.db"]) == "sqlite:///tmp/x.db")
        #expect(try configuration.brokerURL(environment: [:]) == nil)

        let statusUpdate = try #require(configuration.program(named: "status-update"))
        #expect(statusUpdate.scope == .global)
        #expect(statusUpdate.minProcs == 1 && statusUpdate.maxProcs == 1)
        #expect(statusUpdate.autostart)
        #expect(statusUpdate.stopWait == .seconds(30))
        #expect(try statusUpdate.argv(context(statusUpdate)) == ["exchanger-status-update"])

        let dlq = try #require(configuration.program(named: "dlq"))
        #expect(try dlq.argv(context(dlq)) == ["exchanger-dlq"])
        #expect(dlq.priority < 500)

        let copy = try #require(configuration.program(named: "s3-copy"))
        #expect(copy.scope == .perExchange)
        #expect(copy.minProcs == 1 && copy.maxProcs == 4 && copy.messagesPerProc == 100)
        #expect(copy.queue == nil)
        #expect(copy.stopWait == .seconds(30))
        #expect(copy.stopSignal == SIGTERM)
        #expect(copy.autorestart == .unexpected)
        #expect(try copy.argv(context(copy, number: 2, queue: "exchange-7-s3-copy")) == ["exchanger-s3-copy", "--queue", "exchange-7-s3-copy"])
        let orchestrator = try #require(configuration.program(named: "orchestrator"))
        #expect(orchestrator.scope == .global)
        #expect(try orchestrator.argv(context(orchestrator)) == ["exchanger-orchestrator"])
        // Above the orchestrator's 20 s shutdown grace, so the step in hand can finish.
        #expect(orchestrator.stopWait > .seconds(20))
        let uploader = try #require(configuration.program(named: "uploader"))
        #expect(uploader.scope == .perExchange)
        #expect(try uploader.argv(context(uploader, queue: "q")) == ["exchanger-uploader", "--queue", "q"])
    }

    /// Every commented-out key and program of the shipped file is valid once uncommented.
    @Test func shippedFileCommentedOutPartsAreValid() throws {
        let text = try #require(shippedText())
        let uncommented = text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> Substring in
            if line.hasPrefix(";["), line.hasSuffix("]") { return line.dropFirst() }
            if line.hasPrefix(";"), let first = line.dropFirst().first, first.isLetter, line.contains(" = ") { return line.dropFirst() }
            return line
        }.joined(separator: "\n")
        #expect(uncommented.contains("\n[program:orchestrator]\n"))
        let configuration = try parse(uncommented, file: "supervisor.conf")
        #expect(configuration.programs.map(\.name) == [
            "status-update", "dlq", "orchestrator", "s3-copy", "pre-uploader", "uploader", "re-ocr", "search-text",
        ])
        #expect(configuration.supervisor.identifier == "worker-host-1")
        #expect(try configuration.brokerURL(environment: ["EXCHANGER_DATABASE_URL": "postgres://db/x"]) == "postgres://db/x")
        for name in ["pre-uploader", "uploader", "re-ocr", "search-text"] {
            let program = try #require(configuration.program(named: name))
            #expect(program.scope == .perExchange)
            #expect(try program.argv(context(program, queue: "q")) == ["exchanger-\(name)", "--queue", "q"])
        }
        let copy = try #require(configuration.program(named: "s3-copy"))
        #expect(copy.environment.map(\.name) == ["EXCHANGER_WORKER_BATCH_SIZE", "EXCHANGER_WORKER_CONCURRENCY"])
        #expect(try copy.stdoutLogPath(context(copy, number: 3, deployment: "d9")) == "/var/log/exchanger/s3-copy-d9-03.log")
    }

    private func shippedText() -> String? {
        guard let file = fopen(shippedConfigurationPath, "r") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = fread(&buffer, 1, buffer.count, file)
            if count <= 0 { break }
            bytes += buffer[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    @Test func hereIsTheNormalizedDirectory() throws {
        let directory = String(shippedConfigurationPath.dropLast("/supervisor.conf".count))
        let configuration = try SupervisorConfiguration.load(path: directory + "/./Tests/..//supervisor.conf")
        #expect(configuration.here == directory)
        #expect(configuration.file == directory + "/./Tests/..//supervisor.conf")
    }

    @Test func unreadableFile() {
        let error = configurationError { _ = try SupervisorConfiguration.load(path: "/nonexistent/dir/supervisor.conf") }
        #expect(error?.code == .unreadable)
        #expect(error?.file == "/nonexistent/dir/supervisor.conf")
        #expect(error?.description == "/nonexistent/dir/supervisor.conf: no such file")
    }

    // MARK: - Defaults and every key

    @Test func emptyFileHasDefaults() throws {
        let configuration = try parse("; nothing here\n\n")
        #expect(configuration.programs.isEmpty)
        #expect(configuration.here == ".")
        let settings = configuration.supervisor
        #expect(settings.identifier == SupervisorSettings.localHostName())
        #expect(!settings.identifier.isEmpty)
        #expect(settings.brokerURL == "")
        #expect(settings.httpHost == "127.0.0.1")
        #expect(settings.httpPort == 9100)
        #expect(settings.logFile == nil)
        #expect(settings.reconcileInterval == .seconds(5))
        #expect(settings.leaseDuration == .seconds(30))
        #expect(settings.scaleDownWindow == .seconds(60))
        #expect(settings.backoffInitial == .seconds(1))
        #expect(settings.backoffMax == .seconds(60))
        #expect(settings.crashLoopDeaths == 5)
        #expect(settings.crashLoopWindow == .seconds(60))
        #expect(settings.shutdownTimeout == .seconds(60))
    }

    @Test func globalProgramDefaults() throws {
        let program = try onlyProgram("[program:worker.1_a-b]\ncommand = run")
        #expect(program.name == "worker.1_a-b")
        #expect(program.scope == .global)
        #expect(program.command == "run")
        #expect(program.minProcs == 1 && program.maxProcs == 1)
        #expect(program.messagesPerProc == 100)
        #expect(program.queue == nil)
        #expect(program.autostart)
        #expect(program.priority == 999)
        #expect(program.autorestart == .unexpected)
        #expect(program.exitCodes == [0])
        #expect(program.startSeconds == .seconds(1))
        #expect(program.startRetries == 3)
        #expect(program.stopSignal == SIGTERM)
        #expect(program.stopWait == .seconds(10))
        #expect(program.environment.isEmpty)
        #expect(program.directory == nil)
        #expect(program.stdoutLog == nil && program.stderrLog == nil)
        #expect(program.backoffInitial == .seconds(1) && program.backoffMax == .seconds(60))
        #expect(program.crashLoopDeaths == 5 && program.crashLoopWindow == .seconds(60))
        #expect(program.line == 1)
        #expect(program.file == "test.conf")
        #expect(program.here == ".")

        var built = ProgramConfiguration(name: "worker.1_a-b", command: "run", here: ".", file: "test.conf")
        built.line = 1
        #expect(built == program)
    }

    @Test func perExchangeProgramDefaults() throws {
        let program = try onlyProgram(programText(scope: "per-exchange"))
        #expect(program.scope == .perExchange)
        #expect(program.minProcs == 1 && program.maxProcs == 4)
        #expect(program.autostart)
        var built = ProgramConfiguration(name: "p", command: "run", scope: .perExchange, here: ".", file: "test.conf")
        built.line = 1
        #expect(built == program)
    }

    @Test func everySupervisorKey() throws {
        let configuration = try parse("""
            [supervisor]
            identifier = sup-1.example:a
            broker_url = postgres://%(ENV_DB_USER)s@db/exchanger
            http_host = 0.0.0.0
            http_port = 0
            logfile = %(here)s/logs/supervisor.log
            logfile_maxbytes = 1GB
            logfile_backups = 0
            reconcile_interval = 0.5
            lease_seconds = 45
            fence_seconds = 20
            scale_down_window = 0
            backoff_initial = 1.5
            backoff_max = 300
            crashloop_deaths = 10
            crashloop_window = 120.25
            shutdown_timeout = 90
            """, file: "/etc/exchanger/supervisor.conf")
        let settings = configuration.supervisor
        #expect(configuration.here == "/etc/exchanger")
        #expect(settings.identifier == "sup-1.example:a")
        #expect(settings.brokerURL == "postgres://%(ENV_DB_USER)s@db/exchanger")
        #expect(try configuration.brokerURL(environment: ["DB_USER": "alice", "EXCHANGER_DATABASE_URL": "ignored"]) == "postgres://alice@db/exchanger")
        let missing = configurationError { _ = try configuration.brokerURL(environment: [:]) }
        #expect(missing?.code == .badValue)
        #expect(missing?.key == "broker_url")
        #expect(missing?.reason.contains("environment variable 'DB_USER' is not set") == true)
        #expect(settings.httpHost == "0.0.0.0")
        #expect(settings.httpPort == 0)
        #expect(settings.logFile == LogFileSettings(path: "%(here)s/logs/supervisor.log", maxBytes: 1024 * 1024 * 1024, backups: 0))
        #expect(try configuration.logFilePath(environment: [:]) == "/etc/exchanger/logs/supervisor.log")
        #expect(settings.reconcileInterval == .milliseconds(500))
        #expect(settings.leaseDuration == .seconds(45))
        #expect(settings.effectiveFenceAfter == .seconds(20))
        #expect(SupervisorSettings().effectiveFenceAfter == .seconds(15), "half the default 30 s lease")
        #expect(settings.scaleDownWindow == .zero)
        #expect(settings.backoffInitial == .milliseconds(1500))
        #expect(settings.backoffMax == .seconds(300))
        #expect(settings.crashLoopDeaths == 10)
        #expect(settings.crashLoopWindow == .milliseconds(120_250))
        #expect(settings.shutdownTimeout == .seconds(90))
    }

    @Test func emptyOrNoneLogFileIsNone() throws {
        #expect(try parse("[supervisor]\nlogfile =\nlogfile_maxbytes = 1KB").supervisor.logFile == nil)
        #expect(try parse("[supervisor]\nlogfile = NONE").supervisor.logFile == nil)
        #expect(try parse("[supervisor]\nlogfile = /var/log/s.log").supervisor.logFile == LogFileSettings(path: "/var/log/s.log"))
        let program = try onlyProgram(programText("stdout_logfile = none", "stderr_logfile ="))
        #expect(program.stdoutLog == nil && program.stderrLog == nil)
        #expect(try program.stdoutLogPath(context(program)) == nil)
        #expect(try program.stderrLogPath(context(program)) == nil)
    }

    @Test func everyProgramKey() throws {
        let configuration = try parse("""
            [supervisor]
            backoff_initial = 2
            crashloop_deaths = 7

            [program:worker]
            command = /opt/bin/worker --name "%(program_name)s #%(process_num)d" --queue=%(queue)s
            scope = global
            min_procs = 2
            max_procs = 6
            messages_per_proc = 250
            queue = work.queue-1
            autostart = false
            priority = -5
            autorestart = true
            exitcodes = 0, 2 ,75
            startsecs = 0
            startretries = 0
            stopsignal = SIGINT
            stopwaitsecs = 2.5
            environment = A="1,2",B=two, C = 'x y'
            directory = %(here)s/work
            stdout_logfile = /logs/%(program_name)s-%(process_num)02d.out
            stdout_logfile_maxbytes = 10KB
            stdout_logfile_backups = 3
            stderr_logfile = /logs/%(program_name)s.err
            stderr_logfile_maxbytes = 0
            stderr_logfile_backups = 1
            backoff_initial = 1
            backoff_max = 30
            crashloop_deaths = 3
            crashloop_window = 15
            """, file: "conf/sup.conf")
        let program = try #require(configuration.program(named: "worker"))
        #expect(program.line == 5)
        #expect(program.here == "conf")
        #expect(program.scope == .global)
        #expect(program.minProcs == 2 && program.maxProcs == 6)
        #expect(program.messagesPerProc == 250)
        #expect(program.queue == "work.queue-1")
        #expect(!program.autostart)
        #expect(program.priority == -5)
        #expect(program.autorestart == .always)
        #expect(program.exitCodes == [0, 2, 75])
        #expect(program.startSeconds == .zero)
        #expect(program.startRetries == 0)
        #expect(program.stopSignal == SIGINT)
        #expect(program.stopWait == .milliseconds(2500))
        #expect(program.environment == [
            EnvironmentVariable(name: "A", value: "1,2"),
            EnvironmentVariable(name: "B", value: "two"),
            EnvironmentVariable(name: "C", value: "x y"),
        ])
        #expect(program.directory == "%(here)s/work")
        #expect(program.stdoutLog == LogFileSettings(path: "/logs/%(program_name)s-%(process_num)02d.out", maxBytes: 10 * 1024, backups: 3))
        #expect(program.stderrLog == LogFileSettings(path: "/logs/%(program_name)s.err", maxBytes: 0, backups: 1))
        #expect(program.backoffInitial == .seconds(1))
        #expect(program.backoffMax == .seconds(30))
        #expect(program.crashLoopDeaths == 3)
        #expect(program.crashLoopWindow == .seconds(15))

        let instance = context(program, number: 4)
        #expect(instance.queue == "work.queue-1")
        #expect(try program.argv(instance) == ["/opt/bin/worker", "--name", "worker #4", "--queue=work.queue-1"])
        #expect(try program.expandedDirectory(instance) == "conf/work")
        #expect(try program.stdoutLogPath(instance) == "/logs/worker-04.out")
        #expect(try program.stderrLogPath(instance) == "/logs/worker.err")
        let environment = try program.expandedEnvironment(instance)
        #expect(environment.map(\.0) == ["A", "B", "C"])
        #expect(environment.map(\.1) == ["1,2", "two", "x y"])
    }

    @Test func programsInheritRestartPolicyFromSupervisor() throws {
        let configuration = try parse("""
            [program:a]
            command = a
            [program:b]
            command = b
            backoff_max = 5
            crashloop_window = 9
            [supervisor]
            backoff_initial = 2
            backoff_max = 20
            crashloop_deaths = 8
            crashloop_window = 30
            """)
        let a = try #require(configuration.program(named: "a"))
        #expect(a.backoffInitial == .seconds(2) && a.backoffMax == .seconds(20))
        #expect(a.crashLoopDeaths == 8 && a.crashLoopWindow == .seconds(30))
        let b = try #require(configuration.program(named: "b"))
        #expect(b.backoffInitial == .seconds(2) && b.backoffMax == .seconds(5))
        #expect(b.crashLoopDeaths == 8 && b.crashLoopWindow == .seconds(9))
    }

    struct InstanceCase: Sendable, CustomTestStringConvertible {
        var lines: [String]
        var minProcs: Int
        var maxProcs: Int
        var testDescription: String { lines.joined(separator: "; ") }
    }

    @Test(arguments: [
        InstanceCase(lines: ["numprocs = 3"], minProcs: 3, maxProcs: 3),
        InstanceCase(lines: ["numprocs = 0"], minProcs: 0, maxProcs: 0),
        InstanceCase(lines: ["queue = q", "min_procs = 1", "max_procs = 5"], minProcs: 1, maxProcs: 5),
        InstanceCase(lines: ["min_procs = 2"], minProcs: 2, maxProcs: 2),
        InstanceCase(lines: ["max_procs = 1"], minProcs: 1, maxProcs: 1),
        InstanceCase(lines: ["queue = q", "max_procs = 3"], minProcs: 1, maxProcs: 3),
        InstanceCase(lines: ["scope = per-exchange", "min_procs = 2"], minProcs: 2, maxProcs: 4),
        InstanceCase(lines: ["scope = per-exchange", "min_procs = 6"], minProcs: 6, maxProcs: 6),
        InstanceCase(lines: ["scope = per-exchange", "max_procs = 2"], minProcs: 1, maxProcs: 2),
        InstanceCase(lines: ["scope = per-exchange", "max_procs = 0"], minProcs: 0, maxProcs: 0),
        InstanceCase(lines: ["scope = per-exchange", "min_procs = 0", "max_procs = 10"], minProcs: 0, maxProcs: 10),
    ])
    func instanceCounts(_ instance: InstanceCase) throws {
        let text = "[program:p]\ncommand = run\n" + instance.lines.joined(separator: "\n")
        let program = try onlyProgram(text)
        #expect(program.minProcs == instance.minProcs)
        #expect(program.maxProcs == instance.maxProcs)
    }

    @Test(arguments: [
        ("TERM", SIGTERM), ("SIGTERM", SIGTERM), ("term", SIGTERM), ("HUP", SIGHUP), ("SIGINT", SIGINT), ("QUIT", SIGQUIT),
        ("KILL", SIGKILL), ("usr1", SIGUSR1), ("SigUsr2", SIGUSR2),
    ])
    func stopSignals(_ written: String, _ number: Int32) throws {
        #expect(try onlyProgram(programText("stopsignal = \(written)")).stopSignal == number)
    }

    @Test(arguments: [
        ("0", 0), ("1024", 1024), ("10KB", 10_240), ("10kb", 10_240), ("50MB", 52_428_800), ("2GB", 2_147_483_648),
    ])
    func sizes(_ written: String, _ bytes: Int) throws {
        let program = try onlyProgram(programText("stdout_logfile = /x", "stdout_logfile_maxbytes = \(written)"))
        #expect(program.stdoutLog?.maxBytes == bytes)
    }

    @Test(arguments: [
        ("0", Duration.zero), ("7", .seconds(7)), ("0.5", .milliseconds(500)), (".25", .milliseconds(250)), ("3.", .seconds(3)),
        ("1.000000001", .seconds(1) + .nanoseconds(1)), ("86400", .seconds(86400)),
    ])
    func seconds(_ written: String, _ duration: Duration) throws {
        #expect(try onlyProgram(programText("stopwaitsecs = \(written)")).stopWait == duration)
    }

    @Test(arguments: [
        ("true", ProgramConfiguration.AutoRestart.always), ("yes", .always), ("on", .always), ("1", .always),
        ("false", .never), ("No", .never), ("off", .never), ("0", .never), ("unexpected", .unexpected), ("UNEXPECTED", .unexpected),
    ])
    func autorestartValues(_ written: String, _ value: ProgramConfiguration.AutoRestart) throws {
        #expect(try onlyProgram(programText("autorestart = \(written)")).autorestart == value)
    }

    // MARK: - Errors

    struct BadInput: Sendable, CustomTestStringConvertible {
        var text: String
        var code: ConfigurationError.Code
        var line: Int?
        var section: String?
        var key: String?
        /// A part of the reason.
        var reason: String

        init(_ text: String, _ code: ConfigurationError.Code, line: Int?, section: String? = nil, key: String? = nil, _ reason: String) {
            self.text = text
            self.code = code
            self.line = line
            self.section = section
            self.key = key
            self.reason = reason
        }

        /// A bad `key = value` on line 3 of program `p`.
        static func program(_ line: String, key: String, _ reason: String, scope: String? = nil) -> BadInput {
            var text = "[program:p]\ncommand = run\n"
            var number = 3
            if let scope {
                text = "[program:p]\nscope = \(scope)\ncommand = run\n"
                number = 4
            }
            return BadInput(text + line + "\n", .badValue, line: number, section: "program:p", key: key, reason)
        }

        /// A bad `key = value` on line 2 of `[supervisor]`.
        static func supervisor(_ line: String, key: String, _ reason: String) -> BadInput {
            BadInput("[supervisor]\n" + line + "\n[program:p]\ncommand = run\n", .badValue, line: 2, section: "supervisor", key: key, reason)
        }

        var testDescription: String { "\(code): \(text.split(separator: "\n").joined(separator: " | "))" }
    }

    static let badInputs: [BadInput] = [
        // Syntax.
        BadInput("command = run\n[program:p]", .syntax, line: 1, key: "command", "key outside of a section"),
        BadInput("[supervisor\n", .syntax, line: 1, "does not end with ']'"),
        BadInput("; comment\n[]\n", .syntax, line: 2, "empty section name"),
        BadInput("  indented = 1\n", .syntax, line: 1, "does not continue a value"),
        BadInput("[program:p]\n  command = run\n", .syntax, line: 2, section: "program:p", "does not continue a value"),
        BadInput("[program:p]\ncommand = run\njust some words\n", .syntax, line: 3, section: "program:p", "expected '[section]' or 'key = value'"),
        BadInput("[program:p]\n= run\n", .syntax, line: 2, section: "program:p", "missing key"),
        // Sections.
        BadInput("[programs:p]\ncommand = run\n", .unknownSection, line: 1, section: "programs:p", "unknown section"),
        BadInput("[group:g]\n", .unknownSection, line: 1, section: "group:g", "unknown section"),
        BadInput("[program:bad name]\ncommand = run\n", .badValue, line: 1, section: "program:bad name", "must match"),
        BadInput("[program:]\ncommand = run\n", .badValue, line: 1, section: "program:", "must match"),
        BadInput("[program:\(String(repeating: "a", count: 65))]\ncommand = run\n", .badValue, line: 1, section: "program:\(String(repeating: "a", count: 65))", "must match"),
        BadInput("[supervisor]\n[program:p]\ncommand = run\n\n[supervisor]\n", .duplicateSection, line: 5, section: "supervisor", "first on line 1"),
        BadInput("[program:p]\ncommand = run\n[program:p]\ncommand = other\n", .duplicateSection, line: 3, section: "program:p", "defined twice (first on line 1)"),
        // Keys.
        BadInput("[supervisor]\nnodaemon = true\n", .unknownKey, line: 2, section: "supervisor", key: "nodaemon", "unknown key"),
        BadInput("[program:p]\ncommand = run\nprocess_name = x\n", .unknownKey, line: 3, section: "program:p", key: "process_name", "unknown key"),
        BadInput("[program:p]\ncommand = run\nstopwaitsecs = 1\nstopwaitsecs = 2\n", .duplicateKey, line: 4, section: "program:p", key: "stopwaitsecs", "first on line 3"),
        BadInput("[program:p]\ncommand = run\nCommand = other\n", .duplicateKey, line: 3, section: "program:p", key: "command", "given twice"),
        BadInput("[program:p]\nscope = global\n", .missingKey, line: 1, section: "program:p", key: "command", "needs a command"),
        BadInput("[program:p]\ncommand = run\nmin_procs = 1\nmax_procs = 2\n", .missingKey, line: 1, section: "program:p", key: "queue", "scales on a queue"),
        // [supervisor] values.
        .supervisor("identifier = two words", key: "identifier", "without spaces"),
        .supervisor("broker_url = postgres://%(program_name)s@db", key: "broker_url", "unknown expansion '%(program_name)'"),
        .supervisor("http_host =", key: "http_host", "expected a host name"),
        .supervisor("http_port = 70000", key: "http_port", "expected an integer from 0 to 65535, got '70000'"),
        .supervisor("http_port = http", key: "http_port", "expected an integer from 0 to 65535"),
        .supervisor("logfile = /x/%(process_num)d.log", key: "logfile", "unknown expansion"),
        .supervisor("logfile_maxbytes = 50XB", key: "logfile_maxbytes", "expected a size in bytes"),
        .supervisor("logfile_maxbytes = -1", key: "logfile_maxbytes", "expected a size in bytes"),
        .supervisor("logfile_backups = -1", key: "logfile_backups", "expected a non-negative integer, got '-1'"),
        .supervisor("reconcile_interval = 0", key: "reconcile_interval", "expected a positive number of seconds"),
        .supervisor("lease_seconds = abc", key: "lease_seconds", "expected a non-negative number of seconds, got 'abc'"),
        .supervisor("fence_seconds = 30", key: "fence_seconds", "fence_seconds must be shorter than lease_seconds"),
        .supervisor("scale_down_window = -5", key: "scale_down_window", "non-negative number of seconds"),
        .supervisor("shutdown_timeout = 1e3", key: "shutdown_timeout", "non-negative number of seconds"),
        .supervisor("backoff_initial = 0.5", key: "backoff_initial", "expected at least 1 seconds, got '0.5'"),
        .supervisor("backoff_max = 0.5", key: "backoff_max", "must be at least backoff_initial"),
        .supervisor("crashloop_deaths = 0", key: "crashloop_deaths", "expected an integer of at least 1, got '0'"),
        .supervisor("crashloop_window = 0", key: "crashloop_window", "positive number of seconds"),
        // [program:p] values.
        .program("stopwaitsecs = soon", key: "stopwaitsecs", "expected a non-negative number of seconds, got 'soon'"),
        .program("stopwaitsecs = nan", key: "stopwaitsecs", "non-negative number of seconds"),
        .program("startsecs = -1", key: "startsecs", "non-negative number of seconds"),
        .program("startsecs = .", key: "startsecs", "non-negative number of seconds"),
        .program("startretries = many", key: "startretries", "non-negative integer"),
        .program("scope = local", key: "scope", "expected 'global' or 'per-exchange', got 'local'"),
        .program("numprocs = 2", key: "numprocs", "numprocs is for global programs", scope: "per-exchange"),
        .program("numprocs = -1", key: "numprocs", "non-negative integer"),
        BadInput("[program:p]\ncommand = run\nmin_procs = 1\nnumprocs = 2\n", .badValue, line: 4, section: "program:p", key: "numprocs", "not both"),
        BadInput("[program:p]\ncommand = run\nscope = per-exchange\nmin_procs = 5\nmax_procs = 2\n", .badValue, line: 4, section: "program:p", key: "min_procs", "min_procs (5) is greater than max_procs (2)"),
        .program("max_procs = 1.5", key: "max_procs", "non-negative integer"),
        .program("messages_per_proc = 0", key: "messages_per_proc", "at least 1"),
        .program("queue = q", key: "queue", "get their queue from the deployment", scope: "per-exchange"),
        .program("queue = bad queue", key: "queue", "expected a queue name"),
        .program("autostart = true", key: "autostart", "autostart is for global programs", scope: "per-exchange"),
        .program("autostart = maybe", key: "autostart", "expected true or false, got 'maybe'"),
        .program("priority = high", key: "priority", "expected an integer, got 'high'"),
        .program("autorestart = sometimes", key: "autorestart", "expected true, false or unexpected"),
        .program("exitcodes = 0,256", key: "exitcodes", "exit codes from 0 to 255"),
        .program("exitcodes =", key: "exitcodes", "exit codes from 0 to 255"),
        .program("exitcodes = 0,,1", key: "exitcodes", "exit codes from 0 to 255"),
        .program("exitcodes = -1", key: "exitcodes", "exit codes from 0 to 255"),
        .program("stopsignal = STOP", key: "stopsignal", "expected one of TERM, HUP, INT, QUIT, KILL, USR1, USR2, got 'STOP'"),
        .program("stopsignal = 15", key: "stopsignal", "expected one of TERM"),
        .program("environment = A", key: "environment", "expected KEY=value, got 'A'"),
        .program("environment = 1A=x", key: "environment", "is not a variable name"),
        .program("environment = A-B=x", key: "environment", "is not a variable name"),
        .program("environment = A=1,A=2", key: "environment", "variable 'A' is given twice"),
        .program("environment = A='1", key: "environment", "unterminated quote"),
        .program("environment = A=%(nope)s", key: "environment", "unknown expansion '%(nope)'"),
        .program("directory = /srv/%(exchange)s", key: "directory", "unknown expansion"),
        .program("stdout_logfile = AUTO", key: "stdout_logfile", "not supported"),
        .program("stdout_logfile = /x/%(pid)s.log", key: "stdout_logfile", "unknown expansion '%(pid)'"),
        .program("stderr_logfile = /x/%(process_num)s-%(nope)d.log", key: "stderr_logfile", "unknown expansion"),
        .program("stdout_logfile_maxbytes = big", key: "stdout_logfile_maxbytes", "expected a size in bytes"),
        .program("stderr_logfile_backups = x", key: "stderr_logfile_backups", "non-negative integer"),
        .program("backoff_initial = 0", key: "backoff_initial", "expected at least 1 seconds"),
        .program("backoff_max = 0.9", key: "backoff_max", "must be at least backoff_initial (1 s)"),
        .program("crashloop_deaths = 0", key: "crashloop_deaths", "at least 1"),
        .program("crashloop_window = never", key: "crashloop_window", "non-negative number of seconds"),
        // Commands.
        BadInput("[program:p]\ncommand =\n", .badValue, line: 2, section: "program:p", key: "command", "the command is empty"),
        BadInput("[program:p]\ncommand = '' x 'y\n", .badValue, line: 2, section: "program:p", key: "command", "unterminated single quote"),
        BadInput("[program:p]\ncommand = run \"a\n", .badValue, line: 2, section: "program:p", key: "command", "unterminated double quote"),
        BadInput("[program:p]\ncommand = run \\\n", .badValue, line: 2, section: "program:p", key: "command", "ends with a backslash"),
        BadInput("[program:p]\ncommand = run %(nope)s\n", .badValue, line: 2, section: "program:p", key: "command", "unknown expansion '%(nope)'"),
        BadInput("[program:p]\ncommand = date +%Y\n", .badValue, line: 2, section: "program:p", key: "command", "'%' must be followed by"),
        BadInput("[program:p]\ncommand = run 100%\n", .badValue, line: 2, section: "program:p", key: "command", "'%' at the end"),
        BadInput("[program:p]\ncommand = run %(program_name\n", .badValue, line: 2, section: "program:p", key: "command", "unterminated '%('"),
        BadInput("[program:p]\ncommand = run %(program_name)x\n", .badValue, line: 2, section: "program:p", key: "command", "must be followed by 's' or 'd'"),
        BadInput("[program:p]\ncommand = run %(program_name)d\n", .badValue, line: 2, section: "program:p", key: "command", "is not a number"),
        BadInput("[program:p]\ncommand = run %(ENV_PORT)d\n", .badValue, line: 2, section: "program:p", key: "command", "is not a number"),
        BadInput("[program:p]\ncommand = run %(program_name)05s\n", .badValue, line: 2, section: "program:p", key: "command", "zero padding"),
        BadInput("[program:p]\ncommand = run %(ENV_)s\n", .badValue, line: 2, section: "program:p", key: "command", "unknown expansion"),
        BadInput("[program:p]\ncommand = run %(ENV_1X)s\n", .badValue, line: 2, section: "program:p", key: "command", "unknown expansion"),
        BadInput("[program:p]\ncommand = run --queue %(queue)s\n", .badValue, line: 2, section: "program:p", key: "command", "'%(queue)s' is empty in a global program"),
    ]

    @Test(arguments: badInputs)
    func badInput(_ input: BadInput) throws {
        let error = try #require(configurationError { _ = try parse(input.text) })
        #expect(error.code == input.code)
        #expect(error.file == "test.conf")
        #expect(error.line == input.line)
        #expect(error.section == input.section)
        #expect(error.key == input.key)
        #expect(error.reason.contains(input.reason), "reason: \(error.reason)")
        var prefix = "test.conf"
        if let line = input.line { prefix += ":\(line)" }
        prefix += ":"
        if let section = input.section { prefix += " [\(section)]" }
        if let key = input.key { prefix += " key '\(key)'" }
        #expect(error.description.hasPrefix(prefix), "description: \(error.description)")
        #expect(error.description.hasSuffix(error.reason))
    }

    @Test func errorDescriptionReadsLikeACompilerMessage() throws {
        var text = "[supervisor]\n" + String(repeating: "\n", count: 8) + "[program:s3-copy]\ncommand = exchanger-s3-copy\n"
        text += "stopwaitsecs = soon\n"
        let error = try #require(configurationError { _ = try parse(text, file: "supervisor.conf") })
        #expect(error.description == "supervisor.conf:12: [program:s3-copy] key 'stopwaitsecs': expected a non-negative number of seconds, got 'soon'")
        #expect(ConfigurationError(.syntax, file: "f.conf", line: 3, reason: "bad").description == "f.conf:3: bad")
        #expect(ConfigurationError(.unreadable, file: "f.conf", reason: "no such file").description == "f.conf: no such file")
        #expect(ConfigurationError.Code.duplicateKey.description == "duplicateKey")
    }

    // MARK: - Syntax details

    @Test func continuationLines() throws {
        let program = try onlyProgram("""
            [program:p]
            command = run
                --verbose   ; inline comment on a continuation
              --queue=x
            environment =
                A=1

                ; a comment inside the value
                B="two words"
            \tC=3,D=4
            priority = 5
            """)
        #expect(program.command == "run\n--verbose\n--queue=x")
        #expect(try program.argv(context(program)) == ["run", "--verbose", "--queue=x"])
        #expect(program.environment == [
            EnvironmentVariable(name: "A", value: "1"), EnvironmentVariable(name: "B", value: "two words"),
            EnvironmentVariable(name: "C", value: "3"), EnvironmentVariable(name: "D", value: "4"),
        ])
        #expect(program.priority == 5)
    }

    @Test func backslashNewlineJoinsCommandLines() throws {
        let program = try onlyProgram("[program:p]\ncommand = run \\\n    --flag\n")
        #expect(try program.argv(context(program)) == ["run", "--flag"])
    }

    @Test func comments() throws {
        let configuration = try parse("""
            ; a comment
            # another comment
            [supervisor] ; comment after a header
            identifier = a;b        ; only ' ;' starts a comment
            http_host = host#1
                ; an indented comment line after a value

            [program:p]
            command = run --x=a;b\t;tab before the semicolon
            directory: /srv/dir ; "key: value" works too
            """)
        #expect(configuration.supervisor.identifier == "a;b")
        #expect(configuration.supervisor.httpHost == "host#1")
        let program = try #require(configuration.program(named: "p"))
        #expect(program.command == "run --x=a;b")
        #expect(program.directory == "/srv/dir")
    }

    @Test func inlineHashIsPartOfTheValue() throws {
        let error = configurationError { _ = try parse("[supervisor]\nhttp_host = host # not a comment\n") }
        // The value keeps "# not a comment", which contains spaces: rejected as a host.
        #expect(error?.code == .badValue)
        #expect(error?.reason.contains("got 'host # not a comment'") == true)
        let program = try onlyProgram("[program:p]\ncommand = run #1 ;comment\n")
        #expect(try program.argv(context(program)) == ["run", "#1"])
    }

    @Test func crlfLineEndings() throws {
        let configuration = try parse("[supervisor]\r\nhttp_port = 9200\r\n\r\n[program:p]\r\ncommand = run a\r\nenvironment =\r\n  A=1\r\n  B=2\r\n")
        #expect(configuration.supervisor.httpPort == 9200)
        let program = try #require(configuration.program(named: "p"))
        #expect(try program.argv(context(program)) == ["run", "a"])
        #expect(program.environment.map(\.name) == ["A", "B"])
        #expect(program.line == 4)
    }

    @Test func keysAreCaseInsensitiveAndSpacesAreTrimmed() throws {
        let program = try onlyProgram("[ program:p ]\n  \nCOMMAND   =   run   \nStopWaitSecs:3\n")
        #expect(program.name == "p")
        #expect(program.command == "run")
        #expect(program.stopWait == .seconds(3))
    }

    // MARK: - Commands and environment

    @Test(arguments: [
        ("run", ["run"]),
        ("  run   a\tb  ", ["run", "a", "b"]),
        ("run 'a b' \"c d\"", ["run", "a b", "c d"]),
        ("run 'it''s' x''y", ["run", "its", "xy"]),
        ("run ''", ["run", ""]),
        ("run \"\"", ["run", ""]),
        ("run 'single \\ \"keeps\" all'", ["run", "single \\ \"keeps\" all"]),
        ("run \"dq \\\"quoted\\\" back\\\\slash \\n kept\"", ["run", "dq \"quoted\" back\\slash \\n kept"]),
        ("run a\\ b \\'c\\\" \\\\", ["run", "a b", "'c\"", "\\"]),
        ("run --opt=\"a b\"c", ["run", "--opt=a bc"]),
        ("run * $HOME `x` | y > z &", ["run", "*", "$HOME", "`x`", "|", "y", ">", "z", "&"]),
        ("/usr/bin/env python3 -c 'print(1)'", ["/usr/bin/env", "python3", "-c", "print(1)"]),
    ])
    func commandQuoting(_ command: String, _ argv: [String]) throws {
        let program = try onlyProgram("[program:p]\ncommand = \(command)\n")
        #expect(try program.argv(context(program)) == argv)
    }

    @Test func expansionsStayOneArgument() throws {
        let program = try onlyProgram("[program:p]\ncommand = run %(ENV_GREETING)s '%(ENV_GREETING)s' x%(ENV_EMPTY)sy %(ENV_EMPTY)s\n")
        let argv = try program.argv(context(program, environment: ["GREETING": "hello world; rm -rf /", "EMPTY": ""]))
        #expect(argv == ["run", "hello world; rm -rf /", "hello world; rm -rf /", "xy", ""])
    }

    @Test(arguments: [
        ("A=1", [("A", "1")]),
        ("A=1,B=2", [("A", "1"), ("B", "2")]),
        ("A=1, B=2,", [("A", "1"), ("B", "2")]),
        ("KEY=\"val\",KEY2=val2", [("KEY", "val"), ("KEY2", "val2")]),
        ("A=\"x, y\",B='p,q'", [("A", "x, y"), ("B", "p,q")]),
        ("A=\"  padded  \"", [("A", "  padded  ")]),
        ("A=\"say \\\"hi\\\"\"", [("A", "say \"hi\"")]),
        ("A='it\"s'", [("A", "it\"s")]),
        ("A=", [("A", "")]),
        ("A=a=b", [("A", "a=b")]),
        ("URL=postgres://u:p@h:5432/db?sslmode=require", [("URL", "postgres://u:p@h:5432/db?sslmode=require")]),
        ("_X1=a b c", [("_X1", "a b c")]),
        ("A=1\nB=2\n\nC=3", [("A", "1"), ("B", "2"), ("C", "3")]),
    ])
    func environmentSyntax(_ written: String, _ pairs: [(String, String)]) throws {
        let value = written.replacingNewlines(with: "\n    ")
        let program = try onlyProgram("[program:p]\ncommand = run\nenvironment = \(value)\n")
        #expect(program.environment == pairs.map { EnvironmentVariable(name: $0.0, value: $0.1) })
    }

    // MARK: - Expansions

    @Test func expansionNames() throws {
        let program = try onlyProgram("""
            [program:w]
            command = run %(program_name)s %(process_num)d %(queue)s %(exchange_id)s %(deployment_id)s %(here)s %(host_node_name)s %(ENV_HOME)s
            scope = per-exchange
            """)
        let instance = context(program, number: 3, queue: "q1", exchange: "ex-9", deployment: "dep-2", environment: ["HOME": "/home/x"])
        #expect(try program.argv(instance) == ["run", "w", "3", "q1", "ex-9", "dep-2", ".", "host-a", "/home/x"])
    }

    @Test func globalProgramsHaveEmptyDeploymentExpansions() throws {
        let program = try onlyProgram("[program:g]\ncommand = run [%(exchange_id)s] [%(deployment_id)s] %(queue)s\nqueue = dlq\n")
        #expect(try program.argv(context(program)) == ["run", "[]", "[]", "dlq"])
    }

    @Test(arguments: [
        ("%(process_num)d", 7, "7"),
        ("%(process_num)02d", 7, "07"),
        ("%(process_num)02d", 123, "123"),
        ("%(process_num)03d", 0, "000"),
        ("%(process_num)3d", 5, "  5"),
        ("n%(process_num)0d", 5, "n5"),
        ("%(program_name)6s|", 0, "     p|"),
        ("100%%", 0, "100%"),
        ("%%(process_num)d", 0, "%(process_num)d"),
        ("%%%(process_num)d%%", 4, "%4%"),
    ])
    func expansionFormats(_ template: String, _ number: Int, _ expected: String) throws {
        let program = try onlyProgram("[program:p]\ncommand = run\nstdout_logfile = \(template)\n")
        #expect(try program.stdoutLogPath(context(program, number: number)) == expected)
        let inCommand = try onlyProgram("[program:p]\ncommand = run \(template)\n")
        #expect(try inCommand.argv(context(inCommand, number: number)) == ["run", expected])
    }

    @Test func missingEnvironmentVariableFailsAtExpansion() throws {
        let program = try onlyProgram("""
            [program:p]
            command = run --token %(ENV_API_TOKEN)s
            environment = TOKEN=%(ENV_API_TOKEN)s
            directory = %(ENV_WORKDIR)s
            stderr_logfile = %(ENV_LOGDIR)s/p.err
            """)
        let full = context(program, environment: ["API_TOKEN": "secret", "WORKDIR": "/w", "LOGDIR": "/l"])
        #expect(try program.argv(full) == ["run", "--token", "secret"])
        #expect(try program.expandedEnvironment(full).map(\.1) == ["secret"])
        #expect(try program.expandedDirectory(full) == "/w")
        #expect(try program.stderrLogPath(full) == "/l/p.err")

        let empty = context(program)
        for (key, body) in [
            ("command", { _ = try program.argv(empty) }),
            ("environment", { _ = try program.expandedEnvironment(empty) }),
            ("directory", { _ = try program.expandedDirectory(empty) }),
            ("stderr_logfile", { _ = try program.stderrLogPath(empty) }),
        ] as [(String, () throws -> Void)] {
            let error = try #require(configurationError(body))
            #expect(error.code == .badValue)
            #expect(error.key == key)
            #expect(error.line == 1)
            #expect(error.section == "program:p")
            #expect(error.reason.contains("environment variable '"))
            #expect(error.reason.contains("' is not set"))
            #expect(error.description.hasPrefix("test.conf:1: [program:p] key '\(key)': environment variable '"))
        }
    }

    @Test(arguments: ["command = run %(bogus)s", "environment = A=%(bogus)s", "directory = /%(bogus)s", "stdout_logfile = /%(bogus)s", "stderr_logfile = /%(bogus)s"])
    func unknownExpansionRejectedAtLoad(_ line: String) throws {
        let text = line.hasPrefix("command") ? "[program:p]\n\(line)\n" : "[program:p]\ncommand = run\n\(line)\n"
        let error = try #require(configurationError { _ = try parse(text) })
        #expect(error.code == .badValue)
        #expect(error.key == String(line.prefix(while: { $0 != " " })))
        #expect(error.reason.contains("unknown expansion '%(bogus)'"))
    }

    @Test func argvRejectsAnEmptyOrBrokenCommandBuiltInCode() throws {
        let empty = ProgramConfiguration(name: "x", command: "   ")
        let error = try #require(configurationError { _ = try empty.argv(context(empty)) })
        #expect(error.key == "command")
        #expect(error.line == nil)
        let broken = ProgramConfiguration(name: "x", command: "run 'a")
        #expect(configurationError { _ = try broken.argv(context(broken)) }?.reason.contains("unterminated") == true)
    }

    // MARK: - Restarts

    @Test(arguments: [
        (ProgramConfiguration.AutoRestart.always, [Int32(0)], Int32(0), true),
        (.always, [0], 1, true),
        (.always, [0], 128 + SIGKILL, true),
        (.never, [0], 0, false),
        (.never, [0], 1, false),
        (.never, [0], 128 + SIGSEGV, false),
        (.unexpected, [0], 0, false),
        (.unexpected, [0], 1, true),
        (.unexpected, [0, 2], 2, false),
        (.unexpected, [2], 0, true),
        (.unexpected, [0], 128 + SIGTERM, true),
        (.unexpected, [0, 128 + SIGTERM], 128 + SIGTERM, false),
    ])
    func shouldRestart(_ autorestart: ProgramConfiguration.AutoRestart, _ exitCodes: [Int32], _ status: Int32, _ expected: Bool) {
        var program = ProgramConfiguration(name: "p", command: "run")
        program.autorestart = autorestart
        program.exitCodes = Set(exitCodes)
        #expect(program.shouldRestart(exitStatus: status) == expected)
    }

    // MARK: - Changes

    static let baseText = """
        [supervisor]
        http_port = 9100

        [program:a]
        command = run-a
        numprocs = 2

        [program:b]
        command = run-b --queue %(queue)s
        scope = per-exchange

        [program:c]
        command = run-c
        """

    @Test func identicalConfigurationsHaveNoChanges() throws {
        let old = try parse(Self.baseText)
        let new = try parse("; a new first line shifts every line\n" + Self.baseText)
        #expect(new.programs.map(\.line) != old.programs.map(\.line))
        let changes = new.changes(from: old)
        #expect(changes.isEmpty)
        #expect(changes == ConfigurationChanges())
    }

    @Test func addedRemovedAndSupervisorSettings() throws {
        let old = try parse(Self.baseText)
        let text = Self.baseText.replacingOccurrences("[program:a]\ncommand = run-a\nnumprocs = 2\n", with: "")
            .replacingOccurrences("http_port = 9100", with: "http_port = 9101")
            + "\n[program:z]\ncommand = z\n[program:d]\ncommand = d\n"
        let new = try parse(text)
        let changes = new.changes(from: old)
        #expect(changes.added == ["z", "d"])
        #expect(changes.removed == ["a"])
        #expect(changes.restart.isEmpty && changes.rescale.isEmpty)
        #expect(changes.supervisorSettingsChanged)
        #expect(!changes.isEmpty)
        #expect(old.changes(from: new) == ConfigurationChanges(added: ["a"], removed: ["z", "d"], supervisorSettingsChanged: true))
    }

    /// Edits to a program that need its processes restarted.
    static let restartEdits: [(String, @Sendable (inout ProgramConfiguration) -> Void)] = [
        ("command", { $0.command = "run-b --queue %(queue)s --verbose" }),
        ("environment", { $0.environment = [EnvironmentVariable(name: "A", value: "1")] }),
        ("directory", { $0.directory = "/srv" }),
        ("scope", { $0.scope = .global }),
        ("autorestart", { $0.autorestart = .always }),
        ("exitcodes", { $0.exitCodes = [0, 1] }),
        ("startsecs", { $0.startSeconds = .seconds(5) }),
        ("startretries", { $0.startRetries = 9 }),
        ("stopsignal", { $0.stopSignal = SIGINT }),
        ("stopwaitsecs", { $0.stopWait = .seconds(99) }),
        ("stdout_logfile", { $0.stdoutLog = LogFileSettings(path: "/x.log") }),
        ("stderr_logfile_backups", { $0.stderrLog = LogFileSettings(path: "/y.log"); $0.stderrLog?.backups = 1 }),
        ("backoff_initial", { $0.backoffInitial = .seconds(2) }),
        ("backoff_max", { $0.backoffMax = .seconds(10) }),
        ("crashloop_deaths", { $0.crashLoopDeaths = 1 }),
        ("crashloop_window", { $0.crashLoopWindow = .seconds(1) }),
        ("here", { $0.here = "/elsewhere" }),
        ("command and counts", { $0.command = "other"; $0.maxProcs = 9 }),
    ]

    @Test(arguments: restartEdits)
    func restartCategory(_ name: String, _ edit: @Sendable (inout ProgramConfiguration) -> Void) throws {
        let old = try parse(Self.baseText)
        var new = old
        let index = try #require(new.programs.firstIndex { $0.name == "b" })
        edit(&new.programs[index])
        let changes = new.changes(from: old)
        #expect(changes == ConfigurationChanges(restart: ["b"]), "\(name)")
    }

    /// Edits to a program whose processes keep running.
    static let rescaleEdits: [(String, @Sendable (inout ProgramConfiguration) -> Void)] = [
        ("numprocs", { $0.minProcs = 3; $0.maxProcs = 3 }),
        ("min_procs", { $0.minProcs = 0 }),
        ("max_procs", { $0.maxProcs = 8 }),
        ("messages_per_proc", { $0.messagesPerProc = 10 }),
        ("queue", { $0.queue = "work" }),
        ("autostart", { $0.autostart = false }),
        ("priority", { $0.priority = 1 }),
    ]

    @Test(arguments: rescaleEdits)
    func rescaleCategory(_ name: String, _ edit: @Sendable (inout ProgramConfiguration) -> Void) throws {
        let old = try parse(Self.baseText)
        var new = old
        let index = try #require(new.programs.firstIndex { $0.name == "a" })
        edit(&new.programs[index])
        #expect(new.changes(from: old) == ConfigurationChanges(rescale: ["a"]), "\(name)")
    }

    @Test func changesFromEditedText() throws {
        let old = try parse(Self.baseText)
        let new = try parse("""
            [supervisor]
            http_port = 9100

            [program:c]
            command = run-c
            stopwaitsecs = 30

            [program:b]
            command = run-b --queue %(queue)s
            scope = per-exchange
            max_procs = 8

            [program:a]
            command = run-a
            numprocs = 3

            [program:e]
            command = run-e
            """)
        let changes = new.changes(from: old)
        #expect(changes.added == ["e"])
        #expect(changes.removed == [])
        #expect(changes.restart == ["c"])
        #expect(changes.rescale == ["b", "a"])
        #expect(!changes.supervisorSettingsChanged)
    }

    @Test func inheritedRestartPolicyChangeRestartsPrograms() throws {
        let old = try parse(Self.baseText)
        let new = try parse(Self.baseText.replacingOccurrences("http_port = 9100", with: "http_port = 9100\nbackoff_max = 30"))
        let changes = new.changes(from: old)
        #expect(changes.supervisorSettingsChanged)
        #expect(changes.restart == ["a", "b", "c"])
    }
}

extension String {
    fileprivate func replacingNewlines(with replacement: String) -> String {
        split(separator: "\n", omittingEmptySubsequences: false).joined(separator: replacement)
    }

    fileprivate func replacingOccurrences(_ target: String, with replacement: String) -> String {
        var result = ""
        var rest = self[...]
        while let range = rest.firstRange(of: target) {
            result += rest[..<range.lowerBound]
            result += replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}

import ArgumentParser
import ExchangeFleet
import Foundation

/// `exchanger ctl`: supervisorctl's verbs against a running supervisor's HTTP port.
struct CtlCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctl",
        abstract: "Control a running supervisor's global programs: status, start, stop, restart, tail.",
        discussion: """
            Talks to the supervisor's http_port (--url, else EXCHANGER_SUPERVISOR_URL, else \
            http://127.0.0.1:9100). A supervisor with EXCHANGER_SUPERVISOR_CONTROL_TOKEN set wants \
            that token (--token-file, else EXCHANGER_SUPERVISOR_CONTROL_TOKEN or the file \
            EXCHANGER_SUPERVISOR_CONTROL_TOKEN_FILE names); one without a token obeys only clients on \
            its own host (loopback). Per-exchange programs follow their exchanges: use exchanger scale.
            """,
        subcommands: [Status.self, Start.self, Stop.self, Restart.self, Tail.self])

    struct Connection: ParsableArguments {
        @Option(help: "The supervisor's HTTP address.") var url: String?
        @Option(help: "A file whose first line is the control token.") var tokenFile: String?

        func client() throws -> SupervisorClient {
            let environment = ProcessInfo.processInfo.environment
            let base = url ?? environment["EXCHANGER_SUPERVISOR_URL"].flatMap { $0.isEmpty ? nil : $0 } ?? "http://127.0.0.1:9100"
            var token = environment["EXCHANGER_SUPERVISOR_CONTROL_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
            if let path = tokenFile ?? (token == nil ? environment["EXCHANGER_SUPERVISOR_CONTROL_TOKEN_FILE"].flatMap { $0.isEmpty ? nil : $0 } : nil) {
                guard let text = try? String(contentsOfFile: path, encoding: .utf8),
                    let line = text.split(separator: "\n").first?.trimmingCharacters(in: .whitespaces), !line.isEmpty
                else { throw ValidationError("cannot read a token from \(path)") }
                token = line
            }
            return SupervisorClient(baseURL: base, token: token)
        }
    }

    /// Prints processes as supervisorctl does: name, state, pid, restarts.
    static func print(_ processes: [SupervisorClient.Process]) {
        for process in processes {
            let deployment = process.deploymentID.flatMap { $0.isEmpty ? nil : "[\($0)]" } ?? ""
            let label = "\(process.program)\(deployment):\(process.instance)"
            let name = label.padding(toLength: max(24, label.count), withPad: " ", startingAt: 0)
            let state = process.state.padding(toLength: 10, withPad: " ", startingAt: 0)
            var detail = process.pid.map { "pid \($0)" } ?? (process.lastExitStatus.map { "exit status \($0)" } ?? "")
            if process.restarts > 0 { detail += (detail.isEmpty ? "" : ", ") + "restarts \(process.restarts)" }
            Swift.print("\(name) \(state) \(detail)")
        }
    }

    static func run(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let error as FleetError {
            FileHandle.standardError.write(Data("exchanger ctl: \(error.message)\n".utf8))
            throw ExitCode(1)
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The state of every process, or of one program's (exit 1 when one of them is FAILED or EXITED).")
        @OptionGroup var connection: Connection
        @Argument(help: "A program of supervisor.conf.") var program: String?

        func run() async throws {
            try await CtlCommand.run {
                let client = try connection.client()
                let processes: [SupervisorClient.Process]
                if let program { processes = try await client.status(program: program) } else { processes = try await client.status() }
                CtlCommand.print(processes)
                if let program, processes.isEmpty { FileHandle.standardError.write(Data("exchanger ctl: \(program) has no process\n".utf8)) }
                if processes.contains(where: { ["FAILED", "EXITED"].contains($0.state) }) { throw ExitCode(1) }
            }
        }
    }

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start a global program's processes (again).")
        @OptionGroup var connection: Connection
        @Argument(help: "A global program of supervisor.conf.") var program: String
        func run() async throws { try await CtlCommand.control("start", program, connection) }
    }

    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop a global program's processes; they stay stopped (also through reloads) until start or restart.")
        @OptionGroup var connection: Connection
        @Argument(help: "A global program of supervisor.conf.") var program: String
        func run() async throws { try await CtlCommand.control("stop", program, connection) }
    }

    struct Restart: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop each of a global program's processes and start it again.")
        @OptionGroup var connection: Connection
        @Argument(help: "A global program of supervisor.conf.") var program: String
        func run() async throws { try await CtlCommand.control("restart", program, connection) }
    }

    /// Sends `verb`, then waits (up to 60 s) until the processes settle, and prints them.
    static func control(_ verb: String, _ program: String, _ connection: Connection) async throws {
        try await run {
            let client = try connection.client()
            var processes = try await client.control(verb, program: program)
            let deadline = ContinuousClock.now + .seconds(60)
            let settled: ([SupervisorClient.Process]) -> Bool = { processes in
                switch verb {
                case "stop": processes.allSatisfy { ["STOPPED", "EXITED"].contains($0.state) }
                default: processes.allSatisfy { !["STOPPING", "STOPPED", "STARTING"].contains($0.state) }
                }
            }
            while !settled(processes), ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(200))
                processes = try await client.status(program: program)
            }
            CtlCommand.print(processes)
            if !settled(processes) || processes.contains(where: { $0.state == "FAILED" }) { throw ExitCode(1) }
        }
    }

    struct Tail: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A global program's recent output (its JSON log lines); -f follows it.",
            discussion: "The supervisor keeps the last EXCHANGER_SUPERVISOR_TAIL_BYTES (64 KiB) of each program.")
        @OptionGroup var connection: Connection
        @Flag(name: .customShort("f"), help: "Follow: print new output as it comes, until interrupted.") var follow = false
        @Option(help: "Bytes of recent output to start with.") var bytes: Int = 1600
        @Option(help: "Seconds between two polls with -f.") var interval: Double = 0.5
        @Argument(help: "A program of supervisor.conf.") var program: String

        func run() async throws {
            try await CtlCommand.run {
                let client = try connection.client()
                var log = try await client.log(program: program, from: nil, last: max(0, bytes))
                FileHandle.standardOutput.write(Data(log.text.utf8))
                guard follow else { return }
                while true {
                    try await Task.sleep(for: .milliseconds(Int64(max(0.05, interval) * 1000)))
                    let next = try await client.log(program: program, from: log.end, last: 0)
                    if next.skipped { FileHandle.standardError.write(Data("exchanger ctl: \(next.start - log.end) bytes of output were no longer kept\n".utf8)) }
                    FileHandle.standardOutput.write(Data(next.text.utf8))
                    log = next
                }
            }
        }
    }
}

import ArgumentParser
import ConcurrencySupport
import Foundation
import ProcessSupport
import Supervisor

/// `exchanger logs`: filters (and follows) the JSON log stream the supervisor writes.
struct LogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs",
        abstract: "Filter and follow the supervisor's JSON log lines (a log file or standard input).",
        discussion: """
            Reads one JSON object per line, as exchanger-supervisor writes them to its stdout and log files, and \
            prints the lines every given condition holds for. Lines that are not JSON objects pass only when no \
            field condition (--job, --program, --case, --level) is set. With --follow the file is read as it \
            grows, across rotation (a new file at the path is read from its start) and truncation, until \
            SIGINT or SIGTERM.

            Examples:
              exchanger logs --file supervisor.log --job JOB --level warning
              exchanger-supervisor | exchanger logs --program s3-copy --format text
              exchanger logs --file supervisor.log -n 100 -f --grep "copied"
            """)

    @Option(help: ArgumentHelp("The log file to read ('-' or none: standard input).", valueName: "path"))
    var file: String?

    @Option(help: "Only lines of this job (field jobId).")
    var job: String?

    @Option(help: "Only lines of this program (field program or child_program; s3-copy matches exchanger-s3-copy).")
    var program: String?

    @Option(name: .customLong("case"), help: ArgumentHelp("Only lines of this case (field caseId).", valueName: "id"))
    var caseID: String?

    @Option(name: .customLong("document"), help: ArgumentHelp("Only lines of this destination document (field documentId).", valueName: "id"))
    var documentID: String?

    @Option(help: "Only lines of at least this level: trace, debug, info, notice, warning, error, critical.")
    var level: String?

    @Option(help: "Only lines whose msg contains this text (the whole line for non-JSON lines).")
    var grep: String?

    @Option(name: [.customShort("n"), .customLong("lines")], help: "Print only the last N matching lines of the existing content.")
    var lines: Int?

    @Flag(name: [.customShort("f"), .long], help: "Keep reading as the file grows, across rotation and truncation, until SIGINT/SIGTERM.")
    var follow = false

    @Option(help: "Seconds between checks for new content with --follow.")
    var pollInterval: Double = 0.2

    @Option(help: "Output: json (each line as it is) or text (time level program[instance] pid: msg key=value…).")
    var format: String = "json"

    func validate() throws {
        if let level, LogLevel(name: level) == nil {
            throw ValidationError("unknown level \(level): use trace, debug, info, notice, warning, error or critical")
        }
        if LogOutputFormat(rawValue: format) == nil { throw ValidationError("unknown format \(format): use json or text") }
        if let lines, lines < 0 { throw ValidationError("--lines must not be negative") }
        guard pollInterval > 0, pollInterval <= 3600 else { throw ValidationError("--poll-interval must be between 0 and 3600 seconds") }
    }

    func run() async throws {
        let filter = LogFilter(
            job: job, program: program, caseID: caseID, documentID: documentID, minimumLevel: level.flatMap(LogLevel.init(name:)), grep: grep)
        let options = LogTail.Options(
            filter: filter, lines: lines, follow: follow, pollInterval: .milliseconds(Int64((pollInterval * 1000).rounded())),
            format: LogOutputFormat(rawValue: format) ?? .json)
        let tail = try LogTail(path: file, options: options)
        // Subscribing before reading: a SIGTERM that comes early still ends the command cleanly.
        let signals = ProcessSignals.events()
        let listener = Task {
            for await signal in signals where signal == SIGINT || signal == SIGTERM {
                tail.stop()
                return
            }
        }
        defer { listener.cancel() }
        try await runBlocking(name: "exchanger-logs") { try tail.run() }
    }
}

import ArgumentParser
import DocumentEngine
import ExchangeFleet
import ExchangerLogging
import Foundation
import Logging
import ObjectStorage
import ProcessSupport
#if canImport(Glibc)
import Glibc
#endif

/// `exchanger run [--demo | REQUEST.json]`: one exchange on this machine, start to finish, with
/// real processes: the fleet under a supervisor, the request over the orchestrator's API, live
/// progress, exact verification, a summary, and a non-zero exit on any failure.
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run one exchange on this machine, start to finish, and verify it (exchanger run --demo needs no server).",
        discussion: """
            Without EXCHANGER_DATABASE_URL, EXCHANGER_CASE_DATABASE_URL and EXCHANGER_STORAGE_URL everything lives in \
            the workspace: a SQLite broker, SQLite case databases, a local object store and the local document engine. \
            Set them to run the same against PostgreSQL and S3. The fleet's JSON logs go to WORKSPACE/logs/fleet.log. \
            Exit status: 0 when the exchange FINISHED and verified exact; 1 otherwise; 130 when interrupted.
            """)

    @Argument(help: "A JSON exchange request (the body of POST /exchanges); not with --demo.")
    var request: String?

    @Flag(help: "Seed a synthetic source case in the workspace and exchange all of its documents.")
    var demo = false

    @Option(help: "Documents of the demo case.")
    var documents = 100

    @Flag(help: "With --demo: put annotations of all seven kinds on the documents and exchange them through the annotation path (pre-uploader, uploader, re-OCR, search-text).")
    var annotations = false

    @Option(help: "Demo source case id.")
    var sourceCase: Int64 = 1001

    @Option(help: "Demo destination case id.")
    var destinationCase: Int64 = 1002

    @Option(help: "Demo batch id.")
    var batch: Int64 = 1

    @Option(help: "Workspace directory (kept). Default: a new temporary directory, removed after a successful run unless --keep.")
    var workspace: String?

    @Flag(help: "Keep the temporary workspace after a successful run.")
    var keep = false

    @Option(help: "Seconds the exchange may take.")
    var timeout: Double = 1800

    @Option(help: "Most workers per stage.")
    var maxProcs = 2

    @Flag(help: "With --demo: leave out the documents an earlier exchange in this workspace delivered (the request's skipExchanged).")
    var skipExchanged = false

    @Flag(help: "Skip the exact verification of the result.")
    var noVerify = false

    @Flag(help: "Print the fleet's JSON log lines on standard error as well.")
    var verbose = false

    @Flag(help: "Print the result as one JSON line instead of the summary.")
    var json = false

    func validate() throws {
        if demo == (request != nil) { throw ValidationError("give either --demo or a request file") }
        if demo && !(1...1_000_000).contains(documents) { throw ValidationError("--documents must be 1…1000000") }
        if annotations && !demo { throw ValidationError("--annotations goes with --demo (a request file says requiresAnnotations itself)") }
        if skipExchanged && !demo { throw ValidationError("--skip-exchanged goes with --demo (a request file says skipExchanged itself)") }
        if timeout <= 0 { throw ValidationError("--timeout must be positive") }
        if !(1...64).contains(maxProcs) { throw ValidationError("--max-procs must be 1…64") }
    }

    func run() async throws {
        ProcessSignals.install([SIGINT, SIGTERM])
        signal(SIGPIPE, SIG_IGN)
        JSONLogHandler.bootstrapOnce(program: "exchanger", stream: .standardError)
        var logger = Logger(label: "exchanger.run")
        logger.logLevel = verbose ? .info : .warning
        let environment = ProcessInfo.processInfo.environment
        let temporary = workspace == nil
        let directory = workspace ?? (NSTemporaryDirectory() + "/exchanger-run-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        let space: FleetWorkspace
        do {
            space = try FleetWorkspace(directory: directory, environment: environment)
        } catch {
            throw Self.fail("\(error)")
        }
        if let missing = missingPrerequisite(space: space, environment: environment) { throw Self.fail(missing) }
        if let refused = await refusingStore(space) { throw Self.fail(refused) }
        let out = Output(interactive: isatty(STDOUT_FILENO) == 1 && !json)
        out.say("workspace  \(space.directory)")
        for location in FleetWorkspace.Location.allCases {
            let value: String
            switch location {
            case .broker: value = space.brokerURL
            case .caseDatabases: value = space.caseDatabaseURL
            case .storage: value = space.storageURL
            case .documentEngine: value = space.documentEngineURL
            }
            let origin = space.embedded.contains(location) ? "workspace" : "environment"
            out.say("  \(location.rawValue.padding(toLength: 15, withPad: " ", startingAt: 0)) \(FleetWorkspace.redacted(value))  (\(origin))")
        }

        let command = self
        let work = Task { try await command.perform(space: space, out: out, logger: logger) }
        let signals = ProcessSignals.events()
        let interrupt = Task {
            for await _ in signals {
                work.cancel()
                return true
            }
            return false
        }
        let outcome = await work.result
        interrupt.cancel()
        switch outcome {
        case .success(let result):
            report(result, out: out)
            if result.succeeded {
                if temporary && !keep { try? FileManager.default.removeItem(atPath: space.directory) }
                return
            }
            out.say("the workspace is kept for inspection: \(space.directory) (logs: \(space.fleetLogPath))")
            throw ExitCode(1)
        case .failure(let error):
            if work.isCancelled {
                FileHandle.standardError.write(Data("\ninterrupted; the fleet was stopped. Workspace: \(space.directory)\n".utf8))
                throw ExitCode(130)
            }
            FileHandle.standardError.write(Data("exchanger run: \(error)\nworkspace kept: \(space.directory) (logs: \(space.fleetLogPath))\n".utf8))
            throw ExitCode(1)
        }
    }

    /// What this run needs and this machine lacks, as one line naming the fix; checked before
    /// anything is seeded or started. Branding annotations in on the local engine needs qpdf and
    /// poppler-utils; verifying branded-in redactions needs poppler-utils on any engine.
    func missingPrerequisite(space: FleetWorkspace, environment: [String: String]) -> String? {
        var brandsIn = demo && annotations
        var redactsIn = demo && annotations
        if !demo, let path = request, let data = FileManager.default.contents(atPath: path),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any], object["requiresAnnotations"] as? Bool == true
        {
            let kinds = ["redactionsAs", "highlightsAs", "notesAs", "stickersAs", "batesAs", "confidentialityCodesAs"]
            brandsIn = kinds.contains { object[$0] as? String == "brand_in" }
            redactsIn = object["redactionsAs"] as? String == "brand_in"
        }
        do {
            if brandsIn { try DocumentEngines.checkBrandIn(url: space.documentEngineURL, environment: environment) }
            if redactsIn && !noVerify { _ = try PopplerReader(settings: try DocumentEngines.localSettings(environment: environment)) }
            return nil
        } catch {
            return "cannot start: \(error.message)"
        }
    }

    /// An object store given by the environment (not the workspace's own) that is missing or
    /// refuses access, as one line naming what to check; nil when it lets us in or cannot be
    /// reached right now (the workers' retries cover an outage).
    func refusingStore(_ space: FleetWorkspace) async -> String? {
        guard !space.embedded.contains(.storage) else { return nil }
        do {
            let store = try await ObjectStorage.open(space.storageURL, environment: space.storageEnvironment)
            defer { Task { try? await store.shutdown() } }
            try await store.probe()
            return nil
        } catch let error as ObjectStorageError where !error.isTransient {
            return "cannot start: object storage \(space.storageURL): \(error.message); check EXCHANGER_STORAGE_URL and, for s3://, the AWS_* credentials, region and endpoint"
        } catch {
            return nil
        }
    }

    /// Seeds the demo case or reads the request, then runs the exchange.
    private func perform(space: FleetWorkspace, out: Output, logger: Logger) async throws -> LocalExchangeRun.Result {
        let requestJSON: String
        if demo {
            out.say("seeding    source case \(sourceCase) with \(documents) documents …")
            let (demoCase, reused) = try await DemoCase.prepare(
                workspace: space, documents: documents, sourceCaseID: sourceCase, destinationCaseID: destinationCase, batchID: batch,
                annotations: annotations, logger: logger)
            out.say(reused ? "           reusing the case seeded earlier in this workspace" : "           \(demoCase.rows) rows, \(demoCase.objects) files")
            requestJSON = demoCase.requestJSON(batchID: batch, requiresAnnotations: annotations, skipExchanged: skipExchanged)
        } else {
            guard let path = request, let data = FileManager.default.contents(atPath: path) else {
                throw FleetError(.invalidRequest, "cannot read the request file \(request ?? "")")
            }
            requestJSON = String(decoding: data, as: UTF8.self)
        }
        var options = LocalExchangeRun.Options()
        options.timeout = .milliseconds(Int64(timeout * 1000))
        options.verify = !noVerify
        options.maxProcs = maxProcs
        options.maxDocumentIDs = max(10_000, documents)
        out.say("starting   supervisor, orchestrator and workers …")
        let progress = LockedProgress(ExchangeProgress(interactive: out.interactive))
        let lineHandler: (@Sendable (String) -> Void)? =
            verbose ? { @Sendable line in FileHandle.standardError.write(Data((line + "\n").utf8)) } : nil
        return try await LocalExchangeRun(workspace: space, options: options, logger: logger).run(
            requestJSON: requestJSON,
            progress: { status, elapsed in
                if let text = progress.render(status, elapsed: elapsed) { out.write(text) }
            },
            lineHandler: lineHandler)
    }

    private func report(_ result: LocalExchangeRun.Result, out: Output) {
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            if let data = try? encoder.encode(result) { FileHandle.standardOutput.write(data + Data("\n".utf8)) }
            return
        }
        out.say("")
        out.say("exchange   \(result.jobId)  \(result.state)  in \(String(format: "%.2f", result.exchangeSeconds)) s (fleet start \(String(format: "%.2f", result.startSeconds)) s)")
        if let error = result.error { out.say("error      \(error)") }
        let skipped = result.skipped > 0 ? ", \(result.skipped) skipped (delivered by an earlier exchange)" : ""
        out.say("documents  \(result.documents.map(String.init) ?? "?") total, \(result.copied) copied, \(result.notFound) not found, \(result.failed) failed\(skipped)")
        if let left = result.leftBehind, !(left.failed.isEmpty && left.notFound.isEmpty) {
            func list(_ ids: [Int64]) -> String { ids.prefix(20).map(String.init).joined(separator: ", ") + (ids.count > 20 ? ", …" : "") }
            out.say("left       destination documents whose rows stay without their files:"
                + (left.failed.isEmpty ? "" : " failed \(list(left.failed))") + (left.notFound.isEmpty ? "" : " not found \(list(left.notFound))")
                + (left.truncated ? " (lists cut; see GET /exchanges/\(result.jobId))" : ""))
        }
        if let verification = result.verification {
            for line in VerificationReport.lines(verification) { out.say(line) }
        } else if result.state == "FINISHED" {
            out.say("verified   skipped")
        }
    }

    static func fail(_ message: String) -> ExitCode {
        FileHandle.standardError.write(Data("exchanger run: \(message)\n".utf8))
        return ExitCode(1)
    }

    /// Writes lines to standard output.
    struct Output: Sendable {
        let interactive: Bool
        func say(_ line: String) { write(line + "\n") }
        func write(_ text: String) { FileHandle.standardOutput.write(Data(text.utf8)) }
    }
}

/// An ``ExchangeProgress`` shared with the polling task.
final class LockedProgress: @unchecked Sendable {
    private let lock = NSLock()
    private var progress: ExchangeProgress

    init(_ progress: ExchangeProgress) { self.progress = progress }

    func render(_ status: ExchangeStatus, elapsed: Duration) -> String? {
        lock.lock()
        defer { lock.unlock() }
        return progress.render(status, elapsed: elapsed)
    }
}

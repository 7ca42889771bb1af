import ArgumentParser
import ExchangeFleet
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// How the client commands reach the orchestrator.
struct OrchestratorClientOptions: ParsableArguments {
    @Option(help: "The orchestrator's API (default: EXCHANGER_ORCHESTRATOR_URL, else http://127.0.0.1:8080).")
    var url: String?

    @Option(help: "Bearer token file (default: EXCHANGER_API_TOKEN, else the file named by EXCHANGER_API_TOKEN_FILE).")
    var tokenFile: String?

    func client() throws -> OrchestratorClient {
        let environment = ProcessInfo.processInfo.environment
        let base = url ?? environment["EXCHANGER_ORCHESTRATOR_URL"].flatMap { $0.isEmpty ? nil : $0 } ?? "http://127.0.0.1:8080"
        var token = environment["EXCHANGER_API_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        if let file = tokenFile ?? (token == nil ? environment["EXCHANGER_API_TOKEN_FILE"].flatMap { $0.isEmpty ? nil : $0 } : nil) {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw ValidationError("cannot read the token file \(file)")
            }
            token = text.split(whereSeparator: \.isNewline).first.map { $0.trimmingCharacters(in: .whitespaces) }
        }
        var client = OrchestratorClient(baseURL: base, token: token)
        do {
            if let window = try OrchestratorClient.retryWindow(environment: environment) { client.retryWindow = window }
        } catch let error as FleetError {
            throw ValidationError(error.message)
        }
        return client
    }

    /// Runs `body`; a failure is one line on standard error and exit status 1.
    static func reportingErrors(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let error as FleetError {
            FileHandle.standardError.write(Data("exchanger: \(error.message) [\(error.code)]\n".utf8))
            throw ExitCode(1)
        }
    }
}

/// Watches an exchange until it ends; exit 0 for FINISHED, 1 otherwise.
func watchExchange(_ client: OrchestratorClient, jobID: String, timeout: Double) async throws {
    var progress = ExchangeProgress(interactive: isatty(STDOUT_FILENO) == 1)
    let clock = ContinuousClock()
    let started = clock.now
    let final = try await client.watch(jobID, timeout: .milliseconds(Int64(timeout * 1000))) { status in
        if let text = progress.render(status, elapsed: clock.now - started) { FileHandle.standardOutput.write(Data(text.utf8)) }
    }
    let documents = final.documents
    print("\(final.jobId) \(final.state): \(documents.total.map(String.init) ?? "?") documents, \(documents.copied) copied, \(documents.notFound) not found, \(documents.failed) failed" + (final.error.map { "; \($0)" } ?? ""))
    if final.state != "FINISHED" { throw ExitCode(1) }
}

/// `exchanger submit REQUEST.json`: submits an exchange to a running orchestrator.
struct SubmitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "submit", abstract: "Submit an exchange request (a JSON file, or - for standard input) to a running orchestrator.")

    @OptionGroup var connection: OrchestratorClientOptions
    @Argument(help: "The request file (the body of POST /exchanges), or - for standard input.") var request: String
    @Option(help: "Idempotency-Key header: a retried submission with the same key returns the same exchange.") var idempotencyKey: String?
    @Flag(help: "Watch the exchange until it ends (exit 1 unless FINISHED).") var watch = false
    @Option(help: "Seconds --watch waits.") var timeout: Double = 3600

    func run() async throws {
        try await OrchestratorClientOptions.reportingErrors {
            let data = request == "-" ? FileHandle.standardInput.readDataToEndOfFile() : FileManager.default.contents(atPath: request)
            guard let data else { throw ValidationError("cannot read \(request)") }
            let client = try connection.client()
            let submitted = try await client.submit(String(decoding: data, as: UTF8.self), idempotencyKey: idempotencyKey)
            print(#"{"created":\#(submitted.created),"jobId":"\#(submitted.jobId)","state":"\#(submitted.state)"}"#)
            if watch { try await watchExchange(client, jobID: submitted.jobId, timeout: timeout) }
        }
    }
}

/// `exchanger retry JOB_ID`: a follow-up exchange for the documents an ended exchange left behind.
struct RetryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry",
        abstract: "Retry the documents an ended exchange left behind (failed or not found) as a new exchange.",
        discussion: """
            The retry has the exchange's request with its left-behind documents as the selection. \
            Rows the first exchange copied keep their destination ids, so no row is copied twice; \
            documents another exchange delivered since are left out. Retrying the same exchange \
            again while the same documents are left behind returns the same retry ("created": false); \
            to go on after a retry that ended with failures, retry the retry.
            """)

    @OptionGroup var connection: OrchestratorClientOptions
    @Argument(help: "The ended exchange's job id.") var jobID: String
    @Flag(help: "Watch the retry until it ends (exit 1 unless FINISHED).") var watch = false
    @Option(help: "Seconds --watch waits.") var timeout: Double = 3600

    func run() async throws {
        try await OrchestratorClientOptions.reportingErrors {
            let client = try connection.client()
            let retried = try await client.retry(jobID)
            print(#"{"created":\#(retried.created),"documents":\#(retried.documents),"jobId":"\#(retried.jobId)","retryOf":"\#(retried.retryOf)","state":"\#(retried.state)"}"#)
            if watch { try await watchExchange(client, jobID: retried.jobId, timeout: timeout) }
        }
    }
}

/// `exchanger status [JOB_ID]`: one exchange as JSON, or the list.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show an exchange (JSON), or list exchanges when no job id is given.")

    @OptionGroup var connection: OrchestratorClientOptions
    @Argument(help: "The exchange's job id.") var jobID: String?
    @Option(help: "List only exchanges in this state.") var state: String?
    @Option(name: .customLong("case"), help: "List only exchanges of this source or destination case.") var caseID: Int64?
    @Option(help: "Most exchanges listed.") var limit: Int?

    func run() async throws {
        try await OrchestratorClientOptions.reportingErrors {
            let client = try connection.client()
            if let jobID {
                print(try await client.rawStatus(jobID).trimmingCharacters(in: .whitespacesAndNewlines))
            } else {
                print(try await client.list(state: state, caseID: caseID, limit: limit).trimmingCharacters(in: .whitespacesAndNewlines))
            }
        }
    }
}

/// `exchanger watch JOB_ID`: live progress until the exchange ends.
struct WatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch", abstract: "Show an exchange's progress until it ends (exit 0 when FINISHED, else 1).")

    @OptionGroup var connection: OrchestratorClientOptions
    @Argument(help: "The exchange's job id.") var jobID: String
    @Option(help: "Seconds to wait.") var timeout: Double = 3600

    func run() async throws {
        try await OrchestratorClientOptions.reportingErrors {
            try await watchExchange(try connection.client(), jobID: jobID, timeout: timeout)
        }
    }
}

/// `exchanger cancel JOB_ID`: cancels an exchange (its resources are torn down).
struct CancelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel", abstract: "Cancel an exchange; the orchestrator tears down everything made for it.")

    @OptionGroup var connection: OrchestratorClientOptions
    @Argument(help: "The exchange's job id.") var jobID: String

    func run() async throws {
        try await OrchestratorClientOptions.reportingErrors {
            let status = try await connection.client().cancel(jobID)
            print(#"{"jobId":"\#(status.jobId)","state":"\#(status.state)"}"#)
        }
    }
}

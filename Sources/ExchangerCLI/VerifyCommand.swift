import ArgumentParser
import DocumentEngine
import ExchangeFleet
import ExchangerLogging
import Foundation
import Logging

/// `exchanger verify JOB_ID`: checks a finished exchange exactly against the broker, the case
/// databases and the object store, the way `exchanger run` does, from any machine that reaches them.
struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Verify a finished exchange exactly against the broker, the case databases and the object store.",
        discussion: """
            Checks every row through the id map column by column, every file byte for byte, every event once and that \
            nothing is left behind (queues, deployments, workers), the same verification `exchanger run` does. The data \
            locations default to the workers' environment: EXCHANGER_DATABASE_URL (or EXCHANGER_DATABASE_URL_FILE), \
            EXCHANGER_CASE_DATABASE_URL, EXCHANGER_CASE_DATABASE_PREFIX, EXCHANGER_STORAGE_URL (with AWS_* for S3) and \
            EXCHANGER_DOCUMENT_ENGINE_URL. Exit status: 0 when the exchange is FINISHED and verified exact; 1 when the \
            verification found problems; 2 when it could not run (no such exchange, a database or the store unreachable).
            """
    )

    @Argument(help: "The exchange's job id.")
    var jobID: String

    @OptionGroup var database: DatabaseOptions

    @Option(name: .long, help: "Case-database URL template containing {database} (default: EXCHANGER_CASE_DATABASE_URL).")
    var caseDatabase: String?

    @Option(name: .long, help: "Case-database name prefix (default: EXCHANGER_CASE_DATABASE_PREFIX, else case).")
    var prefix: String?

    @Option(name: .long, help: "Object storage of the cases: file:///dir or s3://bucket[/prefix] (default: EXCHANGER_STORAGE_URL).")
    var storage: String?

    @Option(name: .long, help: "The document engine: local or a Nutrient Document Engine URL (default: EXCHANGER_DOCUMENT_ENGINE_URL, else local).")
    var documentEngine: String?

    @Flag(help: "Print the verification as one JSON line instead of the summary.")
    var json = false

    func run() async throws {
        JSONLogHandler.bootstrapOnce(program: "exchanger", stream: .standardError)
        var logger = Logger(label: "exchanger.verify")
        logger.logLevel = .warning
        let environment = ProcessInfo.processInfo.environment
        func setting(_ option: String?, _ variable: String) -> String? {
            let value = (option ?? environment[variable])?.trimmingCharacters(in: .whitespacesAndNewlines)
            return value?.isEmpty == false ? value : nil
        }
        let verification: ExchangeVerification
        do {
            guard let caseDatabaseURL = setting(caseDatabase, "EXCHANGER_CASE_DATABASE_URL") else {
                throw ValidationError("give --case-database or set EXCHANGER_CASE_DATABASE_URL")
            }
            guard let storageURL = setting(storage, "EXCHANGER_STORAGE_URL") else {
                throw ValidationError("give --storage or set EXCHANGER_STORAGE_URL")
            }
            let locations = ExchangeVerifier.Locations(
                brokerURL: try database.url(), caseDatabaseURL: caseDatabaseURL,
                caseDatabasePrefix: setting(prefix, "EXCHANGER_CASE_DATABASE_PREFIX"), storageURL: storageURL,
                documentEngineURL: setting(documentEngine, DocumentEngines.environmentVariable) ?? DocumentEngines.defaultURL,
                environment: environment)
            verification = try await ExchangeVerifier.verify(jobID: jobID, at: locations, logger: logger)
        } catch let error as ValidationError {
            throw error
        } catch {
            FileHandle.standardError.write(Data("exchanger verify: \(error)\n".utf8))
            throw ExitCode(2)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            FileHandle.standardOutput.write(try encoder.encode(verification) + Data("\n".utf8))
        } else {
            print("exchange   \(verification.jobID)  \(verification.state)  (verified in \(String(format: "%.2f", verification.seconds)) s)")
            print("documents  \(verification.documents) total, \(verification.documentsNotFound) not found")
            for line in VerificationReport.lines(verification) { print(line) }
        }
        if !verification.isExact { throw ExitCode(1) }
    }
}

/// The human lines of a verification, shared by `exchanger run` and `exchanger verify`.
enum VerificationReport {
    static func lines(_ verification: ExchangeVerification) -> [String] {
        guard verification.isExact else {
            return ["verified   NOT EXACT: \(verification.problems.count) problem(s)"] + verification.problems.map { "  - \($0)" }
        }
        var lines = [
            "verified   exact: \(verification.rowsChecked) rows in \(verification.tablesChecked) tables, \(verification.filesChecked) files (\(verification.bytesChecked) bytes), \(verification.eventsChecked) events; nothing left behind"
        ]
        if verification.documentsSkipped > 0 {
            lines.append("           skipped: \(verification.documentsSkipped) documents an earlier exchange delivered, each found delivered in the case's ledger")
        }
        if verification.annotatedDocuments > 0 {
            lines.append(
                "           annotations: \(verification.annotatedDocuments) documents, \(verification.brandedInAnnotations) branded into the PDFs, \(verification.layerAnnotationsChecked) carried as layer annotations; \(verification.pageTextsChecked) page texts stored and \(verification.indexedPagesChecked) indexed; \(verification.redactionsChecked) redactions checked for leaks with poppler"
            )
        }
        return lines
    }
}

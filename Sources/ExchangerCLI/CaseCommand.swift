import ArgumentParser
import CaseData
import DocumentEngine
import ExchangerLogging
import ExchangeFleet
import Foundation
import Logging
import ObjectStorage

/// `exchanger case …`: per-case databases: create and migrate, seed a synthetic case, copy
/// documents between cases.
struct CaseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "case",
        abstract: "Create, seed and copy per-case databases ({prefix}_{caseId}).",
        discussion: """
            The case databases are found through EXCHANGER_CASE_DATABASE_URL, a URL template containing {database} \
            (postgres://user@host:5432/{database} or sqlite:///var/lib/exchanger/cases/{database}.sqlite), and \
            EXCHANGER_CASE_DATABASE_PREFIX (default case).
            """,
        subcommands: [Create.self, Seed.self, Copy.self]
    )

    struct Options: ParsableArguments {
        @Option(name: .long, help: "Case-database URL template containing {database} (default: EXCHANGER_CASE_DATABASE_URL).")
        var caseDatabase: String?
        @Option(name: .long, help: "Case-database name prefix (default: EXCHANGER_CASE_DATABASE_PREFIX, else case).")
        var prefix: String?

        func databases() throws -> CaseDatabases { try CaseDatabases(urlTemplate: caseDatabase, prefix: prefix) }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the case database if it is missing and apply the pending case migrations (safe to re-run).")
        @OptionGroup var options: Options
        @Option(name: .customLong("case"), help: "The case id.") var caseID: Int64

        func run() async throws {
            try await CaseCommand.reportingErrors {
                let databases = try options.databases()
                let applied = try await databases.create(caseID: caseID)
                let version = try await databases.schemaVersion(caseID: caseID)
                try CaseCommand.printJSON(CreateSummary(
                    caseID: caseID, database: try databases.locator.databaseName(caseID: caseID), appliedMigrations: applied, schemaVersion: version))
            }
        }
    }

    struct Seed: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the case database and fill it with a synthetic case (about 20 rows per document); prints a JSON summary.")
        @OptionGroup var options: Options
        @Option(name: .customLong("case"), help: "The case id.") var caseID: Int64
        @Option(name: .long, help: "Number of documents.") var documents: Int
        @Option(name: .long, help: "Seed of the generator: the same seed gives the same case.") var seed: UInt64 = 1
        @Option(name: .long, help: "Object storage (file:///dir or s3://bucket[/prefix]) for each document's PDF, native and text file.")
        var storage: String?
        @Option(name: .long, help: "Least size of each PDF rendition in bytes (0: as small as the content allows).")
        var pdfBytes = 0
        @Flag(name: .long, help: "Also put annotations of all seven kinds (a sticker image, a comment thread) on every document in the document engine (needs --storage).")
        var annotations = false
        @Option(name: .long, help: "The document engine for --annotations (default: EXCHANGER_DOCUMENT_ENGINE_URL, else local on --storage).")
        var documentEngine: String?

        func run() async throws {
            try await CaseCommand.reportingErrors {
                let databases = try options.databases()
                if annotations, storage == nil { throw ValidationError("--annotations needs --storage (the PDFs go into the document engine)") }
                var store: (any ObjectStore)?
                if let storage { store = try await ObjectStorage.open(storage, logger: Logger(label: "exchanger.storage")) }
                do {
                    var seeder = CaseSeeder(databases: databases, store: store)
                    seeder.pdfBytes = pdfBytes
                    let report = try await seeder.seed(caseID: caseID, documents: documents, seed: seed)
                    if annotations, let store, let first = report.firstDocumentID, let last = report.lastDocumentID {
                        try await seedAnnotations(databases: databases, store: store, documents: first...last)
                    }
                    try await store?.shutdown()
                    try CaseCommand.printJSON(report)
                } catch {
                    try? await store?.shutdown()
                    throw error
                }
            }
        }

        /// Ingests each seeded document's PDF with ``AnnotationSeeder`` annotations into the engine.
        func seedAnnotations(databases: CaseDatabases, store: any ObjectStore, documents: ClosedRange<Int64>) async throws {
            let environment = ProcessInfo.processInfo.environment
            let url = documentEngine ?? environment[DocumentEngines.environmentVariable].flatMap { $0.isEmpty ? nil : $0 }
                ?? DocumentEngines.defaultURL
            try await CaseAnnotations.seed(
                databases: databases, store: store, engineURL: url, caseID: caseID, documents: documents, environment: environment,
                logger: Logger(label: "exchanger.case-seed"))
        }
    }

    struct Copy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy documents and everything attached to them from one case to another (resumable per job id); prints a JSON report.")
        @OptionGroup var options: Options
        @Option(name: .long, help: "Source case id.") var from: Int64
        @Option(name: .long, help: "Destination case id.") var to: Int64
        @Option(name: .long, help: "Job id: a re-run with the same id resumes and never duplicates.") var job: String
        @Option(name: .long, parsing: .upToNextOption, help: "Document ids to copy.") var documents: [Int64] = []
        @Option(name: .long, help: "A file of document ids to copy (separated by white space or commas; for long lists).")
        var documentsFile: String?
        @Option(name: .long, help: "Copy the documents carrying this label id.") var label: Int64?
        @Option(name: .long, help: "Copy the documents in this folder id.") var folder: Int64?

        func validate() throws {
            let chosen = (documents.isEmpty && documentsFile == nil ? 0 : 1) + (label == nil ? 0 : 1) + (folder == nil ? 0 : 1)
            guard chosen == 1 else { throw ValidationError("give exactly one of --documents / --documents-file, --label, --folder") }
        }

        func run() async throws {
            try await CaseCommand.reportingErrors {
                var ids = documents
                if let documentsFile {
                    let text = try String(contentsOfFile: documentsFile, encoding: .utf8)
                    for word in text.split(whereSeparator: { $0.isWhitespace || $0 == "," }) {
                        guard let id = Int64(word) else { throw ValidationError("\(documentsFile): '\(word)' is not a document id") }
                        ids.append(id)
                    }
                }
                let selection: CaseDocumentSelection =
                    if let label { .labelID(label) } else if let folder { .folderID(folder) } else { .documentIDs(ids) }
                let copier = CaseDataCopier(databases: try options.databases(), settings: try CaseCopySettings(environment: ProcessInfo.processInfo.environment))
                try CaseCommand.printJSON(try await copier.copy(sourceCase: from, destinationCase: to, selection: selection, jobID: job))
            }
        }
    }

    struct CreateSummary: Encodable {
        var caseID: Int64
        var database: String
        var appliedMigrations: [Int]
        var schemaVersion: Int
    }

    static func printJSON(_ value: some Encodable) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        FileHandle.standardOutput.write(try encoder.encode(value) + Data("\n".utf8))
    }

    /// Runs `body`; a failure is one line on standard error and exit status 1.
    static func reportingErrors(_ body: () async throws -> Void) async throws {
        JSONLogHandler.bootstrapOnce(program: "exchanger")
        do {
            try await body()
        } catch let error as CaseDataError {
            FileHandle.standardError.write(Data("exchanger case: \(error.message) [\(error.code)]\n".utf8))
            throw ExitCode(1)
        } catch let error as ValidationError {
            throw error
        } catch let error as ExitCode {
            throw error
        } catch {
            FileHandle.standardError.write(Data("exchanger case: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

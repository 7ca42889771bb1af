import ArgumentParser
import CaseData
import CaseDatabase
import ExchangeFleet
import ExchangerLogging
import Foundation
import Logging
import PostgresClient

/// `exchanger bench annotations`: an annotation exchange of N documents (annotations of all seven
/// kinds on every document) through the real fleet — pre-uploader, uploader, re-OCR and
/// search-text processes on PostgreSQL — verified exactly, then the search-text bulk indexing path
/// against one bulk COPY of the same page text into the same table, in the same run. The last line
/// is a JSON object.
struct AnnotationsBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "annotations",
        abstract: "Measure the annotation path through the real fleet and the full-text indexing against one COPY of the same text.",
        discussion: """
            Needs PostgreSQL (--database, a server where this user may create databases): a fresh broker database and \
            case databases {prefix}_{caseId} are created there and dropped afterwards unless --keep. Files and the \
            local document engine live in a temporary directory unless EXCHANGER_STORAGE_URL / \
            EXCHANGER_DOCUMENT_ENGINE_URL are set.
            """)

    @Option(help: "A PostgreSQL server URL (postgres://user@host:port/db) where this user may create databases.") var database: String
    @Option(help: "Documents of the exchange.") var documents = 1_000
    @Option(help: "Most workers per stage.") var maxProcs = 2
    @Option(help: "Pages for the indexing comparison (at least the pages the exchange indexed).") var indexPages = 50_000
    @Flag(help: "Copy the native files as well (the annotations + natives configuration).") var natives = false
    @Flag(help: "Keep the databases and the workspace.") var keep = false

    func validate() throws {
        guard database.hasPrefix("postgres://") || database.hasPrefix("postgresql://") else {
            throw ValidationError("--database must be a postgres:// URL")
        }
        guard (1...100_000).contains(documents) else { throw ValidationError("--documents must be 1…100000") }
        guard (1...64).contains(maxProcs) else { throw ValidationError("--max-procs must be 1…64") }
        guard indexPages >= 1 else { throw ValidationError("--index-pages must be at least 1") }
    }

    struct Result: Encodable {
        var benchmark = "annotations"
        var documents: Int
        var natives: Bool
        var finished: Bool
        var verified: Bool
        var problems: [String]
        var seedSeconds: Double
        var exchangeSeconds: Double
        var documentsPerSecond: Double
        var pagesIndexed: Int
        var pagesIndexedPerSecond: Double
        var brandedIn: Int
        var layerAnnotations: Int
        var indexing: SearchIndexBenchmark.Result
        var indexRatioVsCopy: Double
        enum CodingKeys: String, CodingKey {
            case benchmark, documents, natives, finished, verified, problems, indexing
            case seedSeconds = "seed_seconds"
            case exchangeSeconds = "exchange_seconds"
            case documentsPerSecond = "documents_per_second"
            case pagesIndexed = "pages_indexed"
            case pagesIndexedPerSecond = "pages_indexed_per_second"
            case brandedIn = "branded_in_annotations"
            case layerAnnotations = "layer_annotations"
            case indexRatioVsCopy = "index_ratio_vs_copy"
        }
    }

    func run() async throws {
        JSONLogHandler.bootstrapOnce(program: "exchanger-bench")
        var logger = Logger(label: "exchanger.bench")
        logger.logLevel = .warning
        let prefix = "benchann\(getpid())"
        let template = try ExchangeBench.caseTemplate(database)
        let directory = NSTemporaryDirectory() + "/exchanger-bench-annotations-\(getpid())"
        let brokerDatabase = "\(prefix)_broker"
        let admin = try await PostgresConnection.connect(url: database)
        try await admin.execute("CREATE DATABASE \(brokerDatabase)")
        await admin.close()
        var environment = ProcessInfo.processInfo.environment
        environment["EXCHANGER_DATABASE_URL"] = template.replacingOccurrences(of: "{database}", with: brokerDatabase)
        environment["EXCHANGER_CASE_DATABASE_URL"] = template
        environment["EXCHANGER_CASE_DATABASE_PREFIX"] = prefix
        let workspace = try FleetWorkspace(directory: directory, environment: environment)
        try workspace.prepare()
        let databases = try CaseDatabases(urlTemplate: template, prefix: prefix)
        let cases: [Int64] = [1, 2, 3]
        defer { if !keep { try? FileManager.default.removeItem(atPath: directory) } }
        do {
            let result = try await measure(workspace: workspace, databases: databases, logger: logger)
            if !keep { await cleanUp(databases: databases, cases: cases, brokerDatabase: brokerDatabase) }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            FileHandle.standardOutput.write(try encoder.encode(result) + Data("\n".utf8))
            if !result.finished || !result.verified { throw ExitCode(1) }
        } catch {
            if !keep { await cleanUp(databases: databases, cases: cases, brokerDatabase: brokerDatabase) }
            throw error
        }
    }

    private func measure(workspace: FleetWorkspace, databases: CaseDatabases, logger: Logger) async throws -> Result {
        let clock = ContinuousClock()
        status("seeding \(documents) documents with annotations of all seven kinds …")
        var started = clock.now
        let (demo, _) = try await DemoCase.prepare(
            workspace: workspace, documents: documents, sourceCaseID: 1, destinationCaseID: 2, batchID: 1, annotations: true, logger: logger)
        let seedSeconds = ExchangeBench.seconds(clock.now - started)

        status("annotation exchange of \(documents) documents through the fleet …")
        var options = LocalExchangeRun.Options()
        options.maxProcs = maxProcs
        options.maxDocumentIDs = max(10_000, documents)
        options.verify = false
        let run = LocalExchangeRun(workspace: workspace, options: options, logger: logger)
        started = clock.now
        let exchange = try await run.run(requestJSON: demo.requestJSON(includeNatives: natives, requiresAnnotations: true))
        let exchangeSeconds = exchange.exchangeSeconds
        status("  \(exchange.state) in \(String(format: "%.2f", exchangeSeconds)) s")
        status("verifying …")
        let verification = exchange.state == "FINISHED" ? try await run.verify(exchange.jobId) : nil

        let pagesIndexed = verification?.indexedPagesChecked ?? 0
        let pages = max(indexPages, pagesIndexed)
        status("search-text bulk indexing vs one COPY of the same \(pages) pages …")
        let indexing = try await SearchIndexBenchmark(databases: databases, pages: pages, pageBytes: 2_000, rounds: 2).run(caseID: 3, logger: logger)
        status("  index \(Int(indexing.indexPagesPerSecond)) pages/s, COPY \(Int(indexing.copyPagesPerSecond)) pages/s, ratio \(String(format: "%.2f", indexing.ratio))")
        return Result(
            documents: documents, natives: natives, finished: exchange.state == "FINISHED", verified: verification?.isExact ?? false,
            problems: Array((verification?.problems ?? ["the exchange is \(exchange.state)"]).prefix(10)), seedSeconds: seedSeconds,
            exchangeSeconds: exchangeSeconds, documentsPerSecond: Double(documents) / exchangeSeconds, pagesIndexed: pagesIndexed,
            pagesIndexedPerSecond: Double(pagesIndexed) / exchangeSeconds, brandedIn: verification?.brandedInAnnotations ?? 0,
            layerAnnotations: verification?.layerAnnotationsChecked ?? 0, indexing: indexing, indexRatioVsCopy: indexing.ratio)
    }

    private func cleanUp(databases: CaseDatabases, cases: [Int64], brokerDatabase: String) async {
        for id in cases { try? await databases.drop(caseID: id) }
        do {
            let admin = try await PostgresConnection.connect(url: database)
            try await admin.execute("DROP DATABASE IF EXISTS \(brokerDatabase) WITH (FORCE)")
            await admin.close()
        } catch {
            status("could not drop \(brokerDatabase): \(error)")
        }
    }

    private func status(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}

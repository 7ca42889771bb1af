import ArgumentParser
import CaseData
import CaseDatabase
import ExchangerLogging
import Foundation
import Logging

/// `exchanger bench search-index`: the search-text bulk indexing path against one bulk COPY of
/// the same text into the same table, on a throwaway case database of the server `--database` names.
struct SearchIndexBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "search-index",
        abstract: "Measure pages indexed per second through the search-text bulk path against one COPY of the same text (PostgreSQL).")

    @Option(help: "A PostgreSQL URL (postgres://user@host:port/db); the bench creates and drops its own case database on that server. A template with {database} is used as it is.")
    var database: String
    @Option(help: "Pages to index.") var pages: Int = 100_000
    @Option(help: "Bytes of text per page.") var pageBytes: Int = 2_000
    @Option(help: "Rows per bulk write (EXCHANGER_SEARCH_TEXT_BULK_SIZE's default).") var bulkSize: Int = SearchIndexStore.defaultBulkSize
    @Option(help: "Rounds; the best of each path is reported.") var rounds: Int = 2

    func validate() throws {
        guard pages >= 1, pageBytes >= 16, bulkSize >= 1, rounds >= 1 else { throw ValidationError("pages, bulk-size, rounds ≥ 1; page-bytes ≥ 16") }
    }

    func run() async throws {
        JSONLogHandler.bootstrapOnce(program: "exchanger-bench")
        let template = try Self.template(database)
        let databases = CaseDatabases(locator: try CaseDatabaseLocator(template: template, prefix: "exchbench"))
        let caseID = Int64.random(in: 1_000_000...9_999_999)
        let benchmark = SearchIndexBenchmark(databases: databases, pages: pages, pageBytes: pageBytes, bulkSize: bulkSize, rounds: rounds)
        let result = try await benchmark.run(caseID: caseID)
        print(String(format: "search-index: %d pages: bulk index %.0f pages/s, COPY %.0f pages/s, ratio %.2f (target ≥ 0.5)",
                     result.pages, result.indexPagesPerSecond, result.copyPagesPerSecond, result.ratio))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        print(String(decoding: try encoder.encode(result), as: UTF8.self))
    }

    /// `postgres://u@h:p/db?x` → `postgres://u@h:p/{database}?x`; a template is kept.
    static func template(_ url: String) throws -> String {
        if url.contains(CaseDatabaseLocator.placeholder) { return url }
        guard url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") else {
            throw ValidationError("--database must be a postgres:// URL")
        }
        let schemeEnd = url.range(of: "://")?.upperBound ?? url.startIndex
        let rest = url[schemeEnd...]
        let query = rest.firstIndex(of: "?")
        let authorityAndPath = query.map { rest[..<$0] } ?? rest
        let suffix = query.map { String(rest[$0...]) } ?? ""
        let authority = authorityAndPath.firstIndex(of: "/").map { authorityAndPath[..<$0] } ?? authorityAndPath
        return String(url[..<schemeEnd]) + authority + "/" + CaseDatabaseLocator.placeholder + suffix
    }
}

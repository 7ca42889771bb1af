import ArgumentParser
import CaseData
import CaseDatabase
import Foundation
import Logging

/// `exchanger search --case N "terms"`: the documents of a case whose indexed text matches.
struct SearchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "search",
        abstract: "Search a case's full-text index (what exchanger-search-text wrote): document id, position, rank, snippet.",
        discussion: """
            Every word of the terms must match (PostgreSQL: plainto_tsquery with the english configuration; SQLite: FTS5 with \
            porter stemming). The case database is found like the other case commands do: --case-database or \
            EXCHANGER_CASE_DATABASE_URL, --prefix or EXCHANGER_CASE_DATABASE_PREFIX.
            """)

    @OptionGroup var options: CaseCommand.Options
    @Option(name: .customLong("case"), help: "The case id.") var caseID: Int64
    @Option(help: "Most matches to print.") var limit: Int = 20
    @Flag(help: "Print one JSON object per match instead of a table.") var json = false
    @Argument(help: "The words to search for.") var terms: [String]

    func validate() throws {
        guard limit >= 1, limit <= 10_000 else { throw ValidationError("--limit must be 1…10000") }
        guard !terms.joined().trimmingCharacters(in: .whitespaces).isEmpty else { throw ValidationError("give the words to search for") }
    }

    func run() async throws {
        try await CaseCommand.reportingErrors {
            let databases = try options.databases()
            let settings = try CaseDatabaseSettings(locator: databases.locator, maxOpenConnections: 1)
            let store = SearchIndexStore(settings: settings, logger: Logger(label: "exchanger.search"))
            let hits: [SearchHit]
            do {
                hits = try await store.search(caseID: caseID, terms: terms.joined(separator: " "), limit: limit)
                await store.shutdown()
            } catch {
                await store.shutdown()
                throw error
            }
            print(Self.render(hits, json: json), terminator: "")
        }
    }

    /// The matches as printed: a table (`document  position  rank  snippet`) or JSON lines.
    static func render(_ hits: [SearchHit], json: Bool) -> String {
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return hits.compactMap { hit in (try? encoder.encode(hit)).map { String(decoding: $0, as: UTF8.self) + "\n" } }.joined()
        }
        if hits.isEmpty { return "no matches\n" }
        var output = "document\tposition\trank\tsnippet\n"
        for hit in hits {
            let snippet = hit.snippet.replacingOccurrences(of: "\n", with: " ")
            output += "\(hit.documentID)\t\(hit.position)\t\(String(format: "%.4f", hit.rank))\t\(snippet)\n"
        }
        return output
    }
}

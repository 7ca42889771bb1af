import CaseDatabase
import DatabaseSupport
import Foundation
import Logging
import PostgresClient

/// `exchanger bench search-index`: pages indexed per second through ``SearchIndexStore``'s bulk
/// path, next to one bulk `COPY` of the same rows into the same table (generated `tsvector` and
/// GIN index included), in the same run, on a throwaway case database that is dropped afterwards.
public struct SearchIndexBenchmark: Sendable {
    /// What one run measured.
    public struct Result: Sendable, Hashable, Codable {
        public var pages: Int
        public var pageBytes: Int
        public var bulkSize: Int
        public var rounds: Int
        /// Best round of the bulk index path.
        public var indexSeconds: Double
        public var indexPagesPerSecond: Double
        /// Best round of one `COPY … FROM STDIN` of the same rows.
        public var copySeconds: Double
        public var copyPagesPerSecond: Double
        /// indexPagesPerSecond / copyPagesPerSecond (the target is ≥ 0.5).
        public var ratio: Double
        /// A second bulk write of the same rows (an idempotent re-index): rows stay `pages`.
        public var reindexSeconds: Double
        public var rowsAfterReindex: Int

        enum CodingKeys: String, CodingKey {
            case pages, pageBytes = "page_bytes", bulkSize = "bulk_size", rounds
            case indexSeconds = "index_seconds", indexPagesPerSecond = "index_pages_per_second"
            case copySeconds = "copy_seconds", copyPagesPerSecond = "copy_pages_per_second", ratio
            case reindexSeconds = "reindex_seconds", rowsAfterReindex = "rows_after_reindex"
        }
    }

    public let databases: CaseDatabases
    public var pages: Int
    public var pageBytes: Int
    public var bulkSize: Int
    public var rounds: Int

    public init(databases: CaseDatabases, pages: Int, pageBytes: Int = 2_000, bulkSize: Int = SearchIndexStore.defaultBulkSize, rounds: Int = 2) {
        self.databases = databases
        self.pages = max(1, pages)
        self.pageBytes = max(16, pageBytes)
        self.bulkSize = max(1, bulkSize)
        self.rounds = max(1, rounds)
    }

    /// Runs the benchmark in case database `caseID` (created, then dropped). PostgreSQL only:
    /// SQLite has no COPY to compare with.
    public func run(caseID: Int64, logger: Logger = Logger(label: "exchanger.bench")) async throws -> Result {
        guard databases.locator.kind == .postgres else {
            throw CaseDataError(.invalidArgument, "the search-index benchmark compares with PostgreSQL COPY: give a postgres:// database")
        }
        try await databases.create(caseID: caseID)
        do {
            let result = try await measure(caseID: caseID, logger: logger)
            try await databases.drop(caseID: caseID)
            return result
        } catch {
            try? await databases.drop(caseID: caseID)
            throw error
        }
    }

    private func measure(caseID: Int64, logger: Logger) async throws -> Result {
        let entries = Self.entries(pages: pages, pageBytes: pageBytes)
        let settings = try CaseDatabaseSettings(locator: databases.locator)
        let store = SearchIndexStore(settings: settings, bulkSize: bulkSize, logger: logger)
        let connection = try await databases.open(caseID: caseID)
        guard case .postgres(let direct) = connection else {
            await connection.close()
            throw CaseDataError(.invalidArgument, "not a PostgreSQL case database")
        }
        do {
            let result = try await measure(entries: entries, store: store, direct: direct, caseID: caseID)
            await store.shutdown()
            await direct.close()
            return result
        } catch {
            await store.shutdown()
            await direct.close()
            throw error
        }
    }

    private func measure(entries: [SearchIndexEntry], store: SearchIndexStore, direct: PostgresConnection, caseID: Int64) async throws -> Result {
        var copyText = ""
        copyText.reserveCapacity(entries.reduce(0) { $0 + $1.text.utf8.count + 32 })
        for entry in entries {
            copyText += "\(entry.documentID)\t\(entry.position)\t\(entry.batchID.map(String.init) ?? "\\N")\t"
            copyText += Self.copyEscaped(entry.text)
            copyText += "\n"
        }
        let copyBytes = Array(copyText.utf8)

        var bestIndex = Double.infinity, bestCopy = Double.infinity, reindex = 0.0
        var rowsAfterReindex = 0
        for round in 0..<rounds {
            try await direct.execute("TRUNCATE document_search_text")
            var started = ContinuousClock.now
            // The handler's path: one bulk write per batch of messages, each chunked at bulkSize.
            var offset = 0
            while offset < entries.count {
                let chunk = Array(entries[offset..<min(offset + bulkSize, entries.count)])
                try await store.write(chunk, caseID: caseID)
                offset += chunk.count
            }
            bestIndex = min(bestIndex, (ContinuousClock.now - started).benchSeconds)
            if round == rounds - 1 {
                started = ContinuousClock.now
                offset = 0
                while offset < entries.count {
                    let chunk = Array(entries[offset..<min(offset + bulkSize, entries.count)])
                    try await store.write(chunk, caseID: caseID)
                    offset += chunk.count
                }
                reindex = (ContinuousClock.now - started).benchSeconds
                rowsAfterReindex = try await store.count(caseID: caseID)
            }

            try await direct.execute("TRUNCATE document_search_text")
            started = ContinuousClock.now
            let source = AsyncStream<[UInt8]> { continuation in
                var position = 0
                while position < copyBytes.count {
                    continuation.yield(Array(copyBytes[position..<min(copyBytes.count, position + 256 * 1024)]))
                    position += 256 * 1024
                }
                continuation.finish()
            }
            let copied = try await direct.copyIn("COPY document_search_text (document_id, position, batch_id, content) FROM STDIN", from: source)
            bestCopy = min(bestCopy, (ContinuousClock.now - started).benchSeconds)
            guard copied == entries.count else {
                throw CaseDataError(.database, "COPY wrote \(copied) rows, not \(entries.count)")
            }
        }
        let indexRate = Double(entries.count) / bestIndex
        let copyRate = Double(entries.count) / bestCopy
        return Result(
            pages: entries.count, pageBytes: pageBytes, bulkSize: bulkSize, rounds: rounds, indexSeconds: bestIndex,
            indexPagesPerSecond: indexRate, copySeconds: bestCopy, copyPagesPerSecond: copyRate, ratio: indexRate / copyRate,
            reindexSeconds: reindex, rowsAfterReindex: rowsAfterReindex)
    }

    /// Deterministic English-like page texts of about `pageBytes` bytes, 10 pages per document.
    static func entries(pages: Int, pageBytes: Int) -> [SearchIndexEntry] {
        let words = [
            "agreement", "merger", "counsel", "privileged", "invoice", "shipment", "contract", "board", "meeting", "budget",
            "revenue", "forecast", "litigation", "deposition", "exhibit", "custodian", "email", "attachment", "draft", "final",
            "review", "approval", "payment", "schedule", "memo", "confidential", "settlement", "claim", "damages", "witness",
            "the", "and", "of", "to", "in", "for", "with", "on", "by", "from", "quarterly", "report", "audit", "compliance",
        ]
        var generator = SeededGenerator(seed: 42)
        var result: [SearchIndexEntry] = []
        result.reserveCapacity(pages)
        for page in 0..<pages {
            var text = ""
            text.reserveCapacity(pageBytes + 16)
            while text.utf8.count < pageBytes {
                if !text.isEmpty { text += (generator.next() % 12 == 0) ? "\n" : " " }
                text += words[Int(generator.next() % UInt64(words.count))]
            }
            result.append(SearchIndexEntry(documentID: Int64(page / 10 + 1), position: page % 10, batchID: 1, text: text))
        }
        return result
    }

    /// A value in COPY's text format.
    static func copyEscaped(_ text: String) -> String {
        var output = ""
        output.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": output += "\\\\"
            case "\n": output += "\\n"
            case "\r": output += "\\r"
            case "\t": output += "\\t"
            default: output.unicodeScalars.append(scalar)
            }
        }
        return output
    }
}

extension Duration {
    fileprivate var benchSeconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}

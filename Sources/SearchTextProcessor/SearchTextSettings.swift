import CaseDatabase
import CaseData
import Foundation

/// Settings of the search-text processor; each from its environment variable, else the default.
///
/// | environment variable | meaning | default |
/// |---|---|---|
/// | `EXCHANGER_SEARCH_TEXT_BULK_SIZE` | most rows (pages) in one bulk write of the index | 20000 |
/// | `EXCHANGER_SEARCH_TEXT_BATCH_WINDOW_MS` | how long the first message of a batch waits for the others before their texts are written together | 20 |
/// | `EXCHANGER_CASE_DATABASE_URL`, `…_PREFIX`, `…_MAX_CONNECTIONS` | see ``CaseDatabaseSettings`` | |
public struct SearchTextSettings: Sendable, Hashable {
    /// The default of ``batchWindow``.
    public static let defaultBatchWindow: Duration = .milliseconds(20)

    /// Where the case databases are.
    public var caseDatabase: CaseDatabaseSettings
    /// Most rows in one bulk write.
    public var bulkSize: Int
    /// How long pending texts wait for more before they are written (0: write at once).
    public var batchWindow: Duration

    public init(
        caseDatabase: CaseDatabaseSettings, bulkSize: Int = SearchIndexStore.defaultBulkSize, batchWindow: Duration = Self.defaultBatchWindow
    ) {
        self.caseDatabase = caseDatabase
        self.bulkSize = bulkSize
        self.batchWindow = batchWindow
    }

    /// Reads the settings from the environment (see the table above).
    /// - Throws: ``CaseDatabaseError`` or ``SearchTextError`` naming the variable at fault.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        self.init(caseDatabase: try CaseDatabaseSettings(environment: environment))
        if let text = environment["EXCHANGER_SEARCH_TEXT_BULK_SIZE"], !text.isEmpty {
            guard let value = Int(text), (1...1_000_000).contains(value) else {
                throw SearchTextError(.invalidConfiguration, "EXCHANGER_SEARCH_TEXT_BULK_SIZE='\(text)' must be 1…1000000")
            }
            bulkSize = value
        }
        if let text = environment["EXCHANGER_SEARCH_TEXT_BATCH_WINDOW_MS"], !text.isEmpty {
            guard let value = Int(text), (0...10_000).contains(value) else {
                throw SearchTextError(.invalidConfiguration, "EXCHANGER_SEARCH_TEXT_BATCH_WINDOW_MS='\(text)' must be 0…10000")
            }
            batchWindow = .milliseconds(value)
        }
    }
}

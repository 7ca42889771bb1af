import ArgumentParser
import CaseData
import Foundation
import ObjectStorage
import WorkerRuntime

/// `exchanger-search-text`: the search-text worker.
public struct SearchTextCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "exchanger-search-text",
        abstract: "Indexes each document's page texts in the destination case database's full-text index, in bulk.",
        discussion: """
            Settings (environment): EXCHANGER_CASE_DATABASE_URL (required, a template with {database}), \
            EXCHANGER_CASE_DATABASE_PREFIX (case), EXCHANGER_CASE_DATABASE_MAX_CONNECTIONS (16), \
            EXCHANGER_SEARCH_TEXT_BULK_SIZE (20000), EXCHANGER_SEARCH_TEXT_BATCH_WINDOW_MS (20). \
            Unless --concurrency or EXCHANGER_WORKER_CONCURRENCY says otherwise, every message of a received batch \
            is handled at once, so the whole batch joins one bulk write.
            """)

    @OptionGroup public var worker: WorkerOptions

    @Option(help: "Object storage of the cases, s3://bucket[/prefix] or file:///dir (EXCHANGER_STORAGE_URL).")
    public var storageURL: String?

    public init() {}

    public func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let url = storageURL ?? environment["EXCHANGER_STORAGE_URL"], !url.isEmpty else {
            throw ValidationError("no object storage: pass --storage-url or set EXCHANGER_STORAGE_URL")
        }
        let settings = try SearchTextSettings(environment: environment)
        var options = worker
        if options.concurrency == nil, (environment["EXCHANGER_WORKER_CONCURRENCY"] ?? "").isEmpty {
            // The whole received batch at once: its texts are written together.
            options.concurrency = try options.configuration(program: SearchTextHandler.program, environment).batchSize
        }
        try await WorkerProcess.run(
            executable: "exchanger-search-text", program: SearchTextHandler.program, options: options, environment: environment
        ) { context in
            let store = try await ObjectStorage.open(url, environment: context.environment, logger: context.logger)
            return SearchTextHandler(
                store: store, index: SearchIndexStore(settings: settings.caseDatabase, bulkSize: settings.bulkSize, logger: context.logger),
                bulkSize: settings.bulkSize, batchWindow: settings.batchWindow)
        }
    }
}

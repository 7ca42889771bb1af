import ArgumentParser
import DocumentEngine
import Foundation
import ObjectStorage
import WorkerRuntime

/// The options every document-engine worker takes (uploader, pre-uploader, re-OCR).
public struct EngineWorkerOptions: ParsableArguments {
    @Option(help: "Object storage of the cases, s3://bucket[/prefix] or file:///dir (EXCHANGER_STORAGE_URL).")
    public var storageURL: String?

    @Option(help: "The document engine: local, local:<storage-url>, nutrient+http(s)://host:port (EXCHANGER_DOCUMENT_ENGINE_URL; default local).")
    public var documentEngine: String?

    public init() {}
}

/// How a document-engine worker starts: the case store and the engine from its options or the
/// environment, the engine behind a ``CircuitBreakingEngine`` (so the worker stops receiving while
/// the engine is down), then the worker runtime's poll loop with the handler `makeHandler` builds.
public enum EngineWorker {
    /// Runs the worker until it is stopped.
    /// - Throws: `ValidationError` for a missing store or an unreadable engine URL, or what the runtime throws.
    ///   - brandsIn: the worker builds flattened PDFs (the pre-uploader): what that needs on the
    ///     engine (qpdf and poppler-utils for the local engine) is checked before it starts, so a
    ///     missing program stops it with one line instead of dead-lettering every document. A
    ///     Nutrient engine's API token is checked the same way for every engine worker.
    public static func run(
        executable: String, program: String, worker: WorkerOptions, options: EngineWorkerOptions, brandsIn: Bool = false,
        makeHandler: @escaping @Sendable (_ store: any ObjectStore, _ engine: any DocumentEngine) -> any MessageHandler
    ) async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let url = options.storageURL ?? environment["EXCHANGER_STORAGE_URL"], !url.isEmpty else {
            throw ValidationError("no object storage: pass --storage-url or set EXCHANGER_STORAGE_URL")
        }
        let engineURL = options.documentEngine ?? environment[DocumentEngines.environmentVariable].flatMap { $0.isEmpty ? nil : $0 }
            ?? DocumentEngines.defaultURL
        do {
            _ = try DocumentEngineLocation(engineURL)
        } catch {
            throw ValidationError("document engine: \(error.message)")
        }
        do {
            try DocumentEngines.checkCredentials(url: engineURL, environment: environment)
            if brandsIn { try DocumentEngines.checkBrandIn(url: engineURL, environment: environment) }
        } catch {
            // One line naming the fix, and the configuration-error status (EX_CONFIG), which the
            // supervisor shows as the program failing to start.
            FileHandle.standardError.write(Data("\(executable): cannot start: \(error.message)\n".utf8))
            throw ExitCode(78)
        }
        try await WorkerProcess.run(executable: executable, program: program, options: worker, environment: environment) { context in
            let store = try await ObjectStorage.open(url, environment: context.environment, logger: context.logger)
            do {
                let breaker = try CircuitBreakerSettings(environment: context.environment)
                let engine = try await DocumentEngines.open(url: engineURL, caseStore: store, environment: context.environment, logger: context.logger)
                context.logger.info("document engine opened", metadata: ["documentEngine": "\(DocumentEngines.redacted(engineURL))"])
                return makeHandler(store, CircuitBreakingEngine(engine, settings: breaker, logger: context.logger))
            } catch {
                try? await store.shutdown()
                throw error
            }
        }
    }
}

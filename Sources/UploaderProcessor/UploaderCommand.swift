import ArgumentParser
import DocumentEngine
import Foundation
import ObjectStorage
import WorkerRuntime

/// `exchanger-uploader`: the uploader worker.
public struct UploaderCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "exchanger-uploader",
        abstract: "Ingests each destination PDF (with its layer annotations) into the destination document engine.")

    @OptionGroup public var worker: WorkerOptions

    @Option(help: "Object storage of the cases, s3://bucket[/prefix] or file:///dir (EXCHANGER_STORAGE_URL).")
    public var storageURL: String?

    @Option(help: "The document engine: local, local:<storage-url>, nutrient+http(s)://host:port (EXCHANGER_DOCUMENT_ENGINE_URL; default local).")
    public var documentEngine: String?

    public init() {}

    public func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let url = storageURL ?? environment["EXCHANGER_STORAGE_URL"], !url.isEmpty else {
            throw ValidationError("no object storage: pass --storage-url or set EXCHANGER_STORAGE_URL")
        }
        let engineURL = documentEngine ?? environment[DocumentEngines.environmentVariable].flatMap { $0.isEmpty ? nil : $0 }
            ?? DocumentEngines.defaultURL
        do {
            _ = try DocumentEngineLocation(engineURL)
        } catch {
            throw ValidationError("document engine: \(error.message)")
        }
        try await WorkerProcess.run(
            executable: "exchanger-uploader", program: UploaderHandler.program, options: worker, environment: environment
        ) { context in
            let store = try await ObjectStorage.open(url, environment: context.environment, logger: context.logger)
            do {
                let breaker = try CircuitBreakerSettings(environment: context.environment)
                let engine = try await DocumentEngines.open(url: engineURL, caseStore: store, environment: context.environment, logger: context.logger)
                context.logger.info("document engine opened", metadata: ["documentEngine": "\(DocumentEngines.redacted(engineURL))"])
                return UploaderHandler(store: store, engine: CircuitBreakingEngine(engine, settings: breaker, logger: context.logger))
            } catch {
                try? await store.shutdown()
                throw error
            }
        }
    }
}

import ArgumentParser
import DocumentEngine
import Foundation
import ObjectStorage
import WorkerRuntime

/// `exchanger-re-ocr`: the re-OCR worker.
public struct ReOCRCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "exchanger-re-ocr",
        abstract: "Writes the page texts of each uploaded document (from the destination document engine) and hands them to search-text.")

    @OptionGroup public var worker: WorkerOptions

    @Option(help: "Object storage of the cases, s3://bucket[/prefix] or file:///dir (EXCHANGER_STORAGE_URL).")
    public var storageURL: String?

    @Option(help: "The document engine: local, local:<storage-url> (EXCHANGER_DOCUMENT_ENGINE_URL; default local).")
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
            executable: "exchanger-re-ocr", program: ReOCRHandler.program, options: worker, environment: environment
        ) { context in
            let store = try await ObjectStorage.open(url, environment: context.environment, logger: context.logger)
            do {
                let engine = try await DocumentEngines.open(url: engineURL, caseStore: store, environment: context.environment, logger: context.logger)
                context.logger.info("document engine opened", metadata: ["documentEngine": "\(engineURL)"])
                return ReOCRHandler(store: store, engine: engine)
            } catch {
                try? await store.shutdown()
                throw error
            }
        }
    }
}

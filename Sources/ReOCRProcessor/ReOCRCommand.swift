import ArgumentParser
import DocumentEngine
import Foundation
import ObjectStorage
import UploaderProcessor
import WorkerRuntime

/// `exchanger-re-ocr`: the re-OCR worker.
public struct ReOCRCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "exchanger-re-ocr",
        abstract: "Writes the page texts of each uploaded document (from the destination document engine) and hands them to search-text.")

    @OptionGroup public var worker: WorkerOptions

    @OptionGroup public var engine: EngineWorkerOptions

    public init() {}

    public func run() async throws {
        try await EngineWorker.run(executable: "exchanger-re-ocr", program: ReOCRHandler.program, worker: worker, options: engine) { store, engine in
            ReOCRHandler(store: store, engine: engine)
        }
    }
}

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

    @OptionGroup public var engine: EngineWorkerOptions

    public init() {}

    public func run() async throws {
        try await EngineWorker.run(executable: "exchanger-uploader", program: UploaderHandler.program, worker: worker, options: engine) { store, engine in
            UploaderHandler(store: store, engine: engine)
        }
    }
}

import ArgumentParser
import DocumentEngine
import Foundation
import ObjectStorage
import UploaderProcessor
import WorkerRuntime

/// `exchanger-pre-uploader`: the pre-uploader worker.
public struct PreUploaderCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "exchanger-pre-uploader",
        abstract: "Brands annotations into each destination PDF and carries the rest as a layer for the uploader.")

    @OptionGroup public var worker: WorkerOptions

    @OptionGroup public var engine: EngineWorkerOptions

    public init() {}

    public func run() async throws {
        try await EngineWorker.run(executable: "exchanger-pre-uploader", program: PreUploaderHandler.program, worker: worker, options: engine, brandsIn: true) { store, engine in
            PreUploaderHandler(store: store, engine: engine)
        }
    }
}

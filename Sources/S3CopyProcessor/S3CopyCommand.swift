import ArgumentParser
import Foundation
import ObjectStorage
import WorkerRuntime

/// `exchanger-s3-copy`: the s3-copy worker.
public struct S3CopyCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "exchanger-s3-copy",
        abstract: "Copies documents' files from the source case to the destination case (server-side).")

    @OptionGroup public var worker: WorkerOptions

    @Option(help: "Object storage of the cases, s3://bucket[/prefix] or file:///dir (EXCHANGER_STORAGE_URL).")
    public var storageURL: String?

    public init() {}

    public func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let url = storageURL ?? environment["EXCHANGER_STORAGE_URL"], !url.isEmpty else {
            throw ValidationError("no object storage: pass --storage-url or set EXCHANGER_STORAGE_URL")
        }
        try await WorkerProcess.run(
            executable: "exchanger-s3-copy", program: S3CopyHandler.program, options: worker, environment: environment
        ) { context in
            S3CopyHandler(store: try await ObjectStorage.open(url, environment: context.environment, logger: context.logger))
        }
    }
}

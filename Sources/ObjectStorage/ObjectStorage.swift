import Foundation
import Logging

/// The entry point: opens a store from its URL.
public enum ObjectStorage {
    /// Opens `file:///dir` (a ``FileObjectStore``) or `s3://bucket[/prefix]` (an ``S3ObjectStore``
    /// configured from `environment` by AWS conventions, see ``S3Configuration``).
    /// Call ``ObjectStore/shutdown()`` when done.
    public static func open(
        _ url: String,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        logger: Logger = Logger(label: "exchanger.storage")
    ) async throws -> any ObjectStore {
        let location = try StorageLocation(url)
        switch location.scheme {
        case .file:
            return FileObjectStore(location: location, logger: logger)
        case .s3:
            let configuration = try S3Configuration(environment: environment)
            return S3ObjectStore(location: location, configuration: configuration, logger: logger)
        }
    }
}

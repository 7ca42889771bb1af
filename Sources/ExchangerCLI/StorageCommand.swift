import ArgumentParser
import ExchangerLogging
import Foundation
import Logging
import ObjectStorage

/// `exchanger storage …`: look at and move objects in `file://` and `s3://` stores.
///
/// Object URLs are `file:///dir/name` or `s3://bucket/key`, taken literally (no percent-decoding).
/// S3 settings come from the AWS variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_REGION`, `AWS_ENDPOINT_URL_S3`, …) and the `EXCHANGER_S3_*` settings.
struct StorageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storage",
        abstract: "List, copy, upload, download and delete objects in file:// and s3:// stores.",
        discussion: """
            URLs: file:///dir/name (a local file) or s3://bucket/key. S3 credentials, region and endpoint come \
            from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION and AWS_ENDPOINT_URL_S3 \
            (or AWS_ENDPOINT_URL).
            """,
        subcommands: [List.self, Put.self, Get.self, Copy.self, Remove.self]
    )

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ls", abstract: "List objects under a URL prefix: one line per object, key <TAB> size in bytes.",
            discussion: """
                s3://bucket/prefix lists the keys of the bucket starting with prefix. file:///dir lists the files under \
                the directory (keys relative to it); file:///dir/name-prefix the files of dir whose path starts with \
                name-prefix.
                """)
        @Argument(help: "s3://bucket[/prefix] or file:///dir[/prefix]") var url: String

        func run() async throws {
            try await StorageCommand.reportingErrors {
                let (location, prefix) = try StorageCommand.listingTarget(url)
                try await StorageCommand.withStore(location.url) { store in
                    for try await object in store.list(prefix: prefix) {
                        print("\(object.key.rawValue)\t\(object.size)")
                    }
                }
            }
        }
    }

    struct Put: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write an object from a local file or standard input.")
        @Argument(help: "Destination object URL.") var url: String
        @Option(name: .long, help: "Local file to upload (default: standard input).") var file: String?
        @Option(name: .long, help: "Content-Type to store with the object.") var contentType: String?

        func run() async throws {
            try await StorageCommand.reportingErrors {
                let (location, key) = try StorageLocation.parseObjectURL(url)
                try await StorageCommand.withStore(location.url) { store in
                    if let file {
                        try await store.upload(file: StorageCommand.absolute(file), to: key, contentType: contentType)
                    } else {
                        let data = FileHandle.standardInput.readDataToEndOfFile()
                        try await store.put(key, data, contentType: contentType)
                    }
                }
            }
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Read an object into a local file or standard output.")
        @Argument(help: "Object URL.") var url: String
        @Option(name: .long, help: "Local file to write (atomically; default: standard output).") var file: String?

        func run() async throws {
            try await StorageCommand.reportingErrors {
                let (location, key) = try StorageLocation.parseObjectURL(url)
                try await StorageCommand.withStore(location.url) { store in
                    if let file {
                        try await store.download(key, to: StorageCommand.absolute(file))
                    } else {
                        let output = FileHandle.standardOutput
                        for try await chunk in try await store.stream(key) {
                            try output.write(contentsOf: chunk)
                        }
                    }
                }
            }
        }
    }

    struct Copy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "cp",
            abstract: "Copy an object: server-side within one store (same bucket, or file to file), else streamed.")
        @Argument(help: "Source object URL.") var source: String
        @Argument(help: "Destination object URL.") var destination: String

        func run() async throws {
            try await StorageCommand.reportingErrors {
                let (sourceLocation, sourceKey) = try StorageLocation.parseObjectURL(source)
                let (destinationLocation, destinationKey) = try StorageLocation.parseObjectURL(destination)
                switch (sourceLocation.scheme, destinationLocation.scheme) {
                case (.file, .file):
                    // One store at the file-system root: the copy is the store's own (reflink / copy_file_range).
                    let from = try ObjectKey(String(sourceLocation.url(for: sourceKey).dropFirst("file:///".count)))
                    let to = try ObjectKey(String(destinationLocation.url(for: destinationKey).dropFirst("file:///".count)))
                    try await StorageCommand.withStore("file:///") { store in _ = try await store.copy(from: from, to: to) }
                case (.s3, .s3) where sourceLocation == destinationLocation:
                    try await StorageCommand.withStore(sourceLocation.url) { store in
                        _ = try await store.copy(from: sourceKey, to: destinationKey)
                    }
                case (.s3, .file):
                    let path = StorageCommand.filePath(destinationLocation, destinationKey)
                    try await StorageCommand.withStore(sourceLocation.url) { store in try await store.download(sourceKey, to: path) }
                case (.file, .s3):
                    let path = StorageCommand.filePath(sourceLocation, sourceKey)
                    try await StorageCommand.withStore(destinationLocation.url) { store in
                        try await store.upload(file: path, to: destinationKey, contentType: nil)
                    }
                case (.s3, .s3):
                    // Different buckets: through a temp file, never whole in memory.
                    let temp = FileManager.default.temporaryDirectory.appendingPathComponent("exchanger-cp-\(UUID().uuidString)").path
                    defer { try? FileManager.default.removeItem(atPath: temp) }
                    try await StorageCommand.withStore(sourceLocation.url) { store in try await store.download(sourceKey, to: temp) }
                    try await StorageCommand.withStore(destinationLocation.url) { store in
                        try await store.upload(file: temp, to: destinationKey, contentType: nil)
                    }
                }
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rm", abstract: "Delete an object (deleting a missing object is not an error).")
        @Argument(help: "Object URL.") var url: String

        func run() async throws {
            try await StorageCommand.reportingErrors {
                let (location, key) = try StorageLocation.parseObjectURL(url)
                try await StorageCommand.withStore(location.url) { store in try await store.delete(key) }
            }
        }
    }

    // MARK: - Helpers

    /// Opens a store, runs `body`, and always shuts the store down.
    static func withStore(_ url: String, _ body: (any ObjectStore) async throws -> Void) async throws {
        let store = try await ObjectStorage.open(url, logger: Logger(label: "exchanger.storage"))
        do {
            try await body(store)
        } catch {
            try? await store.shutdown()
            throw error
        }
        try await store.shutdown()
    }

    /// Prints storage errors as one clear line on stderr and exits with status 1.
    static func reportingErrors(_ body: () async throws -> Void) async throws {
        JSONLogHandler.bootstrapOnce(program: "exchanger")
        do {
            try await body()
        } catch let error as ObjectStorageError {
            FileHandle.standardError.write(Data("exchanger storage: \(error.message) [\(error.code)]\n".utf8))
            throw ExitCode(1)
        }
    }

    /// Where `ls` looks: (store location, key prefix).
    static func listingTarget(_ url: String) throws -> (StorageLocation, String) {
        let whole = try StorageLocation(url)
        switch whole.scheme {
        case .s3:
            return (StorageLocation(scheme: .s3, root: whole.root), url.hasSuffix("/") || whole.prefix.isEmpty ? whole.prefix : String(whole.prefix.dropLast()))
        case .file:
            var isDirectory: ObjCBool = false
            if url.hasSuffix("/") || whole.root == "/"
                || (FileManager.default.fileExists(atPath: whole.root, isDirectory: &isDirectory) && isDirectory.boolValue)
            {
                return (whole, "")
            }
            let parent = (whole.root as NSString).deletingLastPathComponent
            return (StorageLocation(scheme: .file, root: parent.isEmpty ? "/" : parent), (whole.root as NSString).lastPathComponent)
        }
    }

    static func filePath(_ location: StorageLocation, _ key: ObjectKey) -> String {
        location.root == "/" ? "/" + key.rawValue : location.root + "/" + key.rawValue
    }

    static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }
}

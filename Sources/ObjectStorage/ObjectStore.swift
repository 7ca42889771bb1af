import Foundation

/// A place objects live: a local directory (`file:///dir`) or an S3 bucket (`s3://bucket/prefix`).
///
/// Keys are ``ObjectKey`` values, relative to the store's root (the directory, or the bucket plus
/// an optional prefix). Every operation is safe to call concurrently.
public protocol ObjectStore: Sendable {
    /// Where this store points, as given to ``ObjectStorage/open(_:environment:logger:)``.
    var location: StorageLocation { get }

    /// Size, ETag and modification time of `key`; throws ``ObjectStorageError/Code/notFound`` when absent.
    func head(_ key: ObjectKey) async throws -> ObjectInfo

    /// The whole object in memory (for small objects: staged payloads, annotation JSON, text).
    func get(_ key: ObjectKey) async throws -> Data

    /// The object as a stream of chunks, without holding it in memory.
    func stream(_ key: ObjectKey) async throws -> ObjectByteStream

    /// Writes the object (atomically: readers see the old object or the new one, never a part).
    func put(_ key: ObjectKey, _ data: Data, contentType: String?) async throws

    /// Streams a local file into the object.
    func upload(file: String, to key: ObjectKey, contentType: String?) async throws

    /// Streams the object into a local file (written atomically).
    func download(_ key: ObjectKey, to file: String) async throws

    /// Server-side copy inside this store. Throws ``ObjectStorageError/Code/notFound`` when the source is absent.
    @discardableResult
    func copy(from source: ObjectKey, to destination: ObjectKey) async throws -> ObjectInfo

    /// Server-side copy in as few requests as the store allows (for S3 one CopyObject, without the
    /// HEAD that ``copy(from:to:)`` needs for the size). Returns the size when it came for free.
    /// Throws ``ObjectStorageError/Code/notFound`` when the source is absent.
    @discardableResult
    func quickCopy(from source: ObjectKey, to destination: ObjectKey) async throws -> Int64?

    /// Deletes the object; deleting a missing object is not an error.
    func delete(_ key: ObjectKey) async throws

    /// Every object whose key starts with `prefix` (a plain string prefix), in key order, paginated underneath.
    func list(prefix: String) -> AsyncThrowingStream<ObjectInfo, any Error>

    /// Checks that the store is there and lets this process in, without touching any object: a
    /// bucket that answers a listing with these credentials, a directory that exists (or can be
    /// created) and is writable. Throws the store's error (``ObjectStorageError/Code/accessDenied``,
    /// ``ObjectStorageError/Code/configuration``, ``ObjectStorageError/Code/notFound`` for a
    /// missing bucket, ``ObjectStorageError/Code/transient`` while it cannot be reached).
    func probe() async throws

    /// Releases connections; call once when done.
    func shutdown() async throws
}

extension ObjectStore {
    /// Lists at most one object under a prefix nothing uses: the listing needs the bucket and the
    /// credentials, and returns no object.
    public func probe() async throws {
        for try await _ in list(prefix: ".exchanger-probe/") { break }
    }

    public func put(_ key: ObjectKey, _ data: Data) async throws { try await put(key, data, contentType: nil) }
    @discardableResult
    public func quickCopy(from source: ObjectKey, to destination: ObjectKey) async throws -> Int64? {
        try await copy(from: source, to: destination).size
    }
    public func exists(_ key: ObjectKey) async throws -> Bool {
        do {
            _ = try await head(key)
            return true
        } catch let error as ObjectStorageError where error.code == .notFound {
            return false
        }
    }
}

/// A stream of an object's bytes, chunk by chunk.
public typealias ObjectByteStream = AsyncThrowingStream<[UInt8], any Error>

/// What ``ObjectStore/head(_:)`` and ``ObjectStore/list(prefix:)`` tell about an object.
public struct ObjectInfo: Sendable, Hashable {
    public var key: ObjectKey
    public var size: Int64
    public var etag: String?
    public var lastModified: Date?

    public init(key: ObjectKey, size: Int64, etag: String? = nil, lastModified: Date? = nil) {
        self.key = key
        self.size = size
        self.etag = etag
        self.lastModified = lastModified
    }
}

/// An object-storage operation failed.
public struct ObjectStorageError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable { case notFound, invalidKey, invalidURL, configuration, accessDenied, transient, failed }
        private let base: Base
        private init(_ base: Base) { self.base = base }
        /// The object (or bucket) does not exist.
        public static let notFound = Code(.notFound)
        /// A key was empty, had `..`, empty segments, a leading `/` or control characters.
        public static let invalidKey = Code(.invalidKey)
        /// A storage URL could not be understood.
        public static let invalidURL = Code(.invalidURL)
        /// Credentials, region or endpoint are missing or wrong.
        public static let configuration = Code(.configuration)
        /// The store refused the request (403, signature mismatch).
        public static let accessDenied = Code(.accessDenied)
        /// Worth retrying: 5xx, SlowDown, RequestTimeout, connection errors (after the client's own retries).
        public static let transient = Code(.transient)
        /// Any other failure (4xx, I/O errors): retrying will not help.
        public static let failed = Code(.failed)
        public var description: String { base.rawValue }
    }

    public var code: Code
    public var message: String
    /// The HTTP status or errno behind the error, when there is one.
    public var status: Int?

    public init(_ code: Code, _ message: String, status: Int? = nil) {
        self.code = code
        self.message = message
        self.status = status
    }

    public var description: String { "\(code): \(message)" }
    /// Whether retrying later may succeed.
    public var isTransient: Bool { code == .transient }
}

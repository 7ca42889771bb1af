import AsyncHTTPClient
import ConcurrencySupport
import Crypto
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// A store in an S3 bucket (`s3://bucket[/prefix]`), spoken to with our own SigV4 client over
/// AsyncHTTPClient: one pooled `HTTPClient` per store (call ``shutdown()`` once when done).
///
/// Every request is signed (SigV4, header auth, payload SHA-256 in `x-amz-content-sha256`) and
/// retried with full-jitter exponential backoff on 5xx, 429, SlowDown, RequestTimeout and
/// connection errors (``S3Configuration/retry``). Errors map to ``ObjectStorageError`` codes:
/// 404/NoSuchKey → `.notFound`, NoSuchBucket → `.configuration`, 403 → `.accessDenied`, other 4xx → `.failed`, retries
/// exhausted → `.transient`.
public final class S3ObjectStore: ObjectStore {
    public let location: StorageLocation
    public let configuration: S3Configuration
    /// The bucket.
    public var bucket: String { location.root }
    /// Prefix of every key in the bucket (empty or ending with `/`).
    var keyPrefix: String { location.prefix }

    let client: HTTPClient
    let logger: Logger
    private let endpointScheme: String
    /// `host[:port]` of the endpoint, as sent in the `Host` header.
    private let endpointHost: String
    private let virtualHosted: Bool

    /// How long a streamed transfer (``stream(_:)``, ``download(_:to:)``, ``upload(file:to:contentType:)``)
    /// may take in all; stalls are caught by the read/write timeouts (``S3Configuration/requestTimeout``).
    static let transferDeadline: TimeAmount = .hours(24)
    /// The largest body read into memory from an answer other than ``get(_:)``.
    static let maxResponseBody = 64 << 20

    /// A store for `location` (scheme `s3`).
    public init(location: StorageLocation, configuration: S3Configuration, logger: Logger = Logger(label: "exchanger.storage.s3")) {
        precondition(location.scheme == .s3, "S3ObjectStore needs an s3:// location")
        self.location = location
        self.configuration = configuration
        self.logger = logger

        let endpoint = configuration.endpoint
        let schemeEnd = endpoint.range(of: "://")
        endpointScheme = schemeEnd.map { String(endpoint[..<$0.lowerBound]).lowercased() } ?? "https"
        var host = schemeEnd.map { String(endpoint[$0.upperBound...]) } ?? endpoint
        if let slash = host.firstIndex(of: "/") { host = String(host[..<slash]) }
        endpointHost = host
        let dnsCompatible =
            !location.root.contains(".") && location.root == location.root.lowercased() && !location.root.contains("_")
        virtualHosted = configuration.addressing == .virtual && dnsCompatible

        var httpConfiguration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            timeout: HTTPClient.Configuration.Timeout(
                connect: .seconds(10), read: Self.timeAmount(configuration.requestTimeout), write: Self.timeAmount(configuration.requestTimeout)),
            connectionPool: HTTPClient.Configuration.ConnectionPool(
                idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: configuration.maxConnections),
            decompression: .disabled
        )
        httpConfiguration.httpVersion = .automatic
        // Our own retries (with backoff and an attempt limit) handle refused connections.
        httpConfiguration.connectionPool.retryConnectionEstablishment = false
        client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: httpConfiguration)
    }

    /// Closes the connection pool. Call exactly once, when done with the store.
    public func shutdown() async throws {
        try await client.shutdown()
    }

    // MARK: - Bucket

    /// Creates the bucket (PUT Bucket). A bucket that already exists and is ours is fine.
    public func createBucket() async throws {
        var body = Data()
        if configuration.region != "us-east-1" {
            body = Data(
                """
                <CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">\
                <LocationConstraint>\(S3XMLText.escape(configuration.region))</LocationConstraint></CreateBucketConfiguration>
                """.utf8)
        }
        do {
            _ = try await send(S3Request(method: .PUT, key: nil, body: body.isEmpty ? .empty : .data(body)), operation: "create bucket \(bucket)")
        } catch let error as ObjectStorageError where error.message.contains("BucketAlreadyOwnedByYou") {
            return
        }
    }

    // MARK: - Objects

    public func head(_ key: ObjectKey) async throws -> ObjectInfo {
        try await headObject(key).info
    }

    /// HEAD, with the content type.
    func headObject(_ key: ObjectKey) async throws -> (info: ObjectInfo, contentType: String?) {
        let response = try await send(S3Request(method: .HEAD, key: fullKey(key)), operation: "head \(key)")
        let headers = response.headers
        let size = headers.first(name: "content-length").flatMap { Int64($0) } ?? 0
        let info = ObjectInfo(
            key: key, size: size, etag: headers.first(name: "etag").map(S3XMLText.unquote),
            lastModified: headers.first(name: "last-modified").flatMap(S3XMLText.parseHTTPDate))
        return (info, headers.first(name: "content-type"))
    }

    public func get(_ key: ObjectKey) async throws -> Data {
        let request = S3Request(method: .GET, key: fullKey(key))
        return try await withRetries(operation: "get \(key)") { _ in
            let response = try await self.execute(request, operation: "get \(key)", deadline: Self.transferDeadline)
            var data = Data()
            if let length = response.headers.first(name: "content-length").flatMap(Int.init) { data.reserveCapacity(length) }
            for try await buffer in response.body { data.append(contentsOf: buffer.readableBytesView) }
            return data
        }
    }

    public func stream(_ key: ObjectKey) async throws -> ObjectByteStream {
        let request = S3Request(method: .GET, key: fullKey(key))
        let response = try await withRetries(operation: "get \(key)") { _ in
            try await self.execute(request, operation: "get \(key)", deadline: Self.transferDeadline)
        }
        let iterator = BodyIterator(response.body.makeAsyncIterator())
        return ObjectByteStream(unfolding: {
            do {
                guard let buffer = try await iterator.next() else { return nil }
                return Array(buffer.readableBytesView)
            } catch let error as ObjectStorageError {
                throw error
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                throw ObjectStorageError(.transient, "get \(key): the connection broke mid-stream: \(error)")
            }
        })
    }

    public func put(_ key: ObjectKey, _ data: Data, contentType: String?) async throws {
        var request = S3Request(method: .PUT, key: fullKey(key), body: .data(data))
        if let contentType { request.headers.append(("Content-Type", contentType)) }
        _ = try await send(request, operation: "put \(key)")
    }

    /// Streams the file in one PUT (at most 5 GiB, S3's single-upload limit). The payload is
    /// hashed first (one extra read of the file) so the signature covers it.
    public func upload(file: String, to key: ObjectKey, contentType: String?) async throws {
        let (size, hash) = try await FileIO.pool.run { try FileIO.sizeAndSHA256(path: file) }
        var request = S3Request(method: .PUT, key: fullKey(key), body: .file(path: file, size: size, sha256: hash))
        if let contentType { request.headers.append(("Content-Type", contentType)) }
        _ = try await send(request, operation: "upload \(key)", deadline: Self.transferDeadline)
    }

    public func download(_ key: ObjectKey, to file: String) async throws {
        let request = S3Request(method: .GET, key: fullKey(key))
        try await withRetries(operation: "download \(key)") { _ in
            let response = try await self.execute(request, operation: "download \(key)", deadline: Self.transferDeadline)
            let writer = try await FileIO.pool.run { try AtomicFileWriter(path: file) }
            do {
                var pending = Data()
                for try await buffer in response.body {
                    pending.append(contentsOf: buffer.readableBytesView)
                    if pending.count >= FileObjectStore.chunkSize {
                        let chunk = pending
                        pending = Data()
                        try await FileIO.pool.run { try writer.append(chunk) }
                    }
                }
                let rest = pending
                try await FileIO.pool.run {
                    try writer.append(rest)
                    try writer.commit()
                }
            } catch {
                writer.abort()
                throw error
            }
        }
    }

    /// Server-side copy: CopyObject up to ``S3Configuration/multipartCopyThreshold`` bytes,
    /// multipart copy above it.
    @discardableResult
    public func copy(from source: ObjectKey, to destination: ObjectKey) async throws -> ObjectInfo {
        let (sourceInfo, contentType) = try await headObject(source)
        if sourceInfo.size > configuration.multipartCopyThreshold {
            return try await multipartCopy(from: source, size: sourceInfo.size, contentType: contentType, to: destination)
        }
        let result = try await singleCopy(from: source, to: destination)
        return ObjectInfo(key: destination, size: sourceInfo.size, etag: result.etag, lastModified: result.lastModified)
    }

    /// One CopyObject without a HEAD first, while the multipart threshold is at least S3's 5 GiB
    /// single-copy limit: S3 refuses a larger source (400), and only then is the size looked up
    /// and the copy done in parts. Returns nil (the size is not in CopyObject's answer).
    @discardableResult
    public func quickCopy(from source: ObjectKey, to destination: ObjectKey) async throws -> Int64? {
        guard configuration.multipartCopyThreshold >= Self.singleCopyLimit else {
            return try await copy(from: source, to: destination).size
        }
        do {
            _ = try await singleCopy(from: source, to: destination)
            return nil
        } catch let error as ObjectStorageError where error.code == .failed && error.status == 400 {
            let (sourceInfo, contentType) = try await headObject(source)
            guard sourceInfo.size > Self.singleCopyLimit else { throw error }
            return try await multipartCopy(from: source, size: sourceInfo.size, contentType: contentType, to: destination).size
        }
    }

    /// The largest object one CopyObject copies (5 GiB).
    static let singleCopyLimit: Int64 = 5 * 1024 * 1024 * 1024

    private func singleCopy(from source: ObjectKey, to destination: ObjectKey) async throws -> S3CopyResult {
        let request = S3Request(method: .PUT, key: fullKey(destination), headers: [("x-amz-copy-source", copySource(source))])
        return try await withRetries(operation: "copy \(source) → \(destination)") { _ in
            let response = try await self.execute(request, operation: "copy \(source) → \(destination)", deadline: nil)
            let body = try await response.body.collect(upTo: Self.maxResponseBody)
            // A 200 may still carry an <Error>: the copy failed after the headers went out.
            return try S3CopyResult.parse(Data(buffer: body))
        }
    }

    public func delete(_ key: ObjectKey) async throws {
        // S3 answers 204 for a missing key too.
        _ = try await send(S3Request(method: .DELETE, key: fullKey(key)), operation: "delete \(key)")
    }

    public func list(prefix: String) -> AsyncThrowingStream<ObjectInfo, any Error> {
        let state = ListState()
        let fullPrefix = keyPrefix + prefix
        return AsyncThrowingStream(unfolding: {
            while true {
                if let next = state.pop() { return next }
                guard let token = state.nextPage() else { return nil }
                let page = try await self.listPage(prefix: fullPrefix, continuationToken: token)
                state.fill(page.entries.compactMap { self.objectInfo(page: $0) }, continuation: page.isTruncated ? page.nextContinuationToken : nil)
                if page.isTruncated && page.nextContinuationToken == nil {
                    throw ObjectStorageError(.failed, "ListObjectsV2 said the listing is truncated but gave no continuation token")
                }
            }
        })
    }

    /// One ListObjectsV2 page (`token` empty for the first).
    func listPage(prefix: String, continuationToken token: String) async throws -> ListObjectsPage {
        var query: [(String, String)] = [("list-type", "2"), ("max-keys", String(configuration.listPageSize))]
        if !prefix.isEmpty { query.append(("prefix", prefix)) }
        if !token.isEmpty { query.append(("continuation-token", token)) }
        let response = try await send(S3Request(method: .GET, key: nil, query: query), operation: "list \(prefix)")
        return try ListObjectsPage.parse(Data(buffer: response.body))
    }

    private func objectInfo(page entry: ListObjectsPage.Entry) -> ObjectInfo? {
        guard entry.key.hasPrefix(keyPrefix), let key = try? ObjectKey(String(entry.key.dropFirst(keyPrefix.count))) else {
            logger.warning("skipping an object whose name is not a valid key", metadata: ["key": "\(entry.key)"])
            return nil
        }
        return ObjectInfo(key: key, size: entry.size, etag: entry.etag, lastModified: entry.lastModified)
    }

    // MARK: - Requests

    /// The key in the bucket: the store's prefix plus `key`.
    func fullKey(_ key: ObjectKey) -> String { keyPrefix + key.rawValue }

    /// `x-amz-copy-source`: `/bucket/encoded-key`.
    func copySource(_ key: ObjectKey) -> String {
        "/\(bucket)/" + SigV4Signer.uriEncode(fullKey(key), encodeSlash: false)
    }

    /// The URL, `Host` header and encoded path of a request.
    func target(for request: S3Request) -> (url: String, host: String, path: String) {
        let encodedKey = request.key.map { SigV4Signer.uriEncode($0, encodeSlash: false) }
        let host: String
        let path: String
        if virtualHosted {
            host = "\(bucket).\(endpointHost)"
            path = "/" + (encodedKey ?? "")
        } else {
            host = endpointHost
            path = "/\(bucket)" + (encodedKey.map { "/" + $0 } ?? "")
        }
        let query = SigV4Signer.canonicalQuery(request.query)
        return ("\(endpointScheme)://\(host)\(path)" + (query.isEmpty ? "" : "?" + query), host, path)
    }

    /// Builds and signs the HTTP request of one attempt.
    func httpRequest(_ request: S3Request, date: Date = Date()) -> HTTPClientRequest {
        let (url, host, path) = target(for: request)
        let payloadHash: String
        switch request.body {
        case .empty: payloadHash = SigV4Signer.emptyPayloadHash
        case .data(let data): payloadHash = SigV4Signer.sha256Hex(data)
        case .file(_, _, let hash): payloadHash = hash
        }
        var headers: [(String, String)] = [
            ("Host", host), ("x-amz-date", SigV4Signer.timestamp(date)), ("x-amz-content-sha256", payloadHash),
        ]
        if let token = configuration.credentials.sessionToken { headers.append(("x-amz-security-token", token)) }
        headers += request.headers
        let signer = SigV4Signer(credentials: configuration.credentials, region: configuration.region, service: "s3")
        let signature = signer.sign(
            method: request.method.rawValue, encodedPath: path, query: request.query, headers: headers, payloadHash: payloadHash, date: date)

        var http = HTTPClientRequest(url: url)
        http.method = request.method
        for (name, value) in headers { http.headers.add(name: name, value: value) }
        http.headers.add(name: "Authorization", value: signature.authorization)
        switch request.body {
        case .empty:
            if request.method == .PUT || request.method == .POST { http.body = .bytes(ByteBuffer()) }
        case .data(let data):
            http.body = .bytes(ByteBuffer(data: data))
        case .file(let file, let size, _):
            http.body = .stream(FileChunks(path: file), length: .known(size))
        }
        return http
    }

    /// Sends a request with retries and reads the whole answer.
    func send(_ request: S3Request, operation: String, deadline: TimeAmount? = nil) async throws -> S3Response {
        try await withRetries(operation: operation) { _ in
            let response = try await self.execute(request, operation: operation, deadline: deadline)
            let body = request.method == .HEAD ? ByteBuffer() : try await response.body.collect(upTo: Self.maxResponseBody)
            return S3Response(status: Int(response.status.code), headers: response.headers, body: body)
        }
    }

    /// One attempt: sends the request and returns the answer when it is a 2xx, its body not yet
    /// read; an error answer is read and thrown as an ``S3RequestFailure``.
    func execute(_ request: S3Request, operation: String, deadline: TimeAmount?) async throws -> HTTPClientResponse {
        let http = httpRequest(request)
        let response = try await client.execute(
            http, timeout: deadline ?? Self.timeAmount(configuration.requestTimeout), logger: logger)
        let status = Int(response.status.code)
        if (200..<300).contains(status) { return response }
        let body = request.method == .HEAD ? ByteBuffer() : ((try? await response.body.collect(upTo: 1 << 20)) ?? ByteBuffer())
        let document = S3ErrorDocument.parse(Data(buffer: body))
        throw S3RequestFailure(status: status, document: document, operation: operation)
    }

    /// Runs `body` up to ``RetryPolicy/maxAttempts`` times, sleeping with full jitter between
    /// attempts, while it fails with a retryable error.
    func withRetries<T: Sendable>(operation: String, _ body: @Sendable (Int) async throws -> T) async throws -> T {
        let policy = configuration.retry
        var attempt = 1
        while true {
            let failure: ObjectStorageError
            do {
                return try await body(attempt)
            } catch let error as S3RequestFailure {
                failure = error.storageError
            } catch let error as ObjectStorageError {
                failure = error
            } catch is CancellationError {
                throw CancellationError()
            } catch let error as HTTPClientError where Self.permanentClientErrors.contains(error) {
                throw ObjectStorageError(.failed, "\(operation): \(error)")
            } catch {
                // Connection refused/reset/closed, timeouts: worth another try.
                failure = ObjectStorageError(.transient, "\(operation): \(error)")
            }
            guard failure.code == .transient else { throw failure }
            guard attempt < policy.maxAttempts else {
                throw ObjectStorageError(.transient, "\(failure.message) (gave up after \(attempt) attempts)", status: failure.status)
            }
            let delay = policy.delay(afterAttempt: attempt)
            logger.debug(
                "retrying S3 request",
                metadata: ["operation": "\(operation)", "attempt": "\(attempt)", "delay": "\(delay)", "error": "\(failure.message)"])
            try await Task.sleep(for: delay)
            attempt += 1
        }
    }

    private static let permanentClientErrors: [HTTPClientError] = [
        .invalidURL, .emptyHost, .emptyScheme, .alreadyShutdown, .cancelled, .missingSocketPath,
    ]

    static func timeAmount(_ duration: Duration) -> TimeAmount {
        let (seconds, attoseconds) = duration.components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

/// One S3 call, before signing.
struct S3Request: Sendable {
    enum Body: Sendable {
        case empty
        case data(Data)
        /// A local file streamed as the body, with its size and SHA-256.
        case file(path: String, size: Int64, sha256: String)
    }

    var method: HTTPMethod
    /// The object key in the bucket (prefix included); nil for bucket-level calls.
    var key: String?
    var query: [(String, String)] = []
    var headers: [(String, String)] = []
    var body: Body = .empty
}

/// A whole answer.
struct S3Response: Sendable {
    var status: Int
    var headers: HTTPHeaders
    var body: ByteBuffer
}

/// An error answer from S3.
struct S3RequestFailure: Error, CustomStringConvertible {
    var status: Int
    var document: S3ErrorDocument?
    var operation: String

    var storageError: ObjectStorageError { S3ErrorClassifier.error(status: status, document: document, operation: operation) }
    var description: String { storageError.description }
}

/// The response body's iterator, used by one consumer at a time.
private final class BodyIterator: @unchecked Sendable {
    private var iterator: HTTPClientResponse.Body.AsyncIterator

    init(_ iterator: HTTPClientResponse.Body.AsyncIterator) { self.iterator = iterator }

    func next() async throws -> ByteBuffer? {
        var current = iterator
        let buffer = try await current.next()
        iterator = current
        return buffer
    }
}

/// Pages of a listing, consumed one object at a time.
private final class ListState: @unchecked Sendable {
    private let lock = NSLock()
    private var buffer: [ObjectInfo] = []
    private var index = 0
    /// The continuation token of the next page: "" for the first, nil when done.
    private var token: String? = ""

    func pop() -> ObjectInfo? {
        lock.withLock {
            guard index < buffer.count else { return nil }
            defer { index += 1 }
            return buffer[index]
        }
    }

    func nextPage() -> String? { lock.withLock { token } }

    func fill(_ objects: [ObjectInfo], continuation: String?) {
        lock.withLock {
            buffer = objects
            index = 0
            token = continuation
        }
    }
}

/// A local file as a request body, read in 1 MiB chunks on blocking threads.
struct FileChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let path: String

    struct AsyncIterator: AsyncIteratorProtocol {
        let path: String
        var reader: FileReader?

        mutating func next() async throws -> ByteBuffer? {
            if reader == nil {
                let path = self.path
                let fd = try await FileIO.pool.run { try FileIO.openForReading(path, key: nil) }
                reader = FileReader(fd: fd, path: path)
            }
            guard let chunk = try await reader?.next() else { return nil }
            return ByteBuffer(bytes: chunk)
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(path: path, reader: nil) }
}

/// A file written atomically: a temp file beside it, fsynced and renamed on commit.
final class AtomicFileWriter: @unchecked Sendable {
    private let path: String
    private let temp: String
    private var fd: Int32

    init(path: String) throws {
        self.path = path
        let parent = (path as NSString).deletingLastPathComponent
        temp = (parent.isEmpty ? "." : parent) + "/" + FileObjectStore.tempFilePrefix + UUID().uuidString
        try FileIO.makeParents(of: path)
        fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileIO.error(errno, "create", temp) }
    }

    deinit { abort() }

    func append(_ data: Data) throws {
        try data.withUnsafeBytes { raw in try FileIO.writeAll(fd, raw, path: temp) }
    }

    func commit() throws {
        guard fsync(fd) == 0 else { throw FileIO.error(errno, "fsync", temp) }
        close(fd)
        fd = -1
        guard rename(temp, path) == 0 else {
            let error = FileIO.error(errno, "rename", path)
            unlink(temp)
            throw error
        }
    }

    /// Drops the temp file (no-op after commit).
    func abort() {
        guard fd >= 0 else { return }
        close(fd)
        fd = -1
        unlink(temp)
    }
}

extension FileIO {
    /// The size and hex SHA-256 of a local file (blocking).
    static func sizeAndSHA256(path: String) throws -> (Int64, String) {
        let fd = try openForReading(path, key: nil)
        defer { close(fd) }
        var hasher = SHA256()
        var size: Int64 = 0
        var buffer = [UInt8](repeating: 0, count: FileObjectStore.chunkSize)
        while true {
            let count = try read(fd, into: &buffer, path: path)
            if count == 0 { break }
            size += Int64(count)
            buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
        }
        return (size, SigV4Signer.hex(hasher.finalize()))
    }
}

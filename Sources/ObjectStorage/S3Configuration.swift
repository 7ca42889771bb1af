import Foundation

/// How the S3 client connects and behaves. Built from the environment by AWS conventions
/// (``init(environment:)``); credentials never come from code or the repository.
///
/// | variable | field | default |
/// |---|---|---|
/// | `AWS_ACCESS_KEY_ID` | ``credentials`` | — (required) |
/// | `AWS_SECRET_ACCESS_KEY` / `AWS_SECRET_ACCESS_KEY_FILE` | ``credentials`` | — (required) |
/// | `AWS_SESSION_TOKEN` / `AWS_SESSION_TOKEN_FILE` | ``credentials`` | none |
/// | `AWS_REGION`, else `AWS_DEFAULT_REGION` | ``region`` | `us-east-1` |
/// | `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL` | ``endpoint`` | `https://s3.{region}.amazonaws.com` |
/// | `EXCHANGER_S3_ADDRESSING` (`path`/`virtual`) | ``addressing`` | `path` with a custom endpoint, else `virtual` |
/// | `EXCHANGER_S3_MAX_ATTEMPTS` | ``retry`` | 5 |
/// | `EXCHANGER_S3_MULTIPART_COPY_THRESHOLD` (bytes) | ``multipartCopyThreshold`` | 5 GiB |
/// | `EXCHANGER_S3_MULTIPART_PART_SIZE` (bytes) | ``multipartPartSize`` | 512 MiB |
/// | `EXCHANGER_S3_REQUEST_TIMEOUT` (seconds) | ``requestTimeout`` | 60 |
/// | `EXCHANGER_S3_MAX_CONNECTIONS` | ``maxConnections`` | 64 |
/// | `EXCHANGER_S3_LIST_PAGE_SIZE` | ``listPageSize`` | 1000 |
public struct S3Configuration: Sendable, Hashable {
    /// Bucket addressing style.
    public enum Addressing: String, Sendable, Hashable {
        /// `https://endpoint/bucket/key`: what S3-compatible servers (moto, MinIO) expect.
        case path
        /// `https://bucket.endpoint/key`: what AWS recommends. Buckets whose name is not a DNS
        /// label fall back to path style.
        case virtual
    }

    /// The signing credentials.
    public var credentials: SigV4Signer.Credentials
    /// The signing region. Default `us-east-1`.
    public var region: String
    /// `scheme://host[:port]` of the S3 endpoint, without a trailing `/`. Default
    /// `https://s3.{region}.amazonaws.com`.
    public var endpoint: String
    /// Whether ``endpoint`` was set explicitly (a custom, S3-compatible endpoint).
    public var customEndpoint: Bool
    /// Bucket addressing. Default: `.path` with a custom endpoint, `.virtual` for AWS.
    public var addressing: Addressing
    /// Retries on 5xx, SlowDown, RequestTimeout and connection errors: 5 attempts, full-jitter
    /// backoff from 100 ms up to 5 s.
    public var retry: RetryPolicy
    /// Copies of objects larger than this many bytes use multipart copy. Default 5 GiB (the
    /// largest single CopyObject S3 allows).
    public var multipartCopyThreshold: Int64
    /// The part size of a multipart copy, 5 MiB … 5 GiB. Default 512 MiB.
    public var multipartPartSize: Int64
    /// How many parts of one multipart copy run at once. Default 4.
    public var multipartConcurrency: Int
    /// The deadline of one HTTP request (one attempt), headers and body. Default 60 s.
    public var requestTimeout: Duration
    /// The most connections the store keeps to the endpoint. Default 64.
    public var maxConnections: Int
    /// `max-keys` of one ListObjectsV2 page, 1 … 1000. Default 1000.
    public var listPageSize: Int

    public static let defaultRegion = "us-east-1"
    public static let defaultMultipartCopyThreshold: Int64 = 5 << 30
    public static let defaultMultipartPartSize: Int64 = 512 << 20
    /// S3's smallest part (all but the last part of a multipart upload).
    public static let minimumPartSize: Int64 = 5 << 20
    public static let maximumPartSize: Int64 = 5 << 30

    /// A configuration from its parts; every setting has its documented default.
    public init(
        credentials: SigV4Signer.Credentials,
        region: String = S3Configuration.defaultRegion,
        endpoint: String? = nil,
        addressing: Addressing? = nil,
        retry: RetryPolicy = RetryPolicy(),
        multipartCopyThreshold: Int64 = S3Configuration.defaultMultipartCopyThreshold,
        multipartPartSize: Int64 = S3Configuration.defaultMultipartPartSize,
        multipartConcurrency: Int = 4,
        requestTimeout: Duration = .seconds(60),
        maxConnections: Int = 64,
        listPageSize: Int = 1000
    ) {
        self.credentials = credentials
        self.region = region
        if let endpoint, !endpoint.isEmpty {
            var trimmed = endpoint
            while trimmed.hasSuffix("/") { trimmed.removeLast() }
            self.endpoint = trimmed
            self.customEndpoint = true
        } else {
            self.endpoint = "https://s3.\(region).amazonaws.com"
            self.customEndpoint = false
        }
        self.addressing = addressing ?? (customEndpoint ? .path : .virtual)
        self.retry = retry
        self.multipartCopyThreshold = multipartCopyThreshold
        self.multipartPartSize = multipartPartSize
        self.multipartConcurrency = max(1, multipartConcurrency)
        self.requestTimeout = requestTimeout
        self.maxConnections = max(1, maxConnections)
        self.listPageSize = min(max(1, listPageSize), 1000)
    }

    /// Reads the AWS variables and the `EXCHANGER_S3_*` settings (see the table above).
    /// Throws ``ObjectStorageError/Code/configuration`` when credentials are missing or a value is malformed.
    public init(environment: [String: String]) throws(ObjectStorageError) {
        func value(_ name: String) -> String? {
            guard let raw = environment[name]?.trimmingCharacters(in: .whitespacesAndNewlines), !raw.isEmpty else { return nil }
            return raw
        }
        func secret(_ name: String) throws(ObjectStorageError) -> String? {
            if let direct = value(name) { return direct }
            guard let path = value(name + "_FILE") else { return nil }
            let contents: String
            do {
                contents = try String(contentsOfFile: path, encoding: .utf8)
            } catch {
                throw ObjectStorageError(.configuration, "cannot read \(name)_FILE '\(path)': \(error.localizedDescription)")
            }
            let trimmed = contents.trimmingCharacters(in: .whitespacesAndNewlines)
            return trimmed.isEmpty ? nil : trimmed
        }
        func integer(_ name: String, in range: ClosedRange<Int64>) throws(ObjectStorageError) -> Int64? {
            guard let text = value(name) else { return nil }
            guard let number = Int64(text), range.contains(number) else {
                throw ObjectStorageError(.configuration, "\(name)='\(text)' is not an integer in \(range.lowerBound)...\(range.upperBound)")
            }
            return number
        }

        guard let accessKey = value("AWS_ACCESS_KEY_ID") else {
            throw ObjectStorageError(.configuration, "AWS_ACCESS_KEY_ID is not set: S3 needs credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
        }
        guard let secretKey = try secret("AWS_SECRET_ACCESS_KEY") else {
            throw ObjectStorageError(.configuration, "AWS_SECRET_ACCESS_KEY (or AWS_SECRET_ACCESS_KEY_FILE) is not set")
        }
        let credentials = SigV4Signer.Credentials(
            accessKeyID: accessKey, secretAccessKey: secretKey, sessionToken: try secret("AWS_SESSION_TOKEN"))
        let region = value("AWS_REGION") ?? value("AWS_DEFAULT_REGION") ?? Self.defaultRegion
        let endpoint = value("AWS_ENDPOINT_URL_S3") ?? value("AWS_ENDPOINT_URL")
        if let endpoint, !(endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://")) {
            throw ObjectStorageError(.configuration, "S3 endpoint '\(endpoint)' must start with http:// or https://")
        }
        var addressing: Addressing?
        if let text = value("EXCHANGER_S3_ADDRESSING") {
            switch text.lowercased() {
            case "path": addressing = .path
            case "virtual", "virtual-hosted", "virtual_hosted": addressing = .virtual
            default: throw ObjectStorageError(.configuration, "EXCHANGER_S3_ADDRESSING='\(text)': expected path or virtual")
            }
        }
        var timeout = Duration.seconds(60)
        if let text = value("EXCHANGER_S3_REQUEST_TIMEOUT") {
            guard let seconds = Double(text), seconds > 0, seconds <= 86_400 else {
                throw ObjectStorageError(.configuration, "EXCHANGER_S3_REQUEST_TIMEOUT='\(text)' is not a number of seconds")
            }
            timeout = .milliseconds(Int64((seconds * 1000).rounded()))
        }
        let partSize =
            try integer("EXCHANGER_S3_MULTIPART_PART_SIZE", in: Self.minimumPartSize...Self.maximumPartSize) ?? Self.defaultMultipartPartSize
        self.init(
            credentials: credentials,
            region: region,
            endpoint: endpoint,
            addressing: addressing,
            retry: RetryPolicy(maxAttempts: Int(try integer("EXCHANGER_S3_MAX_ATTEMPTS", in: 1...100) ?? 5)),
            multipartCopyThreshold: try integer("EXCHANGER_S3_MULTIPART_COPY_THRESHOLD", in: 0...(5 << 40)) ?? Self.defaultMultipartCopyThreshold,
            multipartPartSize: partSize,
            requestTimeout: timeout,
            maxConnections: Int(try integer("EXCHANGER_S3_MAX_CONNECTIONS", in: 1...10_000) ?? 64),
            listPageSize: Int(try integer("EXCHANGER_S3_LIST_PAGE_SIZE", in: 1...1000) ?? 1000)
        )
    }
}

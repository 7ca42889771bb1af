/// A parsed storage URL: `file:///absolute/dir` or `s3://bucket[/prefix]`.
///
/// URLs are taken literally (no percent-decoding), like the aws CLI does with `s3://` URLs.
/// With an S3 prefix, the store's keys are relative to it: `s3://b/tenant-a` + key `x/y.pdf` is
/// object `tenant-a/x/y.pdf` of bucket `b`.
public struct StorageLocation: Sendable, Hashable, CustomStringConvertible {
    /// The kind of store.
    public enum Scheme: String, Sendable, Hashable {
        /// A local directory.
        case file
        /// An S3 (or S3-compatible) bucket.
        case s3
    }

    public let scheme: Scheme
    /// The bucket name (`s3`) or the absolute directory path without trailing `/` (`file`; `/` for the root).
    public let root: String
    /// `s3` only: the key prefix every key is relative to, empty or ending with `/`.
    public let prefix: String

    /// Parses `file:///dir` (also `file://localhost/dir`, `file:/dir`) or `s3://bucket[/prefix]`;
    /// throws ``ObjectStorageError/Code/invalidURL``.
    public init(_ url: String) throws(ObjectStorageError) {
        if url.hasPrefix("s3://") {
            let rest = url.dropFirst("s3://".count)
            let bucket = rest.prefix { $0 != "/" }
            var prefix = String(rest.dropFirst(bucket.count).drop { $0 == "/" })
            try Self.validateBucket(String(bucket), url: url)
            if !prefix.isEmpty {
                if !prefix.hasSuffix("/") { prefix += "/" }
                do {
                    try ObjectKey.validate(String(prefix.dropLast()))
                } catch {
                    throw ObjectStorageError(.invalidURL, "invalid prefix in '\(url)': \(error.message)")
                }
            }
            self.init(scheme: .s3, root: String(bucket), prefix: prefix)
        } else if url.hasPrefix("file:") {
            var path = String(url.dropFirst("file:".count))
            if path.hasPrefix("//localhost/") {
                path = String(path.dropFirst("//localhost".count))
            } else if path.hasPrefix("///") {
                path = String(path.dropFirst(2))
            } else if path.hasPrefix("//") {
                throw ObjectStorageError(.invalidURL, "'\(url)': a file URL names a local absolute path: file:///dir")
            }
            guard path.hasPrefix("/") else {
                throw ObjectStorageError(.invalidURL, "'\(url)': a file URL needs an absolute path: file:///dir")
            }
            while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
            if path.contains("\0") { throw ObjectStorageError(.invalidURL, "'\(url)' contains a NUL byte") }
            self.init(scheme: .file, root: path, prefix: "")
        } else {
            throw ObjectStorageError(.invalidURL, "unsupported storage URL '\(url)': expected file:///dir or s3://bucket[/prefix]")
        }
    }

    /// A location from its parts; `prefix` (S3 only) gets a trailing `/` when it has none.
    public init(scheme: Scheme, root: String, prefix: String = "") {
        self.scheme = scheme
        self.root = root
        self.prefix = prefix.isEmpty || prefix.hasSuffix("/") ? prefix : prefix + "/"
    }

    /// Splits a full object URL into the store it lives in and its key:
    /// `s3://b/a/b.pdf` → (`s3://b`, `a/b.pdf`); `file:///d/a/b.pdf` → (`file:///d/a`, `b.pdf`)
    /// (a file object's store is its directory).
    public static func parseObjectURL(_ url: String) throws(ObjectStorageError) -> (StorageLocation, ObjectKey) {
        let whole = try StorageLocation(url)
        let key: String
        let location: StorageLocation
        switch whole.scheme {
        case .s3:
            guard !whole.prefix.isEmpty, !url.hasSuffix("/") else {
                throw ObjectStorageError(.invalidURL, "'\(url)' names a bucket or prefix, not an object")
            }
            key = String(whole.prefix.dropLast())
            location = StorageLocation(scheme: .s3, root: whole.root)
        case .file:
            guard whole.root != "/", !url.hasSuffix("/"), let slash = whole.root.lastIndex(of: "/") else {
                throw ObjectStorageError(.invalidURL, "'\(url)' names a directory, not an object")
            }
            key = String(whole.root[whole.root.index(after: slash)...])
            let directory = String(whole.root[..<slash])
            location = StorageLocation(scheme: .file, root: directory.isEmpty ? "/" : directory)
        }
        do {
            return (location, try ObjectKey(key))
        } catch {
            throw ObjectStorageError(.invalidURL, "'\(url)': \(error.message)")
        }
    }

    /// The URL this location was parsed from, normalised (`s3://bucket/prefix/`, `file:///dir`).
    public var url: String {
        switch scheme {
        case .s3: return "s3://\(root)/\(prefix)"
        case .file: return root == "/" ? "file:///" : "file://\(root)"
        }
    }

    /// The full URL of an object of this store.
    public func url(for key: ObjectKey) -> String {
        switch scheme {
        case .s3: return "s3://\(root)/\(prefix)\(key.rawValue)"
        case .file: return root == "/" ? "file:///\(key.rawValue)" : "file://\(root)/\(key.rawValue)"
        }
    }

    public var description: String { url }

    private static func validateBucket(_ bucket: String, url: String) throws(ObjectStorageError) {
        guard (1...255).contains(bucket.utf8.count) else {
            throw ObjectStorageError(.invalidURL, "'\(url)' has no bucket name: expected s3://bucket[/prefix]")
        }
        let allowed = bucket.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"):
                return true
            default: return false
            }
        }
        guard allowed else { throw ObjectStorageError(.invalidURL, "'\(bucket)' is not a valid bucket name (in '\(url)')") }
    }
}

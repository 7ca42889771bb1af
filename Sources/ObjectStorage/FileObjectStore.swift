import ConcurrencySupport
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A store in a local directory (`file:///dir`): key `a/b.pdf` is the file `dir/a/b.pdf`.
///
/// - Writes are atomic: the data goes to a temp file in the destination's directory, is
///   fsynced, then renamed over the destination (and the directory fsynced). Temp files are named
///   `.exchanger-tmp-…` and never listed; keys with a segment starting that way are refused.
/// - Copies clone the file (`FICLONE`) where the file system can, else use `copy_file_range`,
///   else read/write.
/// - Listing walks the tree under the prefix and returns keys in byte order, like S3.
/// - Deleting an object removes directories it leaves empty (up to the root).
///
/// - Symbolic links are never followed: an object, or a directory on the way to it below the
///   root, that is a link is refused (`accessDenied`, naming it), objects are opened with
///   `O_NOFOLLOW`, and listings (`lstat`) skip links. A link placed in the store cannot make it
///   read, overwrite or delete a file outside its root. (The check of the directories and the
///   open are two steps; the store assumes nobody swaps a directory for a link in between.)
///
/// All file I/O runs on the threads of ``FileIO/pool``, never on the cooperative pool.
/// A key cannot be both an object and a directory (`a` and `a/b`); that is the file system's rule.
public struct FileObjectStore: ObjectStore {
    public let location: StorageLocation
    /// The root directory (absolute path).
    public var directory: String { location.root }
    private let logger: Logger

    /// The name prefix of temp files, hidden from listings.
    public static let tempFilePrefix = ".exchanger-tmp-"
    /// Bytes per chunk of ``stream(_:)`` and of read/write copies. 1 MiB.
    public static let chunkSize = 1 << 20

    /// A store at `location` (scheme `file`). The directory is created on the first write.
    public init(location: StorageLocation, logger: Logger = Logger(label: "exchanger.storage.file")) {
        precondition(location.scheme == .file, "FileObjectStore needs a file:// location")
        self.location = location
        self.logger = logger
    }

    /// A store rooted at the absolute path `directory`.
    public init(directory: String, logger: Logger = Logger(label: "exchanger.storage.file")) {
        var path = directory
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        self.init(location: StorageLocation(scheme: .file, root: path), logger: logger)
    }

    /// The root directory exists (it is created when missing, as the first write would) and this
    /// process may write to it.
    public func probe() async throws {
        let root = directory
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: root, isDirectory: &isDirectory) {
            do {
                try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            } catch {
                throw ObjectStorageError(.configuration, "the store's directory \(root) does not exist and cannot be created: \(error.localizedDescription)")
            }
        } else if !isDirectory.boolValue {
            throw ObjectStorageError(.configuration, "the store's root \(root) is not a directory")
        }
        guard access(root, W_OK | X_OK) == 0 else {
            throw ObjectStorageError(.accessDenied, "this process may not write to the store's directory \(root)")
        }
    }

    /// The file behind `key`.
    public func path(for key: ObjectKey) throws(ObjectStorageError) -> String {
        for segment in key.rawValue.split(separator: "/") where segment.hasPrefix(Self.tempFilePrefix) {
            throw ObjectStorageError(.invalidKey, "key '\(key)' has a segment starting with '\(Self.tempFilePrefix)' (reserved for temp files)")
        }
        return directory == "/" ? "/" + key.rawValue : directory + "/" + key.rawValue
    }

    public func head(_ key: ObjectKey) async throws -> ObjectInfo {
        let path = try path(for: key)
        let root = directory
        return try await FileIO.pool.run {
            try FileIO.refuseLinks(below: root, to: path)
            return try FileIO.info(path: path, key: key)
        }
    }

    public func get(_ key: ObjectKey) async throws -> Data {
        let path = try path(for: key)
        let root = directory
        return try await FileIO.pool.run {
            try FileIO.refuseLinks(below: root, to: path)
            let fd = try FileIO.openForReading(path, key: key)
            defer { close(fd) }
            var data = Data()
            var buffer = [UInt8](repeating: 0, count: Self.chunkSize)
            while true {
                let count = try FileIO.read(fd, into: &buffer, path: path)
                if count == 0 { break }
                data.append(contentsOf: buffer[0..<count])
            }
            return data
        }
    }

    public func stream(_ key: ObjectKey) async throws -> ObjectByteStream {
        let path = try path(for: key)
        let root = directory
        let fd = try await FileIO.pool.run {
            try FileIO.refuseLinks(below: root, to: path)
            return try FileIO.openForReading(path, key: key)
        }
        let reader = FileReader(fd: fd, path: path)
        return ObjectByteStream(unfolding: { try await reader.next() })
    }

    public func put(_ key: ObjectKey, _ data: Data, contentType: String?) async throws {
        let path = try path(for: key)
        let root = directory
        try await FileIO.pool.run {
            try FileIO.refuseLinks(below: root, to: path)
            try FileIO.writeAtomically(to: path) { fd in
                try data.withUnsafeBytes { raw in try FileIO.writeAll(fd, raw, path: path) }
            }
        }
    }

    public func upload(file: String, to key: ObjectKey, contentType: String?) async throws {
        let path = try path(for: key)
        let root = directory
        try await FileIO.pool.run {
            try FileIO.refuseLinks(below: root, to: path)
            let source = try FileIO.openForReading(file, key: nil)
            defer { close(source) }
            try FileIO.writeAtomically(to: path) { fd in try FileIO.copyContents(from: source, to: fd, path: file) }
        }
    }

    public func download(_ key: ObjectKey, to file: String) async throws {
        let path = try path(for: key)
        let root = directory
        try await FileIO.pool.run {
            try FileIO.refuseLinks(below: root, to: path)
            let source = try FileIO.openForReading(path, key: key)
            defer { close(source) }
            try FileIO.writeAtomically(to: file) { fd in try FileIO.copyContents(from: source, to: fd, path: path) }
        }
    }

    @discardableResult
    public func copy(from source: ObjectKey, to destination: ObjectKey) async throws -> ObjectInfo {
        let sourcePath = try path(for: source)
        let destinationPath = try path(for: destination)
        let root = directory
        return try await FileIO.pool.run {
            try FileIO.refuseLinks(below: root, to: sourcePath)
            try FileIO.refuseLinks(below: root, to: destinationPath)
            let fd = try FileIO.openForReading(sourcePath, key: source)
            defer { close(fd) }
            try FileIO.writeAtomically(to: destinationPath) { out in try FileIO.copyContents(from: fd, to: out, path: sourcePath) }
            return try FileIO.info(path: destinationPath, key: destination)
        }
    }

    public func delete(_ key: ObjectKey) async throws {
        let path = try path(for: key)
        let root = directory
        try await FileIO.pool.run {
            try FileIO.refuseLinks(below: root, to: path)
            if unlink(path) != 0 {
                let code = errno
                // Missing (or a directory, which is not an object): nothing to delete.
                guard code == ENOENT || code == ENOTDIR || code == EISDIR || code == EPERM && FileIO.isDirectory(path) else {
                    throw FileIO.error(code, "delete", path)
                }
                return
            }
            // Remove the directories the object leaves empty, up to (not including) the root.
            var parent = (path as NSString).deletingLastPathComponent
            while parent.count > root.count, parent.hasPrefix(root), rmdir(parent) == 0 {
                parent = (parent as NSString).deletingLastPathComponent
            }
        }
    }

    public func list(prefix: String) -> AsyncThrowingStream<ObjectInfo, any Error> {
        let root = directory
        let logger = self.logger
        return AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    let objects = try await FileIO.pool.run { try FileIO.walk(root: root, prefix: prefix, logger: logger) }
                    for object in objects {
                        try Task.checkCancellation()
                        continuation.yield(object)
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// Nothing to release.
    public func shutdown() async throws {}
}

/// Reads a file chunk by chunk on blocking threads; closes it at the end or when dropped.
final class FileReader: @unchecked Sendable {
    private let lock = NSLock()
    private var fd: Int32
    private let path: String

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { if fd >= 0 { close(fd) } }

    func next() async throws -> [UInt8]? {
        try await FileIO.pool.run { [self] in
            try lock.withLock {
                guard fd >= 0 else { return nil }
                var buffer = [UInt8](repeating: 0, count: FileObjectStore.chunkSize)
                let count: Int
                do {
                    count = try FileIO.read(fd, into: &buffer, path: path)
                } catch {
                    close(fd)
                    fd = -1
                    throw error
                }
                if count == 0 {
                    close(fd)
                    fd = -1
                    return nil
                }
                buffer.removeSubrange(count...)
                return buffer
            }
        }
    }
}

/// Blocking POSIX file operations behind both stores (call them on ``FileIO/pool``).
enum FileIO {
    /// The threads every blocking file call of this process runs on: `EXCHANGER_FILE_IO_THREADS`
    /// (default 16; more threads keep more copies and fsyncs in flight at once).
    static let pool = BlockingPool(
        name: "file-io",
        threads: ProcessInfo.processInfo.environment["EXCHANGER_FILE_IO_THREADS"].flatMap { Int($0) }.map { min(max($0, 1), 256) } ?? 16)

    /// Whether writes are fsynced (the file, then its directory after the rename) before they count
    /// as done: `EXCHANGER_FILE_STORE_FSYNC` (default `true`). `false` keeps writes atomic (rename)
    /// but a power loss may lose the last ones; for throw-away stores and benchmarks only.
    static let durable = ProcessInfo.processInfo.environment["EXCHANGER_FILE_STORE_FSYNC"].map { $0 != "false" && $0 != "0" } ?? true

    /// The storage error for `errno` `code`: a missing file is `notFound`; permissions and a
    /// read-only file system are `accessDenied` (an operator fixes them); a full disk or quota,
    /// an I/O error, and running out of descriptors, memory or time are `transient` — the
    /// document is retried once the disk has room, never dead-lettered for it; anything else fails.
    static func error(_ code: Int32, _ operation: String, _ path: String) -> ObjectStorageError {
        let reason = String(cString: strerror(code))
        switch code {
        case ENOENT, ENOTDIR: return ObjectStorageError(.notFound, "\(operation) \(path): \(reason)", status: Int(code))
        case EACCES, EPERM, EROFS: return ObjectStorageError(.accessDenied, "\(operation) \(path): \(reason)", status: Int(code))
        case ENOSPC, EDQUOT, EIO, EAGAIN, EINTR, EMFILE, ENFILE, ENOMEM, EBUSY, ETIMEDOUT, ESTALE:
            return ObjectStorageError(.transient, "\(operation) \(path): \(reason)", status: Int(code))
        default: return ObjectStorageError(.failed, "\(operation) \(path): \(reason)", status: Int(code))
        }
    }

    static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    /// Refuses `path` when a directory on the way to it below `root` is a symbolic link (the
    /// object itself is checked by its open or `lstat`). Components that do not exist yet end the
    /// check: they will be created as directories.
    static func refuseLinks(below root: String, to path: String) throws(ObjectStorageError) {
        guard path.hasPrefix(root) else { throw ObjectStorageError(.invalidKey, "\(path) is not below the store's root \(root)") }
        var current = root == "/" ? "" : root
        let components = path.dropFirst(root.count).split(separator: "/")
        for component in components.dropLast() {
            current += "/" + component
            var info = stat()
            guard lstat(current, &info) == 0 else { return }
            if (info.st_mode & S_IFMT) == S_IFLNK {
                throw ObjectStorageError(.accessDenied, "\(current) is a symbolic link; the file store does not follow links out of its root")
            }
        }
    }

    /// Opens a regular file for reading; a missing file (or a directory) is `.notFound`.
    static func openForReading(_ path: String, key: ObjectKey?) throws(ObjectStorageError) -> Int32 {
        var fd: Int32
        let flags = O_RDONLY | O_CLOEXEC | (key == nil ? 0 : O_NOFOLLOW)
        repeat { fd = open(path, flags) } while fd < 0 && errno == EINTR
        guard fd >= 0 else {
            let code = errno
            if code == ELOOP, let key {
                throw ObjectStorageError(.accessDenied, "object '\(key)' is a symbolic link; the file store does not follow links", status: Int(code))
            }
            if code == ENOENT || code == ENOTDIR, let key {
                throw ObjectStorageError(.notFound, "no object '\(key)'", status: Int(code))
            }
            throw error(code, "open", path)
        }
        var info = stat()
        if fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR {
            close(fd)
            throw ObjectStorageError(.notFound, key.map { "no object '\($0)' (a directory)" } ?? "\(path) is a directory", status: Int(EISDIR))
        }
        return fd
    }

    static func info(path: String, key: ObjectKey) throws(ObjectStorageError) -> ObjectInfo {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            let code = errno
            if code == ENOENT || code == ENOTDIR { throw ObjectStorageError(.notFound, "no object '\(key)'", status: Int(code)) }
            throw error(code, "lstat", path)
        }
        if (info.st_mode & S_IFMT) == S_IFLNK {
            throw ObjectStorageError(.accessDenied, "object '\(key)' is a symbolic link; the file store does not follow links")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw ObjectStorageError(.notFound, "no object '\(key)' (not a regular file)") }
        return objectInfo(key: key, info)
    }

    static func objectInfo(key: ObjectKey, _ info: stat) -> ObjectInfo {
        #if canImport(Darwin)
        let time = info.st_mtimespec
        #else
        let time = info.st_mtim
        #endif
        let modified = Date(timeIntervalSince1970: Double(time.tv_sec) + Double(time.tv_nsec) / 1e9)
        return ObjectInfo(key: key, size: Int64(info.st_size), etag: nil, lastModified: modified)
    }

    static func read(_ fd: Int32, into buffer: inout [UInt8], path: String) throws(ObjectStorageError) -> Int {
        while true {
            let count = buffer.withUnsafeMutableBytes { systemRead(fd, $0.baseAddress, $0.count) }
            if count >= 0 { return count }
            if errno != EINTR { throw error(errno, "read", path) }
        }
    }

    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws(ObjectStorageError) {
        var offset = 0
        while offset < bytes.count {
            let written = write(fd, bytes.baseAddress.map { $0 + offset }, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                throw error(errno, "write", path)
            }
            offset += written
        }
    }

    /// Creates `path`'s parent directories (like `mkdir -p`).
    static func makeParents(of path: String) throws(ObjectStorageError) {
        let parent = (path as NSString).deletingLastPathComponent
        guard !parent.isEmpty, parent != "/" else { return }
        var info = stat()
        if stat(parent, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFDIR else {
                throw ObjectStorageError(.failed, "\(parent) exists and is not a directory", status: Int(ENOTDIR))
            }
            return
        }
        try makeParents(of: parent)
        if mkdir(parent, 0o755) != 0 && errno != EEXIST { throw error(errno, "mkdir", parent) }
    }

    /// Writes a file atomically: `body` fills a temp file next to `path`, which is fsynced and renamed over it.
    static func writeAtomically(to path: String, _ body: (Int32) throws -> Void) throws {
        let parent = (path as NSString).deletingLastPathComponent
        let temp = (parent.isEmpty ? "." : parent) + "/" + FileObjectStore.tempFilePrefix + UUID().uuidString
        var fd: Int32 = -1
        // A concurrent delete may remove a just-created empty parent directory: try again.
        for attempt in 1...5 {
            try makeParents(of: path)
            fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            if fd >= 0 { break }
            let code = errno
            if (code == ENOENT || code == EINTR) && attempt < 5 { continue }
            throw error(code, "create", temp)
        }
        do {
            try body(fd)
            if durable { guard fsync(fd) == 0 else { throw error(errno, "fsync", temp) } }
            guard close(fd) == 0 else {
                fd = -1
                throw error(errno, "close", temp)
            }
            fd = -1
            guard rename(temp, path) == 0 else { throw error(errno, "rename", path) }
        } catch {
            if fd >= 0 { close(fd) }
            unlink(temp)
            throw error
        }
        // Make the rename durable.
        guard durable else { return }
        let directoryFD = open(parent.isEmpty ? "." : parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryFD >= 0 {
            _ = fsync(directoryFD)
            close(directoryFD)
        }
    }

    /// Copies the rest of `source` into `destination`: a reflink clone where the file system
    /// supports one, else `copy_file_range` (in-kernel), else read/write.
    static func copyContents(from source: Int32, to destination: Int32, path: String) throws {
        #if os(Linux)
        // FICLONE = _IOW(0x94, 9, int): share the extents (btrfs, XFS, bcachefs…). Only valid for a whole
        // file from offset 0, which is what every caller copies.
        if ioctl(destination, UInt(0x4004_9409), source) == 0 { return }
        var copied = 0
        while let copyFileRange = Self.copyFileRange {
            let count = copyFileRange(source, nil, destination, nil, 1 << 30, 0)
            if count > 0 {
                copied += count
                continue
            }
            if count == 0 { return }
            let code = errno
            if code == EINTR { continue }
            if copied == 0 && (code == EXDEV || code == ENOSYS || code == EINVAL || code == EOPNOTSUPP || code == EBADF) { break }
            throw error(code, "copy_file_range", path)
        }
        #endif
        var buffer = [UInt8](repeating: 0, count: FileObjectStore.chunkSize)
        while true {
            let count = try read(source, into: &buffer, path: path)
            if count == 0 { return }
            try buffer.withUnsafeBytes { raw in
                try writeAll(destination, UnsafeRawBufferPointer(rebasing: raw[0..<count]), path: path)
            }
        }
    }

    #if os(Linux)
    private typealias CopyFileRange = @convention(c) (Int32, UnsafeMutablePointer<Int64>?, Int32, UnsafeMutablePointer<Int64>?, Int, UInt32) -> Int
    /// glibc's `copy_file_range` (2.27+), looked up at run time: Swift's Glibc module does not export it.
    private static let copyFileRange: CopyFileRange? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "copy_file_range") else { return nil }
        return unsafeBitCast(symbol, to: CopyFileRange.self)
    }()
    #endif

    /// Every regular file under `root` whose key starts with `prefix`, in key (byte) order.
    static func walk(root: String, prefix: String, logger: Logger) throws -> [ObjectInfo] {
        // Start at the deepest directory the prefix names.
        var start = ""
        if let slash = prefix.lastIndex(of: "/") { start = String(prefix[..<slash]) }
        var results: [ObjectInfo] = []
        func visit(_ relative: String) throws {
            try Task.checkCancellation()
            let absolute = relative.isEmpty ? root : (root == "/" ? "/" + relative : root + "/" + relative)
            guard let handle = opendir(absolute) else {
                let code = errno
                if code == ENOENT || code == ENOTDIR { return }
                throw error(code, "opendir", absolute)
            }
            defer { closedir(handle) }
            var names: [String] = []
            while let entry = readdir(handle) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name == "." || name == ".." || name.hasPrefix(FileObjectStore.tempFilePrefix) { continue }
                names.append(name)
            }
            for name in names {
                let childRelative = relative.isEmpty ? name : relative + "/" + name
                // Prune subtrees that cannot hold a key with this prefix.
                if !(childRelative.hasPrefix(prefix) || prefix.hasPrefix(childRelative + "/") || prefix.hasPrefix(childRelative)) {
                    continue
                }
                let childAbsolute = root == "/" ? "/" + childRelative : root + "/" + childRelative
                var info = stat()
                guard lstat(childAbsolute, &info) == 0 else { continue }  // vanished meanwhile
                if (info.st_mode & S_IFMT) == S_IFLNK {
                    logger.warning("skipping a symbolic link in the file store", metadata: ["path": "\(childAbsolute)"])
                    continue
                }
                switch info.st_mode & S_IFMT {
                case S_IFDIR:
                    try visit(childRelative)
                case S_IFREG:
                    guard childRelative.hasPrefix(prefix) else { continue }
                    guard let key = try? ObjectKey(childRelative) else {
                        logger.warning("skipping a file whose name is not a valid key", metadata: ["path": "\(childAbsolute)"])
                        continue
                    }
                    results.append(objectInfo(key: key, info))
                default:
                    continue
                }
            }
        }
        try visit(start)
        results.sort { $0.key.rawValue.utf8.lexicographicallyPrecedes($1.key.rawValue.utf8) }
        return results
    }
}

#if canImport(Glibc)
private let systemRead = Glibc.read
#elseif canImport(Darwin)
private let systemRead = Darwin.read
#endif

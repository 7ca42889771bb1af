import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// An append-only log file rotated by size the way supervisord does it: when the next lines would
/// take the file past `maxBytes`, `file.N-1` → `file.N`, …, `file` → `file.1` (the oldest is
/// replaced) and a fresh `file` is opened. With `maxBytes` 0 it never rotates; with `backups` 0 it
/// is truncated instead of kept. Files are created with mode 0644, their directory if needed.
///
/// Lines are never split across files (a single line longer than `maxBytes` gets a file of its
/// own). ``reopen()`` is for an external `logrotate` that moved the file (SIGUSR2). One instance
/// may be shared by every instance of a program; appends are serialized by a lock.
public final class RotatingLogFile: Sendable {
    /// The file's path.
    public let path: String
    /// Rotate before the file would exceed this size; 0 never rotates.
    public let maxBytes: Int
    /// How many rotated files to keep; 0 truncates the file instead.
    public let backups: Int

    private struct State {
        var fd: Int32
        var size: Int
    }

    private let state: Mutex<State>

    /// Opens (creating it and its directory if needed) the file at `path` for appending.
    /// - Parameters:
    ///   - path: the file.
    ///   - maxBytes: the size at which it rotates (supervisord's `stdout_logfile_maxbytes`, default
    ///     50 MiB); 0 never rotates.
    ///   - backups: rotated files kept (`stdout_logfile_backups`, default 10); 0 truncates instead.
    public init(path: String, maxBytes: Int = 50 * 1024 * 1024, backups: Int = 10) throws(LogFileError) {
        guard !path.isEmpty else { throw LogFileError(.invalidArgument, "a log file needs a path") }
        guard maxBytes >= 0, backups >= 0 else {
            throw LogFileError(.invalidArgument, "\(path): maxBytes and backups must not be negative")
        }
        self.path = path
        self.maxBytes = maxBytes
        self.backups = backups
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty {
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            } catch {
                throw LogFileError(.open, "cannot create the directory of \(path): \(error)")
            }
        }
        let (fd, size) = try Self.open(path)
        state = Mutex(State(fd: fd, size: size))
    }

    deinit {
        state.withLock { state in
            if state.fd >= 0 { closeDescriptor(state.fd) }
        }
    }

    /// The current file's size as this object counts it.
    public var size: Int { state.withLock { $0.size } }

    /// Appends whole lines (each ending in `\n`), rotating between lines as needed.
    public func append(_ bytes: UnsafeRawBufferPointer) throws(LogFileError) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        try state.withLock { (state: inout State) throws(LogFileError) in
            guard state.fd >= 0 else { throw LogFileError(.closed, "\(path) is closed") }
            var offset = 0
            while offset < bytes.count {
                let remaining = bytes.count - offset
                var chunk = remaining
                if maxBytes > 0, state.size + remaining > maxBytes {
                    // The lines that still fit; at least one line when the file is empty.
                    let room = maxBytes - state.size
                    chunk = room > 0 ? Self.lastNewline(in: base + offset, count: min(room, remaining)) : 0
                    if chunk == 0 {
                        if state.size > 0, actualSize(&state) > 0 {
                            try rotate(&state)
                            continue
                        }
                        chunk = Self.firstLine(in: base + offset, count: remaining)
                    }
                }
                try write(state.fd, base + offset, chunk)
                state.size += chunk
                offset += chunk
            }
        }
    }

    /// Appends whole lines (each ending in `\n`).
    public func append(_ bytes: [UInt8]) throws(LogFileError) {
        var failure: LogFileError?
        bytes.withUnsafeBytes { buffer in
            do throws(LogFileError) { try append(buffer) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Appends one line; a newline is added when it does not end in one.
    public func append(line: String) throws(LogFileError) {
        var bytes = Array(line.utf8)
        if bytes.last != UInt8(ascii: "\n") { bytes.append(UInt8(ascii: "\n")) }
        try append(bytes)
    }

    /// Closes and opens the path again, creating a fresh file when it was moved away (SIGUSR2
    /// after an external logrotate).
    public func reopen() throws(LogFileError) {
        try state.withLock { (state: inout State) throws(LogFileError) in
            if state.fd >= 0 { closeDescriptor(state.fd) }
            state.fd = -1
            let (fd, size) = try Self.open(path)
            state.fd = fd
            state.size = size
        }
    }

    /// Rotates now, whatever the size.
    public func rotate() throws(LogFileError) {
        try state.withLock { (state: inout State) throws(LogFileError) in try rotate(&state) }
    }

    /// Closes the file; later appends fail.
    public func close() {
        state.withLock { state in
            if state.fd >= 0 { closeDescriptor(state.fd) }
            state.fd = -1
        }
    }

    /// The path of the `index`-th rotated file (`path.1`, `path.2`, …).
    public func backupPath(_ index: Int) -> String { "\(path).\(index)" }

    private func rotate(_ state: inout State) throws(LogFileError) {
        if backups == 0 {
            guard state.fd >= 0 else { throw LogFileError(.closed, "\(path) is closed") }
            guard ftruncate(state.fd, 0) == 0 else { throw LogFileError(.rotate, "cannot truncate \(path): \(errorText())") }
            state.size = 0
            return
        }
        if state.fd >= 0 { closeDescriptor(state.fd) }
        state.fd = -1
        for index in stride(from: backups - 1, through: 1, by: -1) where access(backupPath(index), F_OK) == 0 {
            guard rename(backupPath(index), backupPath(index + 1)) == 0 else {
                throw LogFileError(.rotate, "cannot rename \(backupPath(index)): \(errorText())")
            }
        }
        if rename(path, backupPath(1)) != 0, errno != ENOENT {
            let failure = errorText()
            // Keep writing to the same file rather than not at all.
            if let (fd, size) = try? Self.open(path) {
                state.fd = fd
                state.size = size
            }
            throw LogFileError(.rotate, "cannot rename \(path): \(failure)")
        }
        let (fd, size) = try Self.open(path)
        state.fd = fd
        state.size = size
    }

    /// The size on disk (another process may have truncated the file); updates the count.
    private func actualSize(_ state: inout State) -> Int {
        var info = stat()
        if fstat(state.fd, &info) == 0 { state.size = Int(info.st_size) }
        return state.size
    }

    private func write(_ fd: Int32, _ pointer: UnsafeRawPointer, _ count: Int) throws(LogFileError) {
        var written = 0
        while written < count {
            let result = writeDescriptor(fd, pointer + written, count - written)
            if result > 0 {
                written += result
            } else if result < 0, errno == EINTR {
                continue
            } else {
                throw LogFileError(.write, "cannot write to \(path): \(errorText())")
            }
        }
    }

    private static func open(_ path: String) throws(LogFileError) -> (Int32, Int) {
        let fd = openForAppending(path)
        guard fd >= 0 else { throw LogFileError(.open, "cannot open \(path): \(errorText())") }
        var info = stat()
        let size = fstat(fd, &info) == 0 ? Int(info.st_size) : 0
        return (fd, size)
    }

    /// The length up to and including the last newline within `count` bytes, or 0.
    private static func lastNewline(in pointer: UnsafeRawPointer, count: Int) -> Int {
        let bytes = pointer.assumingMemoryBound(to: UInt8.self)
        var index = count - 1
        while index >= 0 {
            if bytes[index] == UInt8(ascii: "\n") { return index + 1 }
            index -= 1
        }
        return 0
    }

    /// The length of the first line including its newline (everything when there is none).
    private static func firstLine(in pointer: UnsafeRawPointer, count: Int) -> Int {
        guard let found = memchr(pointer, Int32(UInt8(ascii: "\n")), count) else { return count }
        return pointer.distance(to: UnsafeRawPointer(found)) + 1
    }
}

/// An error of a log file.
public struct LogFileError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable { case invalidArgument, open, read, write, rotate, closed }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// A path or size is not acceptable.
        public static let invalidArgument = Code(.invalidArgument)
        /// The file or its directory cannot be created or opened.
        public static let open = Code(.open)
        /// Reading failed.
        public static let read = Code(.read)
        /// Writing failed (disk full, I/O error).
        public static let write = Code(.write)
        /// Renaming or truncating for rotation failed.
        public static let rotate = Code(.rotate)
        /// The file was closed.
        public static let closed = Code(.closed)

        /// The code's name.
        public var description: String { base.rawValue }
    }

    /// What went wrong.
    public var code: Code
    /// Which file and why, for people.
    public var message: String

    /// An error with its code and message.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// `code: message`.
    public var description: String { "\(code): \(message)" }
}

private func errorText(_ number: Int32 = errno) -> String { String(cString: strerror(number)) }

// The system calls by other names: inside the class, `open`, `write` and `close` are its methods.
private func closeDescriptor(_ fd: Int32) { _ = close(fd) }
private func writeDescriptor(_ fd: Int32, _ pointer: UnsafeRawPointer, _ count: Int) -> Int { write(fd, pointer, count) }
private func openForAppending(_ path: String) -> Int32 { open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644) }

import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Log levels in increasing severity, as swift-log names them.
public enum LogLevel: Int, Sendable, Hashable, Comparable, CaseIterable, CustomStringConvertible {
    case trace, debug, info, notice, warning, error, critical

    /// The level named `name` (case-insensitive; `warn`, `err`, `fatal` accepted as aliases).
    public init?(name: String) {
        switch name.lowercased() {
        case "trace": self = .trace
        case "debug": self = .debug
        case "info": self = .info
        case "notice": self = .notice
        case "warning", "warn": self = .warning
        case "error", "err": self = .error
        case "critical", "fatal", "crit": self = .critical
        default: return nil
        }
    }

    /// The level's name, as swift-log writes it.
    public var description: String { Self.names[rawValue] }

    private static let names = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    /// Less severe.
    public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// One line of a log stream, parsed: a JSON object's top-level fields (keys decoded, values as
/// written), or a line that is not a JSON object.
public struct LogRecord: Sendable {
    /// The line as read (without its newline).
    public let line: [UInt8]
    /// The top-level fields, in order; empty when ``isJSON`` is false.
    public let fields: [(key: String, value: [UInt8])]
    /// Whether the line is a JSON object.
    public let isJSON: Bool

    /// Parses `line` (without its newline; a trailing `\r` is ignored).
    public init(_ line: [UInt8]) {
        self.line = line
        var scratch: [JSONObjectScanner.Field] = []
        var parsed: [(key: String, value: [UInt8])] = []
        let isJSON = line.withUnsafeBufferPointer { buffer -> Bool in
            var count = buffer.count
            if count > 0, buffer[count - 1] == UInt8(ascii: "\r") { count -= 1 }
            let trimmed = UnsafeBufferPointer(rebasing: buffer[0..<count])
            guard JSONObjectScanner.scan(trimmed, fields: &scratch) else { return false }
            for field in scratch {
                let key = JSONObjectScanner.decodeStringContents(UnsafeBufferPointer(rebasing: trimmed[field.key])) ?? ""
                parsed.append((key, Array(trimmed[field.value])))
            }
            return true
        }
        self.isJSON = isJSON
        self.fields = parsed
    }

    /// Parses a string line.
    public init(_ line: String) { self.init(Array(line.utf8)) }

    /// The raw JSON value of the first field named `key`.
    public func raw(_ key: String) -> [UInt8]? { fields.first { $0.key == key }?.value }

    /// The field `key` as text: a string decoded, any other value as written; nil when absent or null.
    public func text(_ key: String) -> String? {
        guard let raw = raw(key) else { return nil }
        return Self.text(of: raw)
    }

    /// A raw JSON value as text: strings decoded, `null` as nil, anything else as written.
    static func text(of raw: [UInt8]) -> String? {
        if raw.first == UInt8(ascii: "\"") {
            return raw.withUnsafeBufferPointer { JSONObjectScanner.decodeString($0) }
        }
        if raw.elementsEqual("null".utf8) { return nil }
        return String(decoding: raw, as: UTF8.self)
    }

    /// The record's level (`level` field); nil when absent or unknown.
    public var level: LogLevel? { text("level").flatMap(LogLevel.init(name:)) }
}

/// Which lines `exchanger logs` shows: every condition set must hold. A line that is not a JSON
/// object passes only when no field condition is set (``grep`` then looks at the whole line).
public struct LogFilter: Sendable, Hashable {
    /// `jobId` equals this.
    public var job: String?
    /// `program`, `child_program` or `worker` (the supervisor's own lines about a program) equals
    /// this, with or without the `exchanger-` prefix.
    public var program: String?
    /// `caseId` equals this (as a number or a string).
    public var caseID: String?
    /// Only lines of this document (field `documentId`).
    public var documentID: String?
    /// `level` is at least this (a line without a known level counts as `info`).
    public var minimumLevel: LogLevel?
    /// `msg` contains this text (case-sensitive).
    public var grep: String?

    /// A filter with the given conditions; nil ones do not apply.
    public init(
        job: String? = nil, program: String? = nil, caseID: String? = nil, documentID: String? = nil, minimumLevel: LogLevel? = nil,
        grep: String? = nil
    ) {
        self.documentID = documentID
        self.job = job
        self.program = program
        self.caseID = caseID
        self.minimumLevel = minimumLevel
        self.grep = grep
    }

    /// Whether a condition on a JSON field is set.
    public var hasFieldCondition: Bool { job != nil || program != nil || caseID != nil || documentID != nil || minimumLevel != nil }

    /// Whether `record` passes.
    public func matches(_ record: LogRecord) -> Bool {
        guard record.isJSON else {
            if hasFieldCondition { return false }
            if let grep { return String(decoding: record.line, as: UTF8.self).contains(grep) }
            return true
        }
        if let job, record.text("jobId") != job { return false }
        if let caseID, record.text("caseId") != caseID { return false }
        if let documentID, record.text("documentId") != documentID { return false }
        if let program {
            let wanted = Self.shortName(program)
            let names = [record.text("program"), record.text("child_program"), record.text("worker")].compactMap { $0 }
            guard names.contains(where: { Self.shortName($0) == wanted }) else { return false }
        }
        if let minimumLevel, (record.level ?? .info) < minimumLevel { return false }
        if let grep {
            guard let message = record.text("msg"), message.contains(grep) else { return false }
        }
        return true
    }

    /// Whether the line `line` (without its newline) passes.
    public func matches(line: String) -> Bool { matches(LogRecord(line)) }

    /// `exchanger-s3-copy` → `s3-copy`.
    static func shortName(_ name: String) -> Substring {
        name.hasPrefix("exchanger-") ? name.dropFirst("exchanger-".count) : Substring(name)
    }
}

/// How `exchanger logs` prints a line.
public enum LogOutputFormat: String, Sendable, Hashable, CaseIterable {
    /// The line as read.
    case json
    /// `time level program[instance] pid: msg key=value…`.
    case text

    /// The output for `record`, ending in a newline.
    public func render(_ record: LogRecord) -> [UInt8] {
        var output: [UInt8]
        switch self {
        case .json:
            output = record.line
        case .text:
            output = record.isJSON ? Array(Self.text(record).utf8) : record.line
        }
        if output.last == UInt8(ascii: "\r") { output.removeLast() }
        output.append(UInt8(ascii: "\n"))
        return output
    }

    private static let shownFirst: Set<String> = ["time", "level", "msg", "program", "instance", "pid"]

    /// The text form of a JSON record.
    public static func text(_ record: LogRecord) -> String {
        var head: [String] = []
        if let time = record.text("time") { head.append(time) }
        if let level = record.text("level") { head.append(level) }
        if let program = record.text("program") {
            head.append(record.text("instance").map { "\(program)[\($0)]" } ?? program)
        }
        if let pid = record.text("pid") { head.append(pid) }
        var line = head.joined(separator: " ")
        line += line.isEmpty ? "" : ": "
        line += (record.text("msg") ?? "").replacingOccurrences(of: "\n", with: "\\n")
        for (key, raw) in record.fields where !shownFirst.contains(key) {
            if key == "stream", raw.elementsEqual("\"stdout\"".utf8) { continue }
            line += " \(key)=\(value(raw))"
        }
        return line
    }

    /// A field's value for `key=value`: strings bare unless they need quotes, anything else as written.
    private static func value(_ raw: [UInt8]) -> String {
        guard raw.first == UInt8(ascii: "\"") else { return String(decoding: raw, as: UTF8.self) }
        let text = LogRecord.text(of: raw) ?? ""
        let plain = !text.isEmpty && !text.unicodeScalars.contains { $0.properties.isWhitespace || $0 == "=" || $0 == "\"" || $0.value < 0x20 }
        return plain ? text : String(decoding: raw, as: UTF8.self)
    }
}

/// The reading side of `exchanger logs`: reads a log file (or standard input), prints the lines
/// that pass a ``LogFilter`` — optionally only the last N of the existing content — and with
/// `follow` keeps printing what is appended, across rotation (a new file at the path: read from
/// its start) and truncation, polling the file every `pollInterval` until ``stop()``.
///
/// ``run()`` blocks: run it on its own thread (`runBlocking`).
public final class LogTail: Sendable {
    /// What to read and print.
    public struct Options: Sendable {
        /// Which lines to print.
        public var filter: LogFilter
        /// Print only the last N matching lines of the existing content (nil: all).
        public var lines: Int?
        /// Keep reading as the file grows.
        public var follow: Bool
        /// How often to look for new content when following.
        public var pollInterval: Duration
        /// How to print.
        public var format: LogOutputFormat

        /// Options; the defaults print every line once, as it is.
        public init(
            filter: LogFilter = LogFilter(), lines: Int? = nil, follow: Bool = false, pollInterval: Duration = .milliseconds(200),
            format: LogOutputFormat = .json
        ) {
            self.filter = filter
            self.lines = lines
            self.follow = follow
            self.pollInterval = pollInterval
            self.format = format
        }
    }

    /// The file read; nil for standard input.
    public let path: String?
    /// What to read and print.
    public let options: Options
    private let output: Int32
    private let stopRead: Int32
    private let stopWrite: Int32

    /// - Parameters:
    ///   - path: the file to read; nil or `-` for standard input.
    ///   - options: filter, last lines, follow, format.
    ///   - output: where the lines go.
    public init(path: String?, options: Options, output: Int32 = STDOUT_FILENO) throws(LogFileError) {
        self.path = path == "-" ? nil : path
        self.options = options
        self.output = output
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw LogFileError(.open, "pipe: \(String(cString: strerror(errno)))") }
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        stopRead = fds[0]
        stopWrite = fds[1]
    }

    deinit {
        close(stopRead)
        close(stopWrite)
    }

    /// Makes ``run()`` return soon (within a poll interval at most); safe from any thread.
    public func stop() {
        var byte: UInt8 = 1
        _ = write(stopWrite, &byte, 1)
    }

    /// Reads and prints until the end of the input (or, following a file, until ``stop()``).
    public func run() throws(LogFileError) {
        var state = ReadState(options: options, output: output)
        defer { state.deallocate() }
        if let path {
            try followFile(path, &state)
        } else {
            try readStream(STDIN_FILENO, &state)
        }
    }

    private var stopped: Bool {
        var descriptor = pollfd(fd: stopRead, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, 0) > 0
    }

    /// Waits for input on `fd` or for the poll interval (fd < 0); false when stopped.
    private func wait(for fd: Int32) -> Bool {
        var descriptors = [pollfd(fd: stopRead, events: Int16(POLLIN), revents: 0), pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
        let interval = options.pollInterval.components
        let milliseconds = fd >= 0 ? -1 : Int32(clamping: interval.seconds * 1000 + interval.attoseconds / 1_000_000_000_000_000)
        while poll(&descriptors, nfds_t(descriptors.count), milliseconds) < 0, errno == EINTR {}
        return descriptors[0].revents == 0
    }

    private func readStream(_ fd: Int32, _ state: inout ReadState) throws(LogFileError) {
        while true {
            guard wait(for: fd) else { return }
            let count = state.read(fd)
            if count == 0 { break }
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw LogFileError(.read, "cannot read standard input: \(String(cString: strerror(errno)))")
            }
            try state.flush()
        }
        state.endOfInput()
        state.printLastLines()
        try state.flush()
    }

    private func followFile(_ path: String, _ state: inout ReadState) throws(LogFileError) {
        var fd = open(path, O_RDONLY | O_CLOEXEC)
        // Following a file that does not exist yet (the supervisor has not started): wait for it.
        while fd < 0, errno == ENOENT, options.follow, wait(for: -1) { fd = open(path, O_RDONLY | O_CLOEXEC) }
        if fd < 0, options.follow, stopped { return }
        guard fd >= 0 else { throw LogFileError(.open, "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var identity = Self.identity(fd: fd)
        var offset = try readToEnd(fd, path, &state)
        if !options.follow { state.endOfInput() }
        state.printLastLines()
        try state.flush()
        guard options.follow else { return }
        while wait(for: -1) {
            offset += try readToEnd(fd, path, &state)
            var info = stat()
            if stat(path, &info) == 0, (UInt64(info.st_dev), UInt64(info.st_ino)) != identity {
                // Rotated: the rest of the old file was just read; the new one is read from its start.
                let replacement = open(path, O_RDONLY | O_CLOEXEC)
                if replacement >= 0 {
                    state.endOfInput()
                    close(fd)
                    fd = replacement
                    identity = Self.identity(fd: fd)
                    offset = try readToEnd(fd, path, &state)
                }
            } else if fstat(fd, &info) == 0, Int(info.st_size) < offset {
                // Truncated in place: start over.
                state.discardPending()
                lseek(fd, 0, SEEK_SET)
                offset = try readToEnd(fd, path, &state)
            }
            try state.flush()
        }
    }

    /// Reads what `fd` holds now; returns the bytes read.
    private func readToEnd(_ fd: Int32, _ path: String, _ state: inout ReadState) throws(LogFileError) -> Int {
        var total = 0
        var reads = 0
        while true {
            let count = state.read(fd)
            if count > 0 {
                total += count
                reads += 1
                if state.buffered > 1 << 16 { try state.flush() }
                // A long file: stop() is honoured while reading it too.
                if reads % 256 == 0, stopped { return total }
                continue
            }
            if count == 0 { return total }
            if errno == EINTR { continue }
            throw LogFileError(.read, "cannot read \(path): \(String(cString: strerror(errno)))")
        }
    }

    private static func identity(fd: Int32) -> (UInt64, UInt64) {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return (0, 0) }
        return (UInt64(info.st_dev), UInt64(info.st_ino))
    }

    /// Line splitting, filtering, the last-lines ring and the output buffer.
    private struct ReadState {
        let options: LogTailOptionsView
        let output: Int32
        let buffer: UnsafeMutableBufferPointer<UInt8>
        var pending: [UInt8] = []
        var out: [UInt8] = []
        /// While collecting the last N lines of the existing content.
        var ring: [[UInt8]]?
        var ringStart = 0

        init(options: LogTail.Options, output: Int32) {
            self.options = LogTailOptionsView(filter: options.filter, format: options.format, lines: options.lines)
            self.output = output
            buffer = .allocate(capacity: 64 * 1024)
            if let lines = options.lines { ring = []; ring?.reserveCapacity(min(lines, 100_000)) }
        }

        func deallocate() { buffer.deallocate() }

        var buffered: Int { out.count }

        /// One read(2) into the lines; returns its result.
        mutating func read(_ fd: Int32) -> Int {
            let count = readDescriptor(fd, buffer.baseAddress, buffer.count)
            guard count > 0 else { return count }
            var start = 0
            for index in 0..<count where buffer[index] == UInt8(ascii: "\n") {
                if pending.isEmpty {
                    line(Array(buffer[start..<index]))
                } else {
                    pending.append(contentsOf: buffer[start..<index])
                    let whole = pending
                    pending.removeAll(keepingCapacity: true)
                    line(whole)
                }
                start = index + 1
            }
            if start < count { pending.append(contentsOf: buffer[start..<count]) }
            return count
        }

        /// The input ended: an unterminated last line counts.
        mutating func endOfInput() {
            if !pending.isEmpty {
                let whole = pending
                pending.removeAll()
                line(whole)
            }
        }

        mutating func discardPending() { pending.removeAll() }

        mutating func line(_ bytes: [UInt8]) {
            let record = LogRecord(bytes)
            guard options.filter.matches(record) else { return }
            let rendered = options.format.render(record)
            guard let limit = options.lines, ring != nil else {
                out.append(contentsOf: rendered)
                return
            }
            guard limit > 0 else { return }
            if ring?.count ?? 0 < limit {
                ring?.append(rendered)
            } else {
                ring?[ringStart] = rendered
                ringStart = (ringStart + 1) % limit
            }
        }

        /// Ends the last-lines phase: the collected lines go out, later lines directly.
        mutating func printLastLines() {
            guard let collected = ring else { return }
            for index in 0..<collected.count { out.append(contentsOf: collected[(ringStart + index) % collected.count]) }
            ring = nil
        }

        mutating func flush() throws(LogFileError) {
            guard !out.isEmpty else { return }
            defer { out.removeAll(keepingCapacity: out.capacity <= 1 << 20) }
            let failed = out.withUnsafeBytes { bytes -> Int32? in
                guard let base = bytes.baseAddress else { return nil }
                var written = 0
                while written < bytes.count {
                    let result = write(output, base + written, bytes.count - written)
                    if result > 0 {
                        written += result
                    } else if result < 0, errno == EINTR {
                        continue
                    } else if result < 0, errno == EAGAIN {
                        var descriptor = pollfd(fd: output, events: Int16(POLLOUT), revents: 0)
                        _ = poll(&descriptor, 1, 1000)
                    } else {
                        return errno
                    }
                }
                return nil
            }
            if let failed { throw LogFileError(.write, "cannot write the output: \(String(cString: strerror(failed)))") }
        }
    }

    /// The parts of the options the reading state uses.
    private struct LogTailOptionsView {
        let filter: LogFilter
        let format: LogOutputFormat
        let lines: Int?
    }
}

private func readDescriptor(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int { read(fd, buffer, count) }

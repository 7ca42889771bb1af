#if canImport(Glibc)
import Glibc
#endif

/// Turns one line a child printed into the one JSON line the supervisor writes.
///
/// A line that is a JSON object is merged: the supervisor's fields first (`program`, `instance`,
/// `pid`, `stream`, then the source's extra fields), then every field of the child in its original
/// order, copied byte for byte. A child field whose key is one of the supervisor's is dropped when
/// its value is the same and renamed `child_<key>` when it differs (workers write their own
/// `"program":"exchanger-s3-copy"`). Any other line is wrapped: the supervisor's fields, `time`,
/// `level` (`info` for stdout, `warning` for stderr) and `msg` (the line, JSON-escaped, invalid
/// UTF-8 replaced by U+FFFD). Pieces of an over-long line are always wrapped, and all but the last
/// piece carry `"partial":true`.
///
/// Pure and cheap: the JSON check is ``JSONObjectScanner``, one pass without allocations, and
/// merging copies the child's bytes.
public struct LogLineFormatter: Sendable {
    /// What a piece of a child's output is.
    public enum Piece: Sendable, Hashable {
        /// A whole line: merged when it is a JSON object, wrapped otherwise.
        case line
        /// The first or a middle piece of a line longer than the limit: wrapped, `"partial":true`.
        case partial
        /// The last piece of a line that was split: wrapped, without `partial`.
        case lastPiece
    }

    /// `{"program":…,"instance":…,"pid":…,"stream":…` and the extra fields, without the closing brace.
    public let prefix: [UInt8]
    /// The supervisor's keys and their encoded values, which a child's field may collide with.
    private let reserved: [(key: [UInt8], value: [UInt8])]
    /// `,"level":"info"` or `,"level":"warning"`, for wrapped lines.
    private let wrappedLevel: [UInt8]

    /// A formatter for the lines of one pipe.
    public init(source: LogSource) {
        var reserved: [(key: [UInt8], value: [UInt8])] = [
            (Array("program".utf8), JSONText.string(source.program)),
            (Array("instance".utf8), Array(String(source.instance).utf8)),
            (Array("pid".utf8), Array(String(source.pid).utf8)),
            (Array("stream".utf8), JSONText.string(source.stream.rawValue)),
        ]
        for (key, value) in source.fields where !reserved.contains(where: { $0.key.elementsEqual(key.utf8) }) {
            reserved.append((Array(key.utf8), JSONText.string(value)))
        }
        var prefix: [UInt8] = [UInt8(ascii: "{")]
        for (index, field) in reserved.enumerated() {
            if index > 0 { prefix.append(UInt8(ascii: ",")) }
            JSONText.appendString(field.key, to: &prefix)
            prefix.append(UInt8(ascii: ":"))
            prefix.append(contentsOf: field.value)
        }
        self.prefix = prefix
        self.reserved = reserved
        self.wrappedLevel = Array(",\"level\":\"\(source.stream == .stderr ? "warning" : "info")\"".utf8)
    }

    /// Appends the output line for `line` (without its newline), ending in `\n`, to `output`.
    /// - Parameters:
    ///   - line: the child's bytes; a trailing `\r` is dropped (except from partial pieces).
    ///   - piece: whether this is a whole line or a piece of a longer one.
    ///   - time: the 24-byte timestamp for wrapped lines (``LogClock``).
    ///   - scratch: reusable storage for the scanner's fields.
    ///   - output: where the line goes.
    public func append(
        _ line: UnsafeBufferPointer<UInt8>, piece: Piece, time: [UInt8],
        scratch: inout [JSONObjectScanner.Field], to output: inout [UInt8]
    ) {
        var count = line.count
        if piece != .partial, count > 0, line[count - 1] == UInt8(ascii: "\r") { count -= 1 }
        let trimmed = UnsafeBufferPointer(rebasing: line[0..<count])
        if piece == .line, JSONObjectScanner.scan(trimmed, fields: &scratch) {
            appendMerged(trimmed, fields: scratch, to: &output)
        } else {
            appendWrapped(trimmed, partial: piece == .partial, time: time, to: &output)
        }
    }

    /// The output line for `line` as a string (ending in `\n`): for tests and tools.
    public func format(_ line: some Collection<UInt8>, piece: Piece = .line, time: String) -> String {
        let bytes = Array(line)
        var scratch: [JSONObjectScanner.Field] = []
        var output: [UInt8] = []
        bytes.withUnsafeBufferPointer { append($0, piece: piece, time: Array(time.utf8), scratch: &scratch, to: &output) }
        return String(decoding: output, as: UTF8.self)
    }

    /// The output line for a string line (see ``format(_:piece:time:)``).
    public func format(_ line: String, piece: Piece = .line, time: String) -> String {
        format(Array(line.utf8), piece: piece, time: time)
    }

    private func appendMerged(_ line: UnsafeBufferPointer<UInt8>, fields: [JSONObjectScanner.Field], to output: inout [UInt8]) {
        output.append(contentsOf: prefix)
        for field in fields {
            let key = UnsafeBufferPointer(rebasing: line[field.key])
            let value = UnsafeBufferPointer(rebasing: line[field.value])
            var renamed = false
            if let collision = reserved.first(where: { $0.key.count == key.count && $0.key.elementsEqual(key) }) {
                if collision.value.elementsEqual(value) { continue }
                renamed = true
            }
            output.append(UInt8(ascii: ","))
            output.append(UInt8(ascii: "\""))
            if renamed { output.append(contentsOf: JSONText.childPrefix) }
            output.append(contentsOf: key)
            output.append(UInt8(ascii: "\""))
            output.append(UInt8(ascii: ":"))
            output.append(contentsOf: value)
        }
        output.append(UInt8(ascii: "}"))
        output.append(UInt8(ascii: "\n"))
    }

    private func appendWrapped(_ line: UnsafeBufferPointer<UInt8>, partial: Bool, time: [UInt8], to output: inout [UInt8]) {
        output.append(contentsOf: prefix)
        output.append(contentsOf: JSONText.timeKey)
        output.append(contentsOf: time)
        output.append(UInt8(ascii: "\""))
        output.append(contentsOf: wrappedLevel)
        output.append(contentsOf: JSONText.messageKey)
        JSONText.appendEscaped(line, to: &output)
        output.append(UInt8(ascii: "\""))
        if partial { output.append(contentsOf: JSONText.partialField) }
        output.append(UInt8(ascii: "}"))
        output.append(UInt8(ascii: "\n"))
    }
}

/// Splits a child's output into lines and pieces: a line longer than `limit` bytes is cut into
/// pieces of at most `limit` bytes (never inside a UTF-8 sequence), all but the last
/// ``LogLineFormatter/Piece/partial``. A line is whole when it has at most `limit` bytes before
/// its newline. At end of file an unterminated last line is a normal line.
public struct LogLineAssembler: Sendable {
    /// The longest line kept whole, in bytes.
    public let limit: Int
    private var pending: [UInt8] = []
    private var continuing = false

    /// - Parameter limit: the longest whole line in bytes (at least 4).
    public init(limit: Int) {
        self.limit = max(4, limit)
    }

    /// Feeds bytes read from the pipe; `body` receives every complete line or piece, in order.
    public mutating func feed(
        _ chunk: UnsafeBufferPointer<UInt8>, _ body: (UnsafeBufferPointer<UInt8>, LogLineFormatter.Piece) -> Void
    ) {
        guard let base = chunk.baseAddress, !chunk.isEmpty else { return }
        var start = 0
        let end = chunk.count
        while start < end {
            guard let found = memchr(base + start, Int32(UInt8(ascii: "\n")), end - start) else {
                pending.append(contentsOf: UnsafeBufferPointer(start: base + start, count: end - start))
                if pending.count > limit {
                    var taken = 0
                    pending.withUnsafeBufferPointer { buffer in
                        while buffer.count - taken > limit {
                            let cut = Self.cut(buffer, from: taken, limit: limit)
                            body(UnsafeBufferPointer(rebasing: buffer[taken..<(taken + cut)]), .partial)
                            taken += cut
                        }
                    }
                    continuing = true
                    pending.removeFirst(taken)
                }
                return
            }
            let newline = base.distance(to: found.assumingMemoryBound(to: UInt8.self))
            if pending.isEmpty {
                Self.emitLine(UnsafeBufferPointer(start: base + start, count: newline - start), limit, &continuing, body)
            } else {
                pending.append(contentsOf: UnsafeBufferPointer(start: base + start, count: newline - start))
                pending.withUnsafeBufferPointer { Self.emitLine($0, limit, &continuing, body) }
                pending.removeAll(keepingCapacity: pending.capacity <= 4 * limit)
            }
            start = newline + 1
        }
    }

    /// End of file: the unterminated last line, if any, as a normal line.
    public mutating func finish(_ body: (UnsafeBufferPointer<UInt8>, LogLineFormatter.Piece) -> Void) {
        if !pending.isEmpty {
            pending.withUnsafeBufferPointer { Self.emitLine($0, limit, &continuing, body) }
        }
        pending = []
        continuing = false
    }

    private static func emitLine(
        _ line: UnsafeBufferPointer<UInt8>, _ limit: Int, _ continuing: inout Bool,
        _ body: (UnsafeBufferPointer<UInt8>, LogLineFormatter.Piece) -> Void
    ) {
        var taken = 0
        while line.count - taken > limit {
            let size = Self.cut(line, from: taken, limit: limit)
            body(UnsafeBufferPointer(rebasing: line[taken..<(taken + size)]), .partial)
            taken += size
            continuing = true
        }
        body(UnsafeBufferPointer(rebasing: line[taken...]), continuing ? .lastPiece : .line)
        continuing = false
    }

    /// How many bytes from `start` go into a piece: `limit`, or less so that a UTF-8 sequence is
    /// not cut (`buffer` holds more than `start + limit` bytes).
    private static func cut(_ buffer: UnsafeBufferPointer<UInt8>, from start: Int, limit: Int) -> Int {
        guard buffer[start + limit] & 0xC0 == 0x80 else { return limit }
        // The limit falls inside a sequence: cut before its lead byte, at most 3 bytes back.
        var cut = limit - 1
        while cut > 0, cut >= limit - 3 {
            let byte = buffer[start + cut]
            if byte >= 0xC0 { return cut }
            if byte < 0x80 { return limit }
            cut -= 1
        }
        return limit
    }
}

/// Validates that a line is exactly one JSON object (optionally surrounded by whitespace) and
/// yields its top-level keys and the raw byte ranges of their values, in one pass, without
/// allocating (beyond the reusable field array).
///
/// Strings must be valid UTF-8 without raw control characters, numbers follow the JSON grammar,
/// nesting is limited to ``maximumDepth`` levels; anything else is "not a JSON object".
public enum JSONObjectScanner {
    /// One top-level field: byte ranges within the scanned buffer.
    public struct Field: Sendable, Hashable {
        /// The key's bytes between its quotes, escapes as written.
        public var key: Range<Int>
        /// The value's bytes exactly as written.
        public var value: Range<Int>

        /// A field from its key and value ranges.
        public init(key: Range<Int>, value: Range<Int>) {
            self.key = key
            self.value = value
        }
    }

    /// Deeper nesting is not accepted (protects the stack; such lines are wrapped instead).
    public static let maximumDepth = 128

    /// Whether `bytes` is one JSON object; on success `fields` holds its top-level fields in order.
    public static func scan(_ bytes: UnsafeBufferPointer<UInt8>, fields: inout [Field]) -> Bool {
        fields.removeAll(keepingCapacity: true)
        guard let base = bytes.baseAddress else { return false }
        var cursor = Cursor(base: base, end: bytes.count)
        cursor.skipWhitespace()
        guard cursor.peek == UInt8(ascii: "{") else { return false }
        cursor.index += 1
        cursor.skipWhitespace()
        if cursor.peek == UInt8(ascii: "}") {
            cursor.index += 1
        } else {
            while true {
                guard cursor.peek == UInt8(ascii: "\"") else { return false }
                let keyStart = cursor.index + 1
                guard cursor.string() else { return false }
                let keyEnd = cursor.index - 1
                cursor.skipWhitespace()
                guard cursor.peek == UInt8(ascii: ":") else { return false }
                cursor.index += 1
                cursor.skipWhitespace()
                let valueStart = cursor.index
                guard cursor.value(depth: 1) else { return false }
                fields.append(Field(key: keyStart..<keyEnd, value: valueStart..<cursor.index))
                cursor.skipWhitespace()
                if cursor.peek == UInt8(ascii: ",") {
                    cursor.index += 1
                    cursor.skipWhitespace()
                    continue
                }
                guard cursor.peek == UInt8(ascii: "}") else { return false }
                cursor.index += 1
                break
            }
        }
        cursor.skipWhitespace()
        return cursor.index == cursor.end
    }

    /// Decodes a JSON string value given with its quotes (as a ``Field/value`` range holds it);
    /// nil when the bytes are not a string.
    public static func decodeString(_ raw: UnsafeBufferPointer<UInt8>) -> String? {
        guard raw.count >= 2, raw[0] == UInt8(ascii: "\""), raw[raw.count - 1] == UInt8(ascii: "\"") else { return nil }
        return decodeStringContents(UnsafeBufferPointer(rebasing: raw[1..<(raw.count - 1)]))
    }

    /// Decodes the bytes between a JSON string's quotes (a ``Field/key`` range), resolving escapes.
    public static func decodeStringContents(_ raw: UnsafeBufferPointer<UInt8>) -> String? {
        if !raw.contains(UInt8(ascii: "\\")) { return String(decoding: raw, as: UTF8.self) }
        var scalars = String.UnicodeScalarView()
        var bytes: [UInt8] = []
        var index = 0
        func flush() {
            if !bytes.isEmpty {
                scalars.append(contentsOf: String(decoding: bytes, as: UTF8.self).unicodeScalars)
                bytes.removeAll(keepingCapacity: true)
            }
        }
        func hex(_ at: Int) -> UInt32? {
            guard at + 4 <= raw.count else { return nil }
            var value: UInt32 = 0
            for offset in 0..<4 {
                guard let digit = hexValue(raw[at + offset]) else { return nil }
                value = value << 4 | UInt32(digit)
            }
            return value
        }
        while index < raw.count {
            let byte = raw[index]
            guard byte == UInt8(ascii: "\\") else {
                bytes.append(byte)
                index += 1
                continue
            }
            guard index + 1 < raw.count else { return nil }
            let escaped = raw[index + 1]
            index += 2
            switch escaped {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): bytes.append(escaped)
            case UInt8(ascii: "b"): bytes.append(0x08)
            case UInt8(ascii: "f"): bytes.append(0x0C)
            case UInt8(ascii: "n"): bytes.append(0x0A)
            case UInt8(ascii: "r"): bytes.append(0x0D)
            case UInt8(ascii: "t"): bytes.append(0x09)
            case UInt8(ascii: "u"):
                guard var code = hex(index) else { return nil }
                index += 4
                if code >= 0xD800, code < 0xDC00, index + 6 <= raw.count, raw[index] == UInt8(ascii: "\\"),
                    raw[index + 1] == UInt8(ascii: "u"), let low = hex(index + 2), low >= 0xDC00, low < 0xE000
                {
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    index += 6
                }
                flush()
                scalars.append(Unicode.Scalar(code) ?? "\u{FFFD}")
            default: return nil
            }
        }
        flush()
        return String(scalars)
    }

    private struct Cursor {
        let base: UnsafePointer<UInt8>
        let end: Int
        var index = 0

        init(base: UnsafePointer<UInt8>, end: Int) {
            self.base = base
            self.end = end
        }

        /// The current byte, or 0 at the end (0 is never valid where a token is expected).
        var peek: UInt8 { index < end ? base[index] : 0 }

        mutating func skipWhitespace() {
            while index < end {
                switch base[index] {
                case 0x20, 0x09, 0x0A, 0x0D: index += 1
                default: return
                }
            }
        }

        mutating func value(depth: Int) -> Bool {
            switch peek {
            case UInt8(ascii: "\""): return string()
            case UInt8(ascii: "{"): return object(depth: depth + 1)
            case UInt8(ascii: "["): return array(depth: depth + 1)
            case UInt8(ascii: "t"): return literal("true")
            case UInt8(ascii: "f"): return literal("false")
            case UInt8(ascii: "n"): return literal("null")
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return number()
            default: return false
            }
        }

        mutating func object(depth: Int) -> Bool {
            guard depth <= JSONObjectScanner.maximumDepth else { return false }
            index += 1
            skipWhitespace()
            if peek == UInt8(ascii: "}") {
                index += 1
                return true
            }
            while true {
                guard peek == UInt8(ascii: "\""), string() else { return false }
                skipWhitespace()
                guard peek == UInt8(ascii: ":") else { return false }
                index += 1
                skipWhitespace()
                guard value(depth: depth) else { return false }
                skipWhitespace()
                switch peek {
                case UInt8(ascii: ","):
                    index += 1
                    skipWhitespace()
                case UInt8(ascii: "}"):
                    index += 1
                    return true
                default: return false
                }
            }
        }

        mutating func array(depth: Int) -> Bool {
            guard depth <= JSONObjectScanner.maximumDepth else { return false }
            index += 1
            skipWhitespace()
            if peek == UInt8(ascii: "]") {
                index += 1
                return true
            }
            while true {
                guard value(depth: depth) else { return false }
                skipWhitespace()
                switch peek {
                case UInt8(ascii: ","):
                    index += 1
                    skipWhitespace()
                case UInt8(ascii: "]"):
                    index += 1
                    return true
                default: return false
                }
            }
        }

        /// A string starting at the opening quote; leaves the index after the closing quote.
        mutating func string() -> Bool {
            index += 1
            while index < end {
                let byte = base[index]
                if byte == UInt8(ascii: "\"") {
                    index += 1
                    return true
                }
                if byte == UInt8(ascii: "\\") {
                    guard index + 1 < end else { return false }
                    switch base[index + 1] {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                        UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                        index += 2
                    case UInt8(ascii: "u"):
                        guard index + 6 <= end else { return false }
                        for offset in 2..<6 where hexValue(base[index + offset]) == nil { return false }
                        index += 6
                    default:
                        return false
                    }
                } else if byte < 0x20 {
                    return false
                } else if byte < 0x80 {
                    index += 1
                } else {
                    let length = utf8SequenceLength(base, index, end)
                    guard length > 0 else { return false }
                    index += length
                }
            }
            return false
        }

        mutating func number() -> Bool {
            if peek == UInt8(ascii: "-") { index += 1 }
            if peek == UInt8(ascii: "0") {
                index += 1
            } else {
                guard digits() else { return false }
            }
            if peek == UInt8(ascii: ".") {
                index += 1
                guard digits() else { return false }
            }
            if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
                index += 1
                if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { index += 1 }
                guard digits() else { return false }
            }
            return true
        }

        /// One or more digits.
        mutating func digits() -> Bool {
            let start = index
            while index < end, base[index] >= UInt8(ascii: "0"), base[index] <= UInt8(ascii: "9") { index += 1 }
            return index > start
        }

        mutating func literal(_ word: StaticString) -> Bool {
            let length = word.utf8CodeUnitCount
            guard index + length <= end else { return false }
            let pointer = word.utf8Start
            for offset in 0..<length where base[index + offset] != pointer[offset] { return false }
            index += length
            return true
        }
    }
}

private func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
    default: nil
    }
}

/// The length of the well-formed UTF-8 sequence at `index` (Unicode table 3-7), or minus the
/// length of its maximal ill-formed subpart (what one U+FFFD replaces).
@inline(__always)
func utf8SequenceLength(_ base: UnsafePointer<UInt8>, _ index: Int, _ end: Int) -> Int {
    let lead = base[index]
    if lead < 0x80 { return 1 }
    let length: Int
    var low: UInt8 = 0x80
    var high: UInt8 = 0xBF
    switch lead {
    case 0xC2...0xDF: length = 2
    case 0xE0:
        length = 3
        low = 0xA0
    case 0xE1...0xEC, 0xEE...0xEF: length = 3
    case 0xED:
        length = 3
        high = 0x9F
    case 0xF0:
        length = 4
        low = 0x90
    case 0xF1...0xF3: length = 4
    case 0xF4:
        length = 4
        high = 0x8F
    default: return -1
    }
    for offset in 1..<length {
        guard index + offset < end else { return -offset }
        let byte = base[index + offset]
        if offset == 1 {
            guard byte >= low, byte <= high else { return -1 }
        } else {
            guard byte & 0xC0 == 0x80 else { return -offset }
        }
    }
    return length
}

/// JSON text helpers for the formatter.
enum JSONText {
    static let childPrefix = Array("child_".utf8)
    static let timeKey = Array(",\"time\":\"".utf8)
    static let messageKey = Array(",\"msg\":\"".utf8)
    static let partialField = Array(",\"partial\":true".utf8)
    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// A JSON string literal (with quotes) for `text`.
    static func string(_ text: String) -> [UInt8] {
        var output: [UInt8] = []
        appendString(Array(text.utf8), to: &output)
        return output
    }

    static func appendString(_ bytes: some Collection<UInt8>, to output: inout [UInt8]) {
        output.append(UInt8(ascii: "\""))
        Array(bytes).withUnsafeBufferPointer { appendEscaped($0, to: &output) }
        output.append(UInt8(ascii: "\""))
    }

    /// Appends `bytes` escaped for the inside of a JSON string; ill-formed UTF-8 becomes U+FFFD.
    static func appendEscaped(_ bytes: UnsafeBufferPointer<UInt8>, to output: inout [UInt8]) {
        guard let base = bytes.baseAddress else { return }
        let end = bytes.count
        var run = 0  // start of the bytes not yet copied
        var index = 0
        while index < end {
            let byte = base[index]
            if byte >= 0x20, byte < 0x80, byte != UInt8(ascii: "\""), byte != UInt8(ascii: "\\") {
                index += 1
                continue
            }
            if byte >= 0x80 {
                let length = utf8SequenceLength(base, index, end)
                if length > 0 {
                    index += length
                    continue
                }
                output.append(contentsOf: UnsafeBufferPointer(start: base + run, count: index - run))
                output.append(contentsOf: [0xEF, 0xBF, 0xBD])
                index += -length
                run = index
                continue
            }
            output.append(contentsOf: UnsafeBufferPointer(start: base + run, count: index - run))
            output.append(UInt8(ascii: "\\"))
            switch byte {
            case UInt8(ascii: "\""): output.append(UInt8(ascii: "\""))
            case UInt8(ascii: "\\"): output.append(UInt8(ascii: "\\"))
            case 0x0A: output.append(UInt8(ascii: "n"))
            case 0x0D: output.append(UInt8(ascii: "r"))
            case 0x09: output.append(UInt8(ascii: "t"))
            case 0x08: output.append(UInt8(ascii: "b"))
            case 0x0C: output.append(UInt8(ascii: "f"))
            default:
                output.append(contentsOf: [UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")])
                output.append(hexDigits[Int(byte >> 4)])
                output.append(hexDigits[Int(byte & 0x0F)])
            }
            index += 1
            run = index
        }
        output.append(contentsOf: UnsafeBufferPointer(start: base + run, count: end - run))
    }
}

/// The wall-clock timestamp of wrapped lines, `2026-11-25T12:00:00.123Z` (UTC, milliseconds, as
/// `JSONLogHandler` writes it), formatted without Foundation and cached per second.
public struct LogClock: Sendable {
    private var second = Int.min
    private var secondText: [UInt8] = []

    /// A clock with an empty cache.
    public init() {}

    /// The current time as 24 ASCII bytes.
    public mutating func now() -> [UInt8] {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return format(seconds: Int(spec.tv_sec), milliseconds: Int(spec.tv_nsec) / 1_000_000)
    }

    /// The time `seconds` (since 1970, UTC) and `milliseconds` as 24 ASCII bytes.
    public mutating func format(seconds: Int, milliseconds: Int) -> [UInt8] {
        if seconds != second {
            second = seconds
            var time = time_t(seconds)
            var parts = tm()
            gmtime_r(&time, &parts)
            var text: [UInt8] = []
            text.reserveCapacity(24)
            func digits(_ value: Int32, _ width: Int) {
                var buffer = [UInt8](repeating: UInt8(ascii: "0"), count: width)
                var rest = value
                for position in stride(from: width - 1, through: 0, by: -1) {
                    buffer[position] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: rest % 10)
                    rest /= 10
                }
                text.append(contentsOf: buffer)
            }
            digits(parts.tm_year + 1900, 4)
            text.append(UInt8(ascii: "-"))
            digits(parts.tm_mon + 1, 2)
            text.append(UInt8(ascii: "-"))
            digits(parts.tm_mday, 2)
            text.append(UInt8(ascii: "T"))
            digits(parts.tm_hour, 2)
            text.append(UInt8(ascii: ":"))
            digits(parts.tm_min, 2)
            text.append(UInt8(ascii: ":"))
            digits(parts.tm_sec, 2)
            text.append(UInt8(ascii: "."))
            secondText = text
        }
        var text = secondText
        let millis = max(0, min(999, milliseconds))
        text.append(UInt8(ascii: "0") + UInt8(millis / 100))
        text.append(UInt8(ascii: "0") + UInt8(millis / 10 % 10))
        text.append(UInt8(ascii: "0") + UInt8(millis % 10))
        text.append(UInt8(ascii: "Z"))
        return text
    }
}

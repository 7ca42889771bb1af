import Synchronization

/// The last lines of each program's output, as the supervisor wrote them (its JSON log lines, one
/// per line of the child), kept in memory for `exchanger ctl tail`: up to `capacity` bytes per
/// program, addressed by offsets that count every byte the program ever wrote (so a reader that
/// polls with the end it saw gets exactly what came after, and learns when it fell behind).
public final class RecentLogs: Sendable {
    /// A piece of a program's output.
    public struct Slice: Sendable, Hashable {
        /// The offset of the first byte returned.
        public var start: Int64
        /// The offset after the last byte returned: the next read's `from`.
        public var end: Int64
        /// Whether bytes between the asked offset and ``start`` were no longer kept.
        public var skipped: Bool
        /// The bytes (whole lines, unless a line was longer than the capacity).
        public var bytes: [UInt8]
    }

    private struct Program {
        var bytes: [UInt8] = []
        /// Offset of `bytes[0]`.
        var start: Int64 = 0
        var end: Int64 { start + Int64(bytes.count) }
    }

    /// Bytes kept per program.
    public let capacity: Int
    private let programs = Mutex<[String: Program]>([:])

    /// Keeps the last `capacity` bytes of each program.
    public init(capacity: Int) {
        self.capacity = max(1024, capacity)
    }

    /// Appends output of `program`.
    public func append(_ program: String, _ bytes: some Collection<UInt8>) {
        guard !bytes.isEmpty else { return }
        let capacity = capacity
        programs.withLock { programs in
            var entry = programs[program] ?? Program()
            entry.bytes.append(contentsOf: bytes)
            // Trim in chunks (amortised): keep at most twice the capacity, cut at a line start.
            if entry.bytes.count > 2 * capacity {
                var cut = entry.bytes.count - capacity
                if let newline = entry.bytes[cut...].firstIndex(of: UInt8(ascii: "\n")), newline + 1 < entry.bytes.count { cut = newline + 1 }
                entry.bytes.removeFirst(cut)
                entry.start += Int64(cut)
            }
            programs[program] = entry
        }
    }

    /// The program's output from offset `from` on (at most `capacity` bytes), or, without `from`,
    /// its last `last` bytes starting at a line; nil when the program never wrote anything.
    public func read(_ program: String, from: Int64? = nil, last: Int = 1600) -> Slice? {
        let capacity = capacity
        return programs.withLock { programs -> Slice? in
            guard let entry = programs[program] else { return nil }
            let kept = max(entry.start, entry.end - Int64(capacity))
            var begin: Int64
            if let from {
                begin = min(max(from, kept), entry.end)
            } else {
                begin = max(kept, entry.end - Int64(max(0, last)))
                // Start at a line, unless that leaves nothing.
                let index = Int(begin - entry.start)
                if index > 0, entry.bytes[index - 1] != UInt8(ascii: "\n"),
                    let newline = entry.bytes[index...].firstIndex(of: UInt8(ascii: "\n")), newline + 1 < entry.bytes.count
                {
                    begin = entry.start + Int64(newline + 1)
                }
            }
            let bytes = Array(entry.bytes[Int(begin - entry.start)...])
            return Slice(start: begin, end: entry.end, skipped: (from ?? begin) < begin, bytes: bytes)
        }
    }
}

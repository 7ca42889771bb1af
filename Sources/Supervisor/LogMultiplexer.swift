import ConcurrencySupport
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Merges the stdout and stderr pipes of every child, and the supervisor's own lines, into one
/// stream of JSON lines (design, "Supervisor": program, instance, pid, stream, then the child's
/// own fields), written to the supervisor's stdout and optionally to rotating files.
///
/// One background thread runs a `poll(2)` loop over every attached pipe (set `O_NONBLOCK`) and a
/// wake-up pipe; each round reads what is there, formats it with ``LogLineFormatter`` and writes
/// the whole batch with one `write(2)` (looping on partial writes). Lines are never interleaved
/// mid-line and never dropped silently: when the output is a closed pipe the children are still
/// drained (so they never block on a full pipe) and the lost bytes are counted in
/// ``statistics``. A slow output slows the children down (back-pressure) rather than buffering
/// without bound.
///
/// The per-program ``RotatingLogFile`` of a ``LogSource`` and the `combinedFile` receive the same
/// lines as the output; stdout itself is never rotated. Call ``shutdown(timeout:)`` at the end:
/// the thread holds the multiplexer until then.
public final class LogMultiplexer: Sendable {
    /// Counters of what went through the multiplexer.
    public struct Statistics: Sendable, Hashable {
        /// Lines produced: the children's lines and pieces and the supervisor's own lines.
        public var lines = 0
        /// Bytes of those lines (newlines included), whether or not the output took them.
        public var bytes = 0
        /// Pieces of over-long lines flagged `"partial":true`.
        public var partialPieces = 0
        /// Bytes the output did not take (a closed pipe, a write error).
        public var droppedBytes = 0
        /// Failed appends to log files (the lines reached the output but not that file).
        public var fileErrors = 0
        /// Pipes attached so far.
        public var attached = 0
        /// Pipes attached and not yet at end of file.
        public var open = 0

        /// All zero.
        public init() {}
    }

    private struct Attachment: Sendable {
        let id: Int
        let fd: Int32
        let source: LogSource
        let onClose: (@Sendable () -> Void)?
    }

    private struct Waiter {
        let attachedBefore: Int
        let emitsBefore: Int
        let deadline: ContinuousClock.Instant
        let continuation: CheckedContinuation<Bool, Never>
    }

    /// What callers and the loop thread share.
    private struct Shared {
        var incoming: [Attachment] = []
        var emitted: [UInt8] = []
        var emitCount = 0
        var emitsWritten = 0
        var nextID = 0
        var open: Set<Int> = []
        var files: [ObjectIdentifier: (file: RotatingLogFile, users: Int)] = [:]
        var waiters: [Waiter] = []
        var stopRequested = false
        var stopped = false
        var stopWaiters: [CheckedContinuation<Void, Never>] = []
        var wakePending = false
        var statistics = Statistics()
    }

    private let shared = Mutex(Shared())
    private let output: Int32
    private let combinedFile: RotatingLogFile?
    /// The last lines of each program, for `exchanger ctl tail` (nil: not kept).
    public let recent: RecentLogs?
    /// The longest line kept whole, in bytes.
    public let partialLineLimit: Int
    private let wakeRead: Int32
    private let wakeWrite: Int32

    /// Starts the multiplexer's thread.
    /// - Parameters:
    ///   - output: where the stream goes (the supervisor's stdout); not closed by the multiplexer.
    ///   - combinedFile: an optional file receiving the whole stream too.
    ///   - partialLineLimit: a line longer than this many bytes is written in pieces.
    ///   - recent: where each program's last lines are kept (its attached pipes' lines).
    public init(
        output: Int32 = STDOUT_FILENO, combinedFile: RotatingLogFile? = nil, partialLineLimit: Int = 16 * 1024, recent: RecentLogs? = nil
    ) {
        self.output = output
        self.combinedFile = combinedFile
        self.recent = recent
        self.partialLineLimit = max(4, partialLineLimit)
        var fds: [Int32] = [-1, -1]
        if pipe(&fds) == 0 {
            for fd in fds {
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            }
            wakeRead = fds[0]
            wakeWrite = fds[1]
        } else {
            // Without a wake-up pipe the loop still works, polling every few milliseconds.
            wakeRead = -1
            wakeWrite = -1
        }
        if let combinedFile {
            shared.withLock { $0.files[ObjectIdentifier(combinedFile)] = (combinedFile, 1) }
        }
        let thread = Thread { [self] in
            nameCurrentThread("log-multiplexer")
            var loop = Loop(owner: self)
            loop.run()
        }
        thread.stackSize = 512 * 1024
        thread.start()
    }

    deinit {
        if wakeRead >= 0 { close(wakeRead) }
        if wakeWrite >= 0 { close(wakeWrite) }
    }

    /// Multiplexes the pipe `fd` (a read end) from now on. The multiplexer owns `fd`: it sets it
    /// non-blocking and closes it at end of file (or at shutdown); `onClose` then runs on the
    /// multiplexer's thread after the pipe's last line was written, so it must not block. After
    /// shutdown the pipe is closed at once and `onClose` runs on the caller's thread.
    public func attach(_ fd: Int32, source: LogSource, onClose: (@Sendable () -> Void)? = nil) {
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        let accepted = shared.withLock { state -> Bool in
            guard !state.stopRequested else { return false }
            let id = state.nextID
            state.nextID += 1
            state.incoming.append(Attachment(id: id, fd: fd, source: source, onClose: onClose))
            state.open.insert(id)
            state.statistics.attached += 1
            state.statistics.open += 1
            if let file = source.file { state.files[ObjectIdentifier(file), default: (file, 0)].users += 1 }
            return true
        }
        guard accepted else {
            close(fd)
            onClose?()
            return
        }
        wake()
    }

    /// Writes a complete line the supervisor produced itself (already a JSON object) into the same
    /// ordered stream and the combined file, as it is. A newline is added when it has none.
    public func emit(_ line: String) {
        var bytes = Array(line.utf8)
        if bytes.last != UInt8(ascii: "\n") { bytes.append(UInt8(ascii: "\n")) }
        let queued = shared.withLock { state -> Bool in
            if state.stopped {
                // The thread is gone: write directly, still in order with other late lines.
                state.statistics.lines += 1
                state.statistics.bytes += bytes.count
                if !writeWithoutSIGPIPE(output, bytes) { state.statistics.droppedBytes += bytes.count }
                if let combinedFile, (try? combinedFile.append(bytes)) == nil { state.statistics.fileErrors += 1 }
                return false
            }
            state.emitted.append(contentsOf: bytes)
            state.emitCount += 1
            return true
        }
        if queued { wake() }
    }

    /// Reopens every log file in use (the combined file and the per-program files), for SIGUSR2
    /// after an external logrotate moved them. Tries them all; throws the first failure.
    public func reopenFiles() throws(LogFileError) {
        let files = shared.withLock { $0.files.values.map(\.file) }
        var failure: LogFileError?
        for file in files {
            do throws(LogFileError) {
                try file.reopen()
            } catch {
                if failure == nil { failure = error }
            }
        }
        if let failure { throw failure }
    }

    /// Waits until every pipe attached so far has been read to end of file and written, and every
    /// line emitted so far has been written; false when `timeout` passed first (a child, or a
    /// grandchild holding its pipe, is still running).
    @discardableResult
    public func drain(timeout: Duration = .seconds(5)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        return await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let done = shared.withLock { state -> Bool in
                let attachedBefore = state.nextID
                if state.stopped || Self.satisfied(state, attachedBefore: attachedBefore, emitsBefore: state.emitCount) {
                    return true
                }
                state.waiters.append(
                    Waiter(attachedBefore: attachedBefore, emitsBefore: state.emitCount, deadline: deadline, continuation: continuation))
                return false
            }
            if done { continuation.resume(returning: true) } else { wake(force: true) }
        }
    }

    /// Drains for at most `timeout` (see ``drain(timeout:)``), then reads what the pipes still
    /// hold, writes it (unterminated lines included), closes every pipe and stops the thread.
    public func shutdown(timeout: Duration = .seconds(5)) async {
        await drain(timeout: timeout)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = shared.withLock { state -> Bool in
                if state.stopped { return true }
                state.stopRequested = true
                state.stopWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() } else { wake(force: true) }
        }
    }

    /// What went through so far.
    public var statistics: Statistics { shared.withLock { $0.statistics } }

    private func wake(force: Bool = false) {
        guard wakeWrite >= 0 else { return }
        let needed = shared.withLock { state -> Bool in
            if state.wakePending && !force { return false }
            state.wakePending = true
            return true
        }
        guard needed else { return }
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)  // EAGAIN: the pipe is full, so the loop wakes anyway.
    }

    private static func satisfied(_ state: Shared, attachedBefore: Int, emitsBefore: Int) -> Bool {
        satisfied(emitsWritten: state.emitsWritten, oldestOpen: state.open.min(), attachedBefore: attachedBefore, emitsBefore: emitsBefore)
    }

    private static func satisfied(emitsWritten: Int, oldestOpen: Int?, attachedBefore: Int, emitsBefore: Int) -> Bool {
        emitsWritten >= emitsBefore && (oldestOpen ?? Int.max) >= attachedBefore
    }

    // MARK: - The loop thread

    /// One attached pipe, owned by the loop thread.
    private final class Reader {
        let id: Int
        let fd: Int32
        let formatter: LogLineFormatter
        let file: RotatingLogFile?
        let program: String
        let onClose: (@Sendable () -> Void)?
        var assembler: LogLineAssembler

        init(_ attachment: Attachment, limit: Int) {
            id = attachment.id
            fd = attachment.fd
            program = attachment.source.program
            formatter = LogLineFormatter(source: attachment.source)
            file = attachment.source.file
            onClose = attachment.onClose
            assembler = LogLineAssembler(limit: limit)
        }
    }

    /// Lines for one file in one round.
    private final class FileBatch {
        let file: RotatingLogFile
        var bytes: [UInt8] = []
        init(_ file: RotatingLogFile) { self.file = file }
    }

    /// The loop's state, confined to its thread.
    private struct Loop {
        let owner: LogMultiplexer
        var readers: [Reader] = []
        var pollFDs: [pollfd] = []
        var pollDirty = true
        var out: [UInt8] = []
        var batches: [ObjectIdentifier: FileBatch] = [:]
        var scratch: [JSONObjectScanner.Field] = []
        var clock = LogClock()
        var outputFailed = false
        var lines = 0
        var partials = 0
        var dropped = 0
        var fileErrors = 0
        var emitsWritten = 0
        var byteCount = 0
        let readBuffer: UnsafeMutableBufferPointer<UInt8>

        init(owner: LogMultiplexer) {
            self.owner = owner
            readBuffer = .allocate(capacity: 64 * 1024)
            out.reserveCapacity(256 * 1024)
            scratch.reserveCapacity(32)
        }

        mutating func run() {
            defer { readBuffer.deallocate() }
            // A write to a closed output pipe raises SIGPIPE in the writing thread: blocked here,
            // the write fails with EPIPE instead and the process lives on.
            var pipeSignal = sigset_t()
            sigemptyset(&pipeSignal)
            sigaddset(&pipeSignal, SIGPIPE)
            pthread_sigmask(SIG_BLOCK, &pipeSignal, nil)

            var woken = true
            while true {
                if woken { drainWakePipe() }
                let (incoming, emitted, emitCount, stop, deadline) = owner.shared.withLock { state in
                    state.wakePending = false
                    let incoming = state.incoming
                    state.incoming.removeAll()
                    var emitted: [UInt8] = []
                    swap(&emitted, &state.emitted)
                    return (incoming, emitted, state.emitCount, state.stopRequested, state.waiters.map(\.deadline).min())
                }
                for attachment in incoming {
                    readers.append(Reader(attachment, limit: owner.partialLineLimit))
                    pollDirty = true
                }
                if !emitted.isEmpty {
                    var count = 0
                    for byte in emitted where byte == UInt8(ascii: "\n") { count += 1 }
                    lines += count
                    out.append(contentsOf: emitted)
                }
                if stop {
                    finish(emitCount: emitCount)
                    return
                }

                var timeout: Int32 = -1
                if !out.isEmpty {
                    timeout = 0
                } else if let deadline {
                    let left = deadline - .now
                    timeout = left <= .zero ? 0 : Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
                }
                if owner.wakeRead < 0, timeout < 0 || timeout > 10 { timeout = 10 }
                if pollDirty { rebuildPollSet() }
                let ready = poll(&pollFDs, nfds_t(pollFDs.count), timeout)
                woken = ready > 0 && pollFDs[0].revents != 0
                var closed: [Reader] = []
                if ready > 0 {
                    let time = clock.now()
                    for (offset, reader) in readers.enumerated() {
                        let events = pollFDs[offset + 1].revents
                        guard events != 0 else { continue }
                        if events & Int16(POLLNVAL) != 0 {
                            // Closed behind our back: nothing more to read, not ours to close.
                            flushPending(reader, time: time)
                            closed.append(reader)
                        } else if read(reader, time: time) == .end {
                            flushPending(reader, time: time)
                            close(reader.fd)
                            closed.append(reader)
                        }
                    }
                }
                writeRound()
                if !closed.isEmpty {
                    let ids = Set(closed.map(\.id))
                    readers.removeAll { ids.contains($0.id) }
                    pollDirty = true
                }
                emitsWritten = emitCount
                publish(closed: closed)
            }
        }

        enum ReadResult { case data, empty, end }

        /// Reads once from `reader`: `.end` at end of file or on an error that ends the pipe.
        mutating func read(_ reader: Reader, time: [UInt8]) -> ReadResult {
            let count = readDescriptor(reader.fd, readBuffer.baseAddress, readBuffer.count)
            if count > 0 {
                consume(reader, UnsafeBufferPointer(rebasing: readBuffer[0..<count]), time: time)
                return .data
            }
            if count < 0, errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK { return .empty }
            return .end
        }

        mutating func consume(_ reader: Reader, _ bytes: UnsafeBufferPointer<UInt8>, time: [UInt8]) {
            let formatter = reader.formatter
            var produced = 0
            var partialCount = 0
            let before = out.count
            reader.assembler.feed(bytes) { piece, kind in
                formatter.append(piece, piece: kind, time: time, scratch: &scratch, to: &out)
                produced += 1
                if kind == .partial { partialCount += 1 }
            }
            lines += produced
            partials += partialCount
            if let file = reader.file, out.count > before { batch(for: file).bytes.append(contentsOf: out[before...]) }
            if let recent = owner.recent, out.count > before { recent.append(reader.program, out[before...]) }
        }

        /// Writes the unterminated last line of a pipe that ended.
        mutating func flushPending(_ reader: Reader, time: [UInt8]) {
            let formatter = reader.formatter
            var produced = 0
            let before = out.count
            reader.assembler.finish { piece, kind in
                formatter.append(piece, piece: kind, time: time, scratch: &scratch, to: &out)
                produced += 1
            }
            lines += produced
            if let file = reader.file, out.count > before { batch(for: file).bytes.append(contentsOf: out[before...]) }
            if let recent = owner.recent, out.count > before { recent.append(reader.program, out[before...]) }
        }

        mutating func batch(for file: RotatingLogFile) -> FileBatch {
            let key = ObjectIdentifier(file)
            if let existing = batches[key] { return existing }
            let created = FileBatch(file)
            batches[key] = created
            return created
        }

        /// Writes this round's lines to the output and the files.
        mutating func writeRound() {
            guard !out.isEmpty else { return }
            if !outputFailed {
                if !writeFully(owner.output, out) {
                    outputFailed = true
                    dropped += out.count
                    // Take the SIGPIPE the failed write left pending on this thread.
                    var pipeSignal = sigset_t()
                    sigemptyset(&pipeSignal)
                    sigaddset(&pipeSignal, SIGPIPE)
                    var zero = timespec()
                    _ = sigtimedwait(&pipeSignal, nil, &zero)
                }
            } else {
                dropped += out.count
            }
            if let combined = owner.combinedFile {
                do throws(LogFileError) { try combined.append(out) } catch { fileErrors += 1 }
            }
            for batch in batches.values where !batch.bytes.isEmpty {
                do throws(LogFileError) { try batch.file.append(batch.bytes) } catch { fileErrors += 1 }
                batch.bytes.removeAll(keepingCapacity: batch.bytes.capacity <= 1 << 20)
            }
            byteCount += out.count
            out.removeAll(keepingCapacity: out.capacity <= 4 << 20)
        }

        /// Hands the round's counters to the shared state, calls the closed pipes' `onClose` and
        /// resumes the waiters whose condition now holds or whose time is up.
        mutating func publish(closed: [Reader]) {
            for reader in closed { reader.onClose?() }
            let now = ContinuousClock.now
            let resumed = owner.shared.withLock { state -> [(CheckedContinuation<Bool, Never>, Bool)] in
                state.statistics.lines += lines
                state.statistics.bytes += byteCount
                state.statistics.partialPieces += partials
                state.statistics.droppedBytes += dropped
                state.statistics.fileErrors += fileErrors
                state.emitsWritten = emitsWritten
                for reader in closed {
                    state.open.remove(reader.id)
                    if let file = reader.file {
                        let key = ObjectIdentifier(file)
                        if let entry = state.files[key] {
                            if entry.users <= 1 { state.files.removeValue(forKey: key) } else { state.files[key] = (entry.file, entry.users - 1) }
                        }
                    }
                }
                state.statistics.open = state.open.count
                var resumed: [(CheckedContinuation<Bool, Never>, Bool)] = []
                let written = state.emitsWritten
                let oldestOpen = state.open.min()
                state.waiters.removeAll { waiter in
                    if LogMultiplexer.satisfied(
                        emitsWritten: written, oldestOpen: oldestOpen, attachedBefore: waiter.attachedBefore, emitsBefore: waiter.emitsBefore)
                    {
                        resumed.append((waiter.continuation, true))
                        return true
                    }
                    if now >= waiter.deadline {
                        resumed.append((waiter.continuation, false))
                        return true
                    }
                    return false
                }
                return resumed
            }
            lines = 0
            byteCount = 0
            partials = 0
            dropped = 0
            fileErrors = 0
            for (continuation, value) in resumed { continuation.resume(returning: value) }
            for reader in closed {
                if let file = reader.file { batches.removeValue(forKey: ObjectIdentifier(file)) }
            }
        }

        /// Shutdown: reads what the pipes hold, writes everything, closes the pipes, stops.
        mutating func finish(emitCount: Int) {
            let time = clock.now()
            for reader in readers {
                // What is already in the pipe (bounded: a grandchild may still be writing).
                var reads = 0
                while reads < 64, read(reader, time: time) == .data { reads += 1 }
                flushPending(reader, time: time)
                close(reader.fd)
            }
            writeRound()
            emitsWritten = emitCount
            let closed = readers
            readers.removeAll()
            publish(closed: closed)
            let (late, emitted, waiters, stopWaiters) = owner.shared.withLock { state in
                state.stopped = true
                let late = state.incoming
                state.incoming.removeAll()
                var emitted: [UInt8] = []
                swap(&emitted, &state.emitted)
                state.emitsWritten = state.emitCount
                state.open.removeAll()
                state.statistics.open = 0
                let waiters = state.waiters
                state.waiters.removeAll()
                let stopWaiters = state.stopWaiters
                state.stopWaiters.removeAll()
                return (late, emitted, waiters, stopWaiters)
            }
            if !emitted.isEmpty {
                out.append(contentsOf: emitted)
                writeRound()
                publish(closed: [])
            }
            for attachment in late {
                close(attachment.fd)
                attachment.onClose?()
            }
            for waiter in waiters { waiter.continuation.resume(returning: true) }
            for waiter in stopWaiters { waiter.resume() }
        }

        mutating func rebuildPollSet() {
            pollFDs.removeAll(keepingCapacity: true)
            pollFDs.append(pollfd(fd: owner.wakeRead, events: Int16(POLLIN), revents: 0))
            for reader in readers { pollFDs.append(pollfd(fd: reader.fd, events: Int16(POLLIN), revents: 0)) }
            pollDirty = false
        }

        func drainWakePipe() {
            guard owner.wakeRead >= 0 else { return }
            while readDescriptor(owner.wakeRead, readBuffer.baseAddress, min(64, readBuffer.count)) > 0 {}
        }
    }
}

private func readDescriptor(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int { read(fd, buffer, count) }

/// ``writeFully(_:_:)`` from any thread: SIGPIPE is blocked meanwhile (and a pending one taken),
/// so a closed output pipe fails the write instead of ending the process.
private func writeWithoutSIGPIPE(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var pipeSignal = sigset_t()
    sigemptyset(&pipeSignal)
    sigaddset(&pipeSignal, SIGPIPE)
    var previous = sigset_t()
    pthread_sigmask(SIG_BLOCK, &pipeSignal, &previous)
    let written = writeFully(fd, bytes)
    if !written {
        var zero = timespec()
        _ = sigtimedwait(&pipeSignal, nil, &zero)
    }
    pthread_sigmask(SIG_SETMASK, &previous, nil)
    return written
}

/// Writes all of `bytes` to `fd`, looping on partial writes, EINTR and EAGAIN (waiting for the
/// descriptor to take more); false on any other error (EPIPE: the reader is gone).
private func writeFully(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    bytes.withUnsafeBytes { buffer -> Bool in
        guard let base = buffer.baseAddress else { return true }
        var written = 0
        while written < buffer.count {
            let result = write(fd, base + written, buffer.count - written)
            if result > 0 {
                written += result
            } else if result < 0, errno == EINTR {
                continue
            } else if result < 0, errno == EAGAIN || errno == EWOULDBLOCK {
                var descriptor = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                _ = poll(&descriptor, 1, 1000)
            } else {
                return false
            }
        }
        return true
    }
}

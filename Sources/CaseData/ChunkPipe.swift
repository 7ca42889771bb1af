import PostgresClient

/// A bounded hand-over of byte chunks from one task to another: the sender waits while the buffer
/// is full, so a fast `COPY … TO STDOUT` never runs ahead of the destination by more than the
/// buffer.
actor ChunkChannel {
    private let capacity: Int
    private var buffer: [[UInt8]] = []
    private var finished = false
    private var failure: (any Error)?
    private var receiver: CheckedContinuation<[UInt8]?, any Error>?
    private var senders: [CheckedContinuation<Void, any Error>] = []

    init(capacity: Int) { self.capacity = max(1, capacity) }

    /// Waits for room, then buffers `chunk`. Throws when the receiving side gave up.
    func send(_ chunk: [UInt8]) async throws {
        while buffer.count >= capacity && failure == nil && !finished {
            try await withCheckedThrowingContinuation { senders.append($0) }
        }
        if let failure { throw failure }
        if let receiver {
            self.receiver = nil
            receiver.resume(returning: chunk)
            return
        }
        buffer.append(chunk)
    }

    /// The end of the stream (`error` nil) or its failure; either wakes every waiter.
    func finish(_ error: (any Error)?) {
        guard !finished else { return }
        finished = true
        if let error, failure == nil { failure = error }
        if let receiver {
            self.receiver = nil
            if buffer.isEmpty {
                if let failure { receiver.resume(throwing: failure) } else { receiver.resume(returning: nil) }
            } else {
                receiver.resume(returning: buffer.removeFirst())
            }
        }
        wakeSenders()
    }

    /// The receiving side gave up: senders fail with `error`.
    func cancel(_ error: any Error) {
        if failure == nil { failure = error }
        finished = true
        buffer.removeAll()
        wakeSenders()
    }

    /// The next chunk, nil at the end.
    func receive() async throws -> [UInt8]? {
        if !buffer.isEmpty {
            let chunk = buffer.removeFirst()
            wakeSenders()
            return chunk
        }
        if let failure { throw failure }
        if finished { return nil }
        return try await withCheckedThrowingContinuation { receiver = $0 }
    }

    private func wakeSenders() {
        let waiting = senders
        senders.removeAll()
        for sender in waiting { sender.resume() }
    }

    /// The receiving end as an async sequence.
    nonisolated var chunks: Chunks { Chunks(channel: self) }

    struct Chunks: AsyncSequence, Sendable {
        typealias Element = [UInt8]
        let channel: ChunkChannel
        struct Iterator: AsyncIteratorProtocol {
            let channel: ChunkChannel
            mutating func next() async throws -> [UInt8]? { try await channel.receive() }
        }
        func makeAsyncIterator() -> Iterator { Iterator(channel: channel) }
    }
}

enum CopyPipe {
    /// Streams `COPY (…) TO STDOUT` on `source` into `COPY … FROM STDIN` on `destination`,
    /// concurrently, through a bounded buffer. Returns the rows the destination read.
    static func run(
        from source: PostgresConnection, _ copyOut: String, to destination: PostgresConnection, _ copyIn: String,
        chunkBytes: Int, bufferedChunks: Int
    ) async throws -> Int {
        let channel = ChunkChannel(capacity: bufferedChunks)
        return try await withThrowingTaskGroup(of: Int?.self) { group in
            group.addTask {
                do {
                    try await source.copyOut(copyOut, chunkSize: chunkBytes) { chunk in try await channel.send(chunk) }
                    await channel.finish(nil)
                } catch {
                    await channel.finish(error)
                    throw error
                }
                return nil
            }
            group.addTask {
                do {
                    return try await destination.copyIn(copyIn, from: channel.chunks)
                } catch {
                    await channel.cancel(error)
                    throw error
                }
            }
            var rows = 0
            for try await result in group {
                if let result { rows = result }
            }
            return rows
        }
    }
}

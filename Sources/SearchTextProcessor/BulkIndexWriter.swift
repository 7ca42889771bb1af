import CaseData
import Foundation

/// Collects the texts of the messages a worker handles together and writes them to the index in
/// one bulk write per case (group commit).
///
/// The worker runtime hands messages to the handler one by one (concurrently, up to its
/// concurrency); each ``write(_:caseID:)`` call waits while its entries join a pending bulk. The
/// bulk is written when ``bulkSize`` rows are pending or ``window`` after its first entry came,
/// whichever is first. When a bulk write fails, each caller's entries are written again on
/// their own, so one bad message never fails its neighbours: each caller gets its own outcome.
actor BulkIndexWriter {
    /// What the writer writes with; the store in production, a fake in tests.
    typealias Write = @Sendable ([SearchIndexEntry], Int64) async throws -> Void

    private struct Pending {
        var caseID: Int64
        var entries: [SearchIndexEntry]
        var continuation: CheckedContinuation<Void, any Error>
    }

    private let writeRows: Write
    let bulkSize: Int
    let window: Duration
    private var pending: [Pending] = []
    private var pendingRows = 0
    private var timer: Task<Void, Never>?
    /// Bulk writes done (for tests and logs).
    private(set) var bulkWrites = 0

    init(bulkSize: Int, window: Duration, write: @escaping Write) {
        self.writeRows = write
        self.bulkSize = max(1, bulkSize)
        self.window = window
    }

    /// Writes `entries` into the index of case `caseID`, together with the entries of concurrent callers.
    func write(_ entries: [SearchIndexEntry], caseID: Int64) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            enqueue(Pending(caseID: caseID, entries: entries, continuation: continuation))
        }
    }

    private func enqueue(_ item: Pending) {
        pending.append(item)
        pendingRows += item.entries.count
        if pendingRows >= bulkSize || window == .zero {
            startFlush()
        } else if timer == nil {
            let window = self.window
            timer = Task { [weak self] in
                try? await Task.sleep(for: window)
                await self?.startFlush()
            }
        }
    }

    private func startFlush() {
        timer?.cancel()
        timer = nil
        let batch = pending
        pending = []
        pendingRows = 0
        guard !batch.isEmpty else { return }
        Task { await self.flush(batch) }
    }

    private func flush(_ batch: [Pending]) async {
        var byCase: [Int64: [Pending]] = [:]
        for item in batch { byCase[item.caseID, default: []].append(item) }
        for (caseID, items) in byCase {
            bulkWrites += 1
            do {
                try await writeRows(items.flatMap(\.entries), caseID)
                for item in items { item.continuation.resume() }
            } catch {
                if items.count == 1 {
                    items[0].continuation.resume(throwing: error)
                    continue
                }
                // Isolate the failure: each message's entries on their own.
                for item in items {
                    do {
                        try await writeRows(item.entries, caseID)
                        item.continuation.resume()
                    } catch {
                        item.continuation.resume(throwing: error)
                    }
                }
            }
        }
    }
}

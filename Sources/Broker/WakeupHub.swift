/// Parks long-polling receivers until their queue may have messages, then wakes them.
///
/// Each queue has a generation number, bumped by every notification for it (and all of them by a
/// "something changed" signal). A receiver reads the generation before it looks at the queue and
/// waits only while the generation is unchanged, so a send that lands between the look and the
/// wait is never missed. Notifications coalesce: any number of them wake a waiter once.
actor WakeupHub {
    private var perQueue: [String: UInt64] = [:]
    private var global: UInt64 = 0
    private var waiters: [UInt64: (queue: String, continuation: CheckedContinuation<Void, Never>)] = [:]
    private var nextID: UInt64 = 0

    func generation(of queue: String) -> UInt64 { (perQueue[queue] ?? 0) &+ global }

    /// Wakes the receivers of these queues.
    func signal(_ queues: some Sequence<String>) {
        var touched = Set<String>()
        for queue in queues where touched.insert(queue).inserted {
            perQueue[queue, default: 0] &+= 1
        }
        guard !touched.isEmpty else { return }
        for (id, waiter) in waiters where touched.contains(waiter.queue) {
            waiters.removeValue(forKey: id)
            waiter.continuation.resume()
        }
    }

    /// Wakes every receiver (SQLite change detected, listener reconnected).
    func signalAll() {
        global &+= 1
        let all = waiters
        waiters.removeAll()
        for waiter in all.values { waiter.continuation.resume() }
    }

    /// Number of parked receivers.
    var waiting: Int { waiters.count }

    /// Returns when `queue`'s generation moves past `generation`, after `timeout`, or on cancellation.
    func wait(for queue: String, after generation: UInt64, timeout: Duration) async {
        if self.generation(of: queue) != generation || timeout <= .zero { return }
        nextID &+= 1
        let id = nextID
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            await self?.expire(id)
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                waiters[id] = (queue, continuation)
            }
        } onCancel: {
            Task { await self.expire(id) }
        }
        timer.cancel()
    }

    private func expire(_ id: UInt64) {
        waiters.removeValue(forKey: id)?.continuation.resume()
    }
}

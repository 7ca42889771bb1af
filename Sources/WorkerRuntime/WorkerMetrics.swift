import Metrics

/// The worker's swift-metrics instruments (exported by the Prometheus endpoint when one runs).
///
/// - `exchanger_messages_total{program,queue,outcome}`: outcome is `success`, `silent`, `retry`,
///   `dead_lettered`, `lease_lost` or `failed_no_dlq`.
/// - `exchanger_message_handling_seconds{program,queue}`: time in the handler.
/// - `exchanger_messages_in_hand{program}`: messages received and not yet settled.
struct WorkerMetrics: Sendable {
    let program: String
    private let inHand: Gauge
    private let inHandCount = LockedCounter()

    init(program: String) {
        self.program = program
        self.inHand = Gauge(label: "exchanger_messages_in_hand", dimensions: [("program", program)])
    }

    func count(_ outcome: String, queue: String) {
        Counter(label: "exchanger_messages_total", dimensions: [("program", program), ("queue", queue), ("outcome", outcome)]).increment()
    }

    func handled(duration: Duration, queue: String) {
        Timer(label: "exchanger_message_handling_seconds", dimensions: [("program", program), ("queue", queue)])
            .recordNanoseconds(duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }

    func inFlight(add delta: Int) {
        inHand.record(inHandCount.add(delta))
    }
}

import ConcurrencySupport

/// A counter shared by the worker's tasks.
final class LockedCounter: Sendable {
    private let box = LockedBox(0)
    func add(_ delta: Int) -> Int { box.withLock { $0 += delta; return $0 } }
}

import ConcurrencySupport
import Metrics

/// The supervisor's Prometheus metrics, per program: desired and running workers, restarts,
/// current backoff, processes in a crash loop; and the depth of the queues it scales on.
final class SupervisorMetrics: Sendable {
    private let gauges = LockedBox<[String: Gauge]>([:])

    private func gauge(_ label: String, _ dimensions: [(String, String)]) -> Gauge {
        let key = label + dimensions.map { "|\($0.0)=\($0.1)" }.joined()
        return gauges.withLock { cache in
            if let existing = cache[key] { return existing }
            let created = Gauge(label: label, dimensions: dimensions)
            cache[key] = created
            return created
        }
    }

    func spawned(program: String) {
        Counter(label: "exchanger_supervisor_spawns_total", dimensions: [("program", program)]).increment()
    }

    func restarted(program: String) {
        Counter(label: "exchanger_supervisor_restarts_total", dimensions: [("program", program)]).increment()
    }

    func exited(program: String) {
        Counter(label: "exchanger_supervisor_exits_total", dimensions: [("program", program)]).increment()
    }

    func update(desired: [String: Int], running: [String: Int], failed: [String: Int], backoff: [String: Double]) {
        for (program, value) in desired { gauge("exchanger_supervisor_desired_workers", [("program", program)]).record(value) }
        for (program, value) in running { gauge("exchanger_supervisor_running_workers", [("program", program)]).record(value) }
        for (program, value) in failed { gauge("exchanger_supervisor_crashloop_workers", [("program", program)]).record(value) }
        for (program, value) in backoff { gauge("exchanger_supervisor_backoff_seconds", [("program", program)]).record(value) }
    }

    func queueDepth(queue: String, visible: Int) {
        gauge("exchanger_supervisor_queue_visible_messages", [("queue", queue)]).record(visible)
    }
}

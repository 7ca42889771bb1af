import Deployments
import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Keeps a worker process's row in `exchanger_worker_presence` fresh while it runs, so
/// `exchanger ps` lists it whether a supervisor started it or a container platform did. Presence
/// is for operators only: a failure to write it is logged (once per outage) and never stops the
/// worker.
struct PresenceReporter: Sendable {
    let store: DeploymentStore
    let presence: WorkerPresence
    let interval: Duration
    let logger: Logger

    /// A reporter for this process, with what the supervisor's environment says about it.
    init(store: DeploymentStore, configuration: WorkerConfiguration, interval: Duration, environment: [String: String], logger: Logger) {
        var name = [CChar](repeating: 0, count: 256)
        let hostname = gethostname(&name, name.count) == 0 ? String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
        let pid = getpid()
        let queue: String? = if case .queue(let name) = configuration.source { name } else { nil }
        self.store = store
        self.presence = WorkerPresence(
            id: "\(hostname):\(pid):\(UInt32.random(in: 0...UInt32.max))", hostname: hostname, pid: pid, program: configuration.program,
            queue: queue, supervisorID: environment["EXCHANGER_SUPERVISOR_ID"].flatMap { $0.isEmpty ? nil : $0 },
            deploymentID: environment["EXCHANGER_DEPLOYMENT_ID"].flatMap { $0.isEmpty ? nil : $0 })
        self.interval = interval
        self.logger = logger
    }

    /// The row expires after three missed renewals.
    var ttl: Duration { interval * 3 }

    /// Announces the process, then renews the row every `interval` until cancelled.
    func run() async {
        var announced = false
        var failing = false
        while !Task.isCancelled {
            do {
                let renewed = announced ? try await store.renewPresence(id: presence.id, ttl: ttl) : false
                if !renewed {
                    try await store.announce(presence, ttl: ttl)
                    announced = true
                }
                if failing {
                    logger.info("worker presence recorded again", metadata: ["presenceId": "\(presence.id)"])
                    failing = false
                }
            } catch {
                if !failing {
                    logger.warning("could not record the worker's presence; `exchanger ps` may not list it", metadata: [
                        "presenceId": "\(presence.id)", "error": "\(error)",
                    ])
                    failing = true
                }
            }
            do {
                try await Task.sleep(for: interval)
            } catch {
                return
            }
        }
    }

    /// Removes the row (the process exits).
    func withdraw() async {
        do {
            try await store.withdrawPresence(id: presence.id)
        } catch {
            logger.debug("could not remove the worker's presence; it expires", metadata: ["presenceId": "\(presence.id)", "error": "\(error)"])
        }
    }
}

import Foundation

/// A worker process as it announces itself in `exchanger_worker_presence`: every worker does, bound
/// to a supervisor or started by a container platform on its own, so `exchanger ps` shows all of
/// them. The row is renewed while the process runs and removed when it exits; a row whose
/// `expiresAt` passed belongs to a process that vanished (SIGKILL, a lost host).
public struct WorkerPresence: Sendable, Hashable {
    /// Unique per process run: `hostname:pid:random`.
    public var id: String
    /// The host (in a container: the container's hostname).
    public var hostname: String
    /// The process id on that host.
    public var pid: Int32
    /// The program (`s3-copy`, `uploader`, …).
    public var program: String
    /// The queue it serves, when bound to one (`--queue`); nil when it follows its program's queues.
    public var queue: String?
    /// The supervisor that started it (`EXCHANGER_SUPERVISOR_ID`); nil for an unbound replica.
    public var supervisorID: String?
    /// The per-exchange deployment it serves (`EXCHANGER_DEPLOYMENT_ID`), when a supervisor started it for one.
    public var deploymentID: String?
    /// When it announced itself.
    public var startedAt: Date
    /// Its last renewal.
    public var heartbeatAt: Date
    /// When the row counts as stale unless renewed.
    public var expiresAt: Date
    /// Whether the row was fresh when read (database clock).
    public var isLive: Bool

    /// A value with the given fields.
    public init(
        id: String, hostname: String, pid: Int32, program: String, queue: String? = nil, supervisorID: String? = nil,
        deploymentID: String? = nil, startedAt: Date = Date(), heartbeatAt: Date = Date(), expiresAt: Date = Date(), isLive: Bool = true
    ) {
        self.id = id
        self.hostname = hostname
        self.pid = pid
        self.program = program
        self.queue = queue
        self.supervisorID = supervisorID
        self.deploymentID = deploymentID
        self.startedAt = startedAt
        self.heartbeatAt = heartbeatAt
        self.expiresAt = expiresAt
        self.isLive = isLive
    }
}

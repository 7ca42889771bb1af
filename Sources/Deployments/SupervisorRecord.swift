import Foundation

/// A supervisor's status as others see it (free text; these are the ones the supervisor writes).
public struct SupervisorStatus: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// Reconciling deployments.
    public static let running = SupervisorStatus(rawValue: "running")
    /// Stopping everything (its own SIGTERM); it claims nothing new.
    public static let draining = SupervisorStatus(rawValue: "draining")

    public var description: String { rawValue }
}

/// Who a supervisor is, as it registers with ``DeploymentStore/register(_:lease:)``.
public struct SupervisorIdentity: Sendable, Hashable {
    /// Unique among the supervisors sharing a broker while they live (for example
    /// `{hostname}-{pid}-{random}`); 1–200 characters, no control characters.
    public var id: String
    public var hostname: String
    public var pid: Int32
    /// Where its `/healthz`, `/readyz`, `/metrics` endpoint listens, if anywhere.
    public var httpPort: Int?
    public var status: SupervisorStatus

    public init(id: String, hostname: String, pid: Int32, httpPort: Int? = nil, status: SupervisorStatus = .running) {
        self.id = id
        self.hostname = hostname
        self.pid = pid
        self.httpPort = httpPort
        self.status = status
    }

    func validate() throws(DeploymentError) {
        try Validation.identifier(id, what: "supervisor id")
        guard hostname.utf8.count <= 255, !hostname.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw DeploymentError(.invalidArgument, "hostname must be at most 255 bytes without control characters")
        }
        guard pid > 0 else { throw DeploymentError(.invalidArgument, "pid must be positive, not \(pid)") }
        if let httpPort, !(1...65_535).contains(httpPort) {
            throw DeploymentError(.invalidArgument, "HTTP port must be 1…65535, not \(httpPort)")
        }
        try Validation.identifier(status.rawValue, what: "status")
    }
}

/// A supervisor row, for `exchanger ps`.
public struct SupervisorRecord: Sendable, Hashable {
    public var id: String
    public var hostname: String
    public var pid: Int32
    public var startedAt: Date
    public var heartbeatAt: Date
    public var leaseExpiresAt: Date
    public var httpPort: Int?
    public var status: SupervisorStatus
    /// Whether its lease had not expired when read (by the database clock).
    public var isLive: Bool

    public init(
        id: String, hostname: String, pid: Int32, startedAt: Date, heartbeatAt: Date, leaseExpiresAt: Date, httpPort: Int?,
        status: SupervisorStatus, isLive: Bool
    ) {
        self.id = id
        self.hostname = hostname
        self.pid = pid
        self.startedAt = startedAt
        self.heartbeatAt = heartbeatAt
        self.leaseExpiresAt = leaseExpiresAt
        self.httpPort = httpPort
        self.status = status
        self.isLive = isLive
    }
}

import Foundation

/// Whether the orchestrator wants a deployment's workers to run.
public enum DesiredState: String, Sendable, Hashable, Codable, CaseIterable {
    /// Keep between `minProcs` and `maxProcs` workers running.
    case running
    /// Let the workers finish the batch in hand and exit; start none.
    case stopped
}

/// What the orchestrator asks for: run `program` on `queue` for an exchange, between `minProcs`
/// and `maxProcs` processes. Written with ``DeploymentStore/upsert(_:)``.
public struct DeploymentSpec: Sendable, Hashable, Codable {
    /// Caller-chosen id, for example `{exchangeId}/{program}`; 1–200 characters, no control characters.
    public var id: String
    /// The exchange the deployment belongs to; 1–200 characters, no control characters.
    public var exchangeID: String
    /// The supervisor.conf program to run (`[A-Za-z0-9_.-]{1,80}`).
    public var program: String
    /// The queue its workers consume (a broker queue name).
    public var queue: String
    /// Fewest workers while running (≥ 0).
    public var minProcs: Int
    /// Most workers (≥ `minProcs`, ≤ ``DeploymentSpec/maxProcsLimit``).
    public var maxProcs: Int
    /// Queue depth per worker the supervisor scales on; `nil` takes the program's `messages_per_proc`.
    public var messagesPerProc: Int?
    /// Running or stopped.
    public var desiredState: DesiredState

    /// The largest `maxProcs` accepted.
    public static let maxProcsLimit = 10_000

    public init(
        id: String, exchangeID: String, program: String, queue: String, minProcs: Int, maxProcs: Int,
        messagesPerProc: Int? = nil, desiredState: DesiredState = .running
    ) {
        self.id = id
        self.exchangeID = exchangeID
        self.program = program
        self.queue = queue
        self.minProcs = minProcs
        self.maxProcs = maxProcs
        self.messagesPerProc = messagesPerProc
        self.desiredState = desiredState
    }

    /// Throws ``DeploymentError/Code/invalidArgument`` naming the first fault.
    public func validate() throws(DeploymentError) {
        try Validation.identifier(id, what: "deployment id")
        try Validation.identifier(exchangeID, what: "exchange id")
        try Validation.name(program, what: "program")
        try Validation.name(queue, what: "queue")
        guard minProcs >= 0 else { throw DeploymentError(.invalidArgument, "min procs must be 0 or more, not \(minProcs)") }
        guard maxProcs >= minProcs else {
            throw DeploymentError(.invalidArgument, "max procs (\(maxProcs)) must not be less than min procs (\(minProcs))")
        }
        guard maxProcs <= Self.maxProcsLimit else {
            throw DeploymentError(.invalidArgument, "max procs must be at most \(Self.maxProcsLimit), not \(maxProcs)")
        }
        if let messagesPerProc, messagesPerProc < 1 {
            throw DeploymentError(.invalidArgument, "messages per proc must be at least 1, not \(messagesPerProc)")
        }
    }
}

/// A deployment row: the orchestrator's spec, and what its owning supervisor decided and runs.
public struct Deployment: Sendable, Hashable {
    public var id: String
    public var exchangeID: String
    public var program: String
    public var queue: String
    public var minProcs: Int
    public var maxProcs: Int
    /// `nil`: the program's `messages_per_proc` from supervisor.conf.
    public var messagesPerProc: Int?
    public var desiredState: DesiredState
    /// The supervisor that reconciles it, while its lease lasts.
    public var owner: String?
    /// When the owner's lease ends unless renewed (by ``DeploymentStore/claim(supervisorID:lease:)``).
    public var leaseExpiresAt: Date?
    /// How many workers the owner decided to run.
    public var targetProcs: Int
    /// How many workers the owner reported running.
    public var runningProcs: Int
    public var createdAt: Date
    /// Last change of the spec or desired state (not of leases or counts).
    public var updatedAt: Date

    public init(
        id: String, exchangeID: String, program: String, queue: String, minProcs: Int, maxProcs: Int, messagesPerProc: Int?,
        desiredState: DesiredState, owner: String?, leaseExpiresAt: Date?, targetProcs: Int, runningProcs: Int,
        createdAt: Date, updatedAt: Date
    ) {
        self.id = id
        self.exchangeID = exchangeID
        self.program = program
        self.queue = queue
        self.minProcs = minProcs
        self.maxProcs = maxProcs
        self.messagesPerProc = messagesPerProc
        self.desiredState = desiredState
        self.owner = owner
        self.leaseExpiresAt = leaseExpiresAt
        self.targetProcs = targetProcs
        self.runningProcs = runningProcs
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    /// The orchestrator's part of the row.
    public var spec: DeploymentSpec {
        DeploymentSpec(
            id: id, exchangeID: exchangeID, program: program, queue: queue, minProcs: minProcs, maxProcs: maxProcs,
            messagesPerProc: messagesPerProc, desiredState: desiredState)
    }
}

/// Checks of the names and ids the store accepts.
enum Validation {
    static let maxIdentifierLength = 200

    /// 1–200 characters, no control characters.
    static func identifier(_ value: String, what: String) throws(DeploymentError) {
        guard !value.isEmpty else { throw DeploymentError(.invalidArgument, "\(what) is empty") }
        guard value.utf8.count <= maxIdentifierLength else {
            throw DeploymentError(.invalidArgument, "\(what) '\(value.prefix(40))…' is longer than \(maxIdentifierLength) bytes")
        }
        guard !value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw DeploymentError(.invalidArgument, "\(what) contains control characters")
        }
    }

    /// `[A-Za-z0-9_.-]{1,80}`, like queue and program names.
    static func name(_ value: String, what: String) throws(DeploymentError) {
        guard !value.isEmpty else { throw DeploymentError(.invalidArgument, "\(what) name is empty") }
        guard value.utf8.count <= 80 else {
            throw DeploymentError(.invalidArgument, "\(what) name '\(value.prefix(40))…' is longer than 80 characters")
        }
        for byte in value.utf8 {
            let ok = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-")
            guard ok else {
                throw DeploymentError(.invalidArgument, "\(what) name '\(value)' may only contain letters, digits, '_', '.' and '-'")
            }
        }
    }

    /// A lease between 100 ms and 1 hour.
    static func lease(_ lease: Duration) throws(DeploymentError) {
        guard lease >= .milliseconds(100), lease <= .seconds(3600) else {
            throw DeploymentError(.invalidArgument, "a lease must be between 100 ms and 1 hour, not \(lease)")
        }
    }
}

import Foundation

/// A worker process's state, in supervisord's words (free text: a supervisor may write others).
public struct WorkerState: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// Spawned, not yet up for `startsecs`.
    public static let starting = WorkerState(rawValue: "STARTING")
    /// Up.
    public static let running = WorkerState(rawValue: "RUNNING")
    /// Exited too early; waiting to be started again.
    public static let backoff = WorkerState(rawValue: "BACKOFF")
    /// Sent its stop signal; not yet exited.
    public static let stopping = WorkerState(rawValue: "STOPPING")
    /// Stopped on request; no process.
    public static let stopped = WorkerState(rawValue: "STOPPED")
    /// Exited and will not be restarted; no process.
    public static let exited = WorkerState(rawValue: "EXITED")
    /// Crash loop given up on (or could not be spawned); no process.
    public static let failed = WorkerState(rawValue: "FAILED")

    /// The states in which no process runs and none will be started: such rows never count as
    /// live workers. Every other state (unknown ones included) does.
    public static let finished: Set<WorkerState> = [.stopped, .exited, .failed]

    /// Whether a worker in this state has, or will have, a process.
    public var isLive: Bool { !Self.finished.contains(self) }

    public var description: String { rawValue }
}

/// One worker process a supervisor runs (or last ran) for a deployment or a global program.
public struct WorkerRecord: Sendable, Hashable {
    /// The supervisor that runs it.
    public var supervisorID: String
    /// The supervisor.conf program.
    public var program: String
    /// The instance number within the program (and deployment), from 0.
    public var instance: Int
    /// The deployment it serves; `nil` for a global program (stored as '').
    public var deploymentID: String?
    /// The process id, while there is a process.
    public var pid: Int32?
    public var state: WorkerState
    /// When the current process started (the supervisor's clock).
    public var startedAt: Date?
    /// How often it was restarted.
    public var restarts: Int
    /// The last process's exit status (a negative number: killed by that signal).
    public var lastExitStatus: Int32?
    /// When the row last changed (set by the store; ignored in ``DeploymentStore/report(supervisorID:deployments:workers:)``).
    public var updatedAt: Date?

    public init(
        supervisorID: String, program: String, instance: Int, deploymentID: String? = nil, pid: Int32? = nil, state: WorkerState,
        startedAt: Date? = nil, restarts: Int = 0, lastExitStatus: Int32? = nil, updatedAt: Date? = nil
    ) {
        self.supervisorID = supervisorID
        self.program = program
        self.instance = instance
        self.deploymentID = deploymentID
        self.pid = pid
        self.state = state
        self.startedAt = startedAt
        self.restarts = restarts
        self.lastExitStatus = lastExitStatus
        self.updatedAt = updatedAt
    }

    /// What identifies the row within its supervisor's.
    struct Key: Hashable {
        var program: String
        var deploymentID: String
        var instance: Int
    }

    var key: Key { Key(program: program, deploymentID: deploymentID ?? "", instance: instance) }

    func validate(supervisorID expected: String) throws(DeploymentError) {
        guard supervisorID == expected else {
            throw DeploymentError(.invalidArgument, "worker \(program)#\(instance) belongs to supervisor '\(supervisorID)', not '\(expected)'")
        }
        try Validation.name(program, what: "program")
        if let deploymentID { try Validation.identifier(deploymentID, what: "deployment id") }
        guard instance >= 0 else { throw DeploymentError(.invalidArgument, "instance must be 0 or more, not \(instance)") }
        guard restarts >= 0 else { throw DeploymentError(.invalidArgument, "restarts must be 0 or more, not \(restarts)") }
        try Validation.identifier(state.rawValue, what: "worker state")
    }
}

/// What a supervisor reports about a deployment it owns.
public struct DeploymentCounts: Sendable, Hashable {
    public var id: String
    /// How many workers it decided to run.
    public var targetProcs: Int
    /// How many run now.
    public var runningProcs: Int

    public init(id: String, targetProcs: Int, runningProcs: Int) {
        self.id = id
        self.targetProcs = targetProcs
        self.runningProcs = runningProcs
    }
}

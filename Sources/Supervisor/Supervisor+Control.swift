import Logging

/// What `exchanger ctl` asks of a supervisor, in supervisorctl's verbs.
public enum SupervisorControlAction: String, Sendable, Hashable, CaseIterable {
    /// Run the program's processes again (and let the autoscaler scale it again).
    case start
    /// Stop the program's processes and keep them stopped until `start` (or a restart of the
    /// supervisor); the autoscaler and a configuration reload leave them alone meanwhile.
    case stop
    /// Stop each running process and start it again (a stopped one just starts).
    case restart
}

/// Why a supervisor refused a control request.
public struct SupervisorControlError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of refusal it is.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case unknownProgram, perExchange, draining
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// No program of that name in `supervisor.conf`.
        public static let unknownProgram = Code(.unknownProgram)
        /// The program runs per exchange: its exchanges' deployments decide its processes.
        public static let perExchange = Code(.perExchange)
        /// The supervisor is stopping everything.
        public static let draining = Code(.draining)

        /// The code's name, e.g. `unknownProgram`.
        public var description: String { base.rawValue }
    }

    /// What kind of refusal it is.
    public var code: Code
    /// Why, in a sentence.
    public var message: String

    /// Creates an error.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(message) [\(code)]" }
}

extension Supervisor {
    /// Applies `action` to the global program `program` and returns its slots afterwards (a stop
    /// or restart is under way when this returns: the slots say `STOPPING`).
    /// - Throws: ``SupervisorControlError``.
    public func control(_ action: SupervisorControlAction, program name: String) async throws(SupervisorControlError) -> [SlotStatus] {
        // Through the event loop, like every other change of the slots.
        let result: Result<Void, SupervisorControlError> = await withCheckedContinuation { continuation in
            eventSink.yield(.control(action, program: name, reply: continuation))
        }
        try result.get()
        return status().filter { $0.program == name && $0.deploymentID.isEmpty }
    }

    /// The event loop's half of ``control(_:program:)``.
    func applyControl(_ action: SupervisorControlAction, program name: String) -> Result<Void, SupervisorControlError> {
        guard !draining else { return .failure(SupervisorControlError(.draining, "the supervisor is stopping every process")) }
        guard let program = configuration.program(named: name) else {
            let names = configuration.programs.filter { $0.scope == .global }.map(\.name).sorted().joined(separator: ", ")
            return .failure(SupervisorControlError(.unknownProgram, "no program '\(name)' in \(configuration.file) (global programs: \(names))"))
        }
        guard program.scope == .global else {
            return .failure(SupervisorControlError(
                .perExchange, "'\(name)' runs per exchange; its processes follow the exchanges' deployments (exchanger scale JOB \(name) --min N --max M)"))
        }
        let group = GroupKey(program: name, deploymentID: "")
        let keys = slots.keys.filter { $0.program == name && $0.deploymentID.isEmpty }.sorted()
        logger.info("control request", metadata: ["worker": "\(name)", "action": "\(action.rawValue)", "processes": "\(keys.count)"])
        switch action {
        case .stop:
            heldStopped.insert(name)
            for key in keys { stopSlot(key, retire: false) }
        case .start:
            heldStopped.remove(name)
            setTarget(group, program: program, deployment: nil, count: max(1, groupTargets[group] ?? program.minProcs, program.minProcs))
        case .restart:
            heldStopped.remove(name)
            for key in keys {
                if slots[key]?.machine.pid != nil {
                    slots[key]?.restartAfterStop = true
                    stopSlot(key, retire: false)
                } else {
                    startSlot(key)
                }
            }
            if keys.isEmpty {
                setTarget(group, program: program, deployment: nil, count: max(1, groupTargets[group] ?? program.minProcs, program.minProcs))
            }
        }
        return .success(())
    }
}

import Broker
import ConcurrencySupport
import Deployments
import Foundation
import Logging
import ProcessSupport
#if canImport(Glibc)
import Glibc
#endif

/// The supervisor: runs the global programs of `supervisor.conf` and the per-exchange
/// deployments written to the broker, restarts what dies, scales on queue depth, and stops
/// everything in order.
///
/// All state lives in this actor and changes only in ``run()``'s event loop; each process slot is
/// a ``ProcessStateMachine`` value and the loop performs the actions it returns (spawn, timers,
/// signals). Status readers (HTTP, tests) see consistent snapshots.
public actor Supervisor {
    /// One process slot: a program instance, global (`deploymentID == ""`) or of a deployment.
    public struct SlotKey: Hashable, Sendable, Comparable, CustomStringConvertible {
        public var program: String
        public var deploymentID: String
        public var instance: Int

        public var description: String { deploymentID.isEmpty ? "\(program):\(instance)" : "\(program)[\(deploymentID)]:\(instance)" }

        public static func < (lhs: SlotKey, rhs: SlotKey) -> Bool {
            (lhs.program, lhs.deploymentID, lhs.instance) < (rhs.program, rhs.deploymentID, rhs.instance)
        }
    }

    /// A group of slots: one program, globally or for one deployment.
    struct GroupKey: Hashable, Sendable {
        var program: String
        var deploymentID: String
    }

    struct Slot {
        var key: SlotKey
        var machine: ProcessStateMachine
        var program: ProgramConfiguration
        var deployment: Deployment?
        /// Scaled away or its program removed: delete the slot once idle.
        var retiring = false
        /// Its program's command or settings changed: start again with them once stopped.
        var restartAfterStop = false
        /// Asked to run again while its process was stopping: start once the old one is gone.
        var wantedAgain = false
        var startedAt: Date?
        var spawnedAt: ContinuousClock.Instant?
    }

    enum Event: Sendable {
        case exited(pid: Int32, status: Int32)
        case startCheck(SlotKey, pid: Int32)
        case restart(SlotKey)
        case killTimer(SlotKey, pid: Int32)
        case signal(Int32)
        case reconcile
        case reconciled(Result<ReconcileResult, any Error>)
        case drainTimeout
        case control(SupervisorControlAction, program: String, reply: CheckedContinuation<Result<Void, SupervisorControlError>, Never>)
    }

    /// A snapshot of one slot, for status output, metrics and tests.
    public struct SlotStatus: Sendable, Codable, Equatable {
        public var program: String
        public var deploymentID: String
        public var instance: Int
        public var state: String
        public var pid: Int32?
        public var restarts: Int
        public var lastExitStatus: Int32?
        public var backoffSeconds: Double
    }

    /// Readiness as `/readyz` reports it.
    public struct Readiness: Sendable {
        public var ready: Bool
        public var reason: String
    }

    public let identifier: String
    /// A fresh id per run; children carry it (EXCHANGER_SUPERVISOR_RUN) so a later run can find
    /// processes an earlier, killed run left behind.
    public let runID: String
    var configuration: SupervisorConfiguration
    let logger: Logger
    let spawner: ProcessSpawner
    let reaper: ChildReaper
    let multiplexer: LogMultiplexer
    let brokerHandle: Broker?
    let deploymentStore: DeploymentStore?
    let clock = ContinuousClock()
    let events: AsyncStream<Event>
    let eventSink: AsyncStream<Event>.Continuation
    let random: @Sendable () -> Double
    let baseEnvironment: [String: String]
    /// What of ``baseEnvironment`` each program gets (least privilege).
    let environmentPolicy: ProgramEnvironment
    /// The broker URL children get as EXCHANGER_DATABASE_URL (a program's own `environment` wins).
    let childBrokerURL: String?
    let metrics: SupervisorMetrics

    var slots: [SlotKey: Slot] = [:]
    var pids: [Int32: SlotKey] = [:]
    var autoscalers: [GroupKey: Autoscaler] = [:]
    var groupTargets: [GroupKey: Int] = [:]
    var ownedDeployments: [String: Deployment] = [:]
    var programFiles: [String: RotatingLogFile] = [:]
    var draining = false
    /// Global programs an operator stopped (`exchanger ctl stop`): not started again by the
    /// autoscaler or a reload until `ctl start` or `ctl restart`.
    var heldStopped: Set<String> = []
    var drainLevels: [Int] = []
    var lastReconcile: (at: ContinuousClock.Instant, error: String?)?
    var started = false
    var reconcileInFlight = false
    /// When the pass in flight started (its heartbeat renews the lease at that moment or later).
    var reconcileStartedAt: ContinuousClock.Instant?
    /// The start of the last pass that renewed this supervisor's lease; nil before the first.
    var lastRenewal: ContinuousClock.Instant?
    /// Whether the per-exchange workers were stopped because the lease could not be renewed.
    var fenced = false
    /// While set, stops give processes at most this long before the SIGKILL (fencing).
    var stopWaitCap: Duration?

    /// - Parameters:
    ///   - broker: the control database; nil runs only the global programs (no deployments).
    ///   - brokerURL: passed to every child as EXCHANGER_DATABASE_URL (unless its program sets it).
    ///   - random: the jitter source (tests pass a fixed one).
    public init(
        configuration: SupervisorConfiguration, broker: Broker?, brokerURL: String?, spawner: ProcessSpawner, multiplexer: LogMultiplexer,
        logger: Logger, environment: [String: String] = ProcessInfo.processInfo.environment,
        random: @escaping @Sendable () -> Double = { Double.random(in: 0...1) }
    ) {
        self.configuration = configuration
        self.identifier = configuration.supervisor.identifier
        self.runID = UUID().uuidString.lowercased()
        self.brokerHandle = broker
        self.deploymentStore = broker.map { DeploymentStore(broker: $0) }
        self.spawner = spawner
        self.multiplexer = multiplexer
        self.reaper = ChildReaper()
        self.logger = logger
        self.random = random
        self.baseEnvironment = environment
        self.environmentPolicy = ProgramEnvironment(environment: environment)
        self.childBrokerURL = brokerURL
        self.metrics = SupervisorMetrics()
        (events, eventSink) = AsyncStream.makeStream(of: Event.self, bufferingPolicy: .unbounded)
    }

    // MARK: Running

    /// Runs until SIGTERM/SIGINT (or ``shutdown()``) and everything has stopped. Returns the exit
    /// status for the process: 0 after a clean drain, 1 when processes had to be killed at the
    /// shutdown timeout.
    public func run() async -> Int32 {
        // Listen before anything else: a SIGTERM with no listener ends the process at once.
        let signals = ProcessSignals.events()
        ChildReaper.becomeSubreaper()
        sweepOrphans()
        let reaper = self.reaper
        let sink = eventSink
        let background = Task {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await reaper.run() }
                group.addTask {
                    for await exit in reaper.exits { sink.yield(.exited(pid: exit.pid, status: exit.status)) }
                }
                group.addTask {
                    for await signal in signals where signal != SIGCHLD { sink.yield(.signal(signal)) }
                }
                group.addTask { [weak self] in await self?.tickReconcile() }
                group.addTask { [weak self] in await self?.watchDeployments() }
                await group.waitForAll()
            }
        }
        defer { background.cancel() }

        if let store = deploymentStore {
            do {
                try await store.register(identity(), lease: configuration.supervisor.leaseDuration)
            } catch {
                logger.error("cannot register with the broker; deployments wait for the next pass", metadata: ["error": "\(error)"])
            }
        }
        logger.info("supervisor started", metadata: [
            "identifier": "\(identifier)", "run": "\(runID)", "config": "\(configuration.file)",
            "programs": "\(configuration.programs.map(\.name).joined(separator: ","))",
        ])
        startGlobalPrograms()
        started = true
        eventSink.yield(.reconcile)

        var forced = false
        for await event in events {
            await handle(event, forced: &forced)
            if draining && slots.isEmpty { break }
            if draining { advanceDrain() }
        }
        await finishDrain()
        reaper.finish()
        logger.info("supervisor stopped", metadata: ["forced": "\(forced)"])
        return forced ? 1 : 0
    }

    /// Starts the drain as SIGTERM would.
    public func shutdown() {
        eventSink.yield(.signal(SIGTERM))
    }

    /// Re-reads the configuration as SIGHUP would.
    public func reload() {
        eventSink.yield(.signal(SIGHUP))
    }

    /// Asks for a deployment pass now (as a NOTIFY would).
    public func reconcileNow() {
        eventSink.yield(.reconcile)
    }

    func handle(_ event: Event, forced: inout Bool) async {
        let now = clock.now
        switch event {
        case .exited(let pid, let status):
            guard let key = pids.removeValue(forKey: pid), var slot = slots[key] else { return }
            let action = slot.machine.exited(pid: pid, status: status, now: now, random: random())
            slots[key] = slot
            logExit(slot, pid: pid, status: status)
            metrics.exited(program: key.program)
            perform(action, for: key)
            if let current = slots[key], current.restartAfterStop || current.wantedAgain, !current.retiring, current.machine.isIdle {
                slots[key]?.restartAfterStop = false
                slots[key]?.wantedAgain = false
                startSlot(key)
            }
            retireIfIdle(key)
        case .startCheck(let key, let pid):
            guard var slot = slots[key] else { return }
            perform(slot.machine.startTimerFired(pid: pid, now: now), for: key)
            slots[key] = slot
            if case .running = slot.machine.state {
                logger.info("process running", metadata: metadata(slot, pid: pid))
            }
        case .restart(let key):
            guard var slot = slots[key] else { return }
            let action = slot.machine.backoffFired(now: now)
            slots[key] = slot
            if action != nil { metrics.restarted(program: key.program) }
            perform(action, for: key)
        case .killTimer(let key, let pid):
            guard var slot = slots[key] else { return }
            let action = slot.machine.killTimerFired(pid: pid, now: now)
            slots[key] = slot
            if action != nil {
                logger.warning("process ignored its stop signal; killing its process group", metadata: metadata(slot, pid: pid))
            }
            perform(action, for: key)
        case .signal(let signal):
            await handleSignal(signal)
        case .reconcile:
            guard !draining else { return }
            fenceIfCutOff(now: ContinuousClock.now)
            startReconcile()
        case .reconciled(let result):
            apply(result)
        case .control(let action, let program, let reply):
            reply.resume(returning: applyControl(action, program: program))
        case .drainTimeout:
            guard draining else { return }
            forced = !slots.isEmpty
            for (key, slot) in slots {
                if let pid = slot.machine.pid {
                    logger.error("shutdown timeout: killing", metadata: metadata(slot, pid: pid))
                    _ = kill(-pid, SIGKILL)
                }
                if slot.machine.pid == nil { slots.removeValue(forKey: key) }
            }
        }
        updateMetrics()
    }

    func handleSignal(_ signal: Int32) async {
        switch signal {
        case SIGTERM, SIGINT:
            guard !draining else { return }
            draining = true
            logger.info("draining: stopping every process", metadata: ["signal": "\(signal)", "processes": "\(slots.count)"])
            drainLevels = Array(Set(slots.values.map(\.program.priority))).sorted(by: >)
            let timeout = configuration.supervisor.shutdownTimeout
            let sink = eventSink
            Task {
                try? await Task.sleep(for: timeout)
                sink.yield(.drainTimeout)
            }
            advanceDrain()
        case SIGHUP:
            reloadConfiguration()
        case SIGUSR2:
            // The multiplexer reopens the files of the pipes it reads now; the supervisor also
            // holds every program's file, including those of programs between two processes.
            var failures: [String] = []
            do { try multiplexer.reopenFiles() } catch { failures.append("\(error)") }
            for file in programFiles.values {
                do { try file.reopen() } catch { failures.append("\(error)") }
            }
            if failures.isEmpty {
                logger.info("log files reopened")
            } else {
                logger.error("cannot reopen a log file", metadata: ["errors": "\(failures)"])
            }
        default:
            break
        }
    }

    /// Stops the slots of the highest remaining priority number; the next level starts stopping
    /// once those are gone (lower priority numbers stop last).
    func advanceDrain() {
        while let level = drainLevels.first {
            let atLevel = slots.values.filter { $0.program.priority == level }
            if atLevel.isEmpty {
                drainLevels.removeFirst()
                continue
            }
            for slot in atLevel { stopSlot(slot.key, retire: true) }
            return
        }
        // Anything left (added during the drain) stops too.
        for key in slots.keys { stopSlot(key, retire: true) }
    }

    func finishDrain() async {
        if let store = deploymentStore {
            do {
                try await store.deregister(id: identifier)
            } catch {
                logger.warning("cannot deregister from the broker; its lease will expire", metadata: ["error": "\(error)"])
            }
        }
        _ = await multiplexer.drain(timeout: .seconds(2))
    }

    // MARK: Slots

    func startGlobalPrograms() {
        for program in configuration.programs.sorted(by: { $0.priority < $1.priority }) where program.scope == .global && program.autostart {
            let group = GroupKey(program: program.name, deploymentID: "")
            setTarget(group, program: program, deployment: nil, count: program.queue == nil ? program.minProcs : max(program.minProcs, groupTargets[group] ?? program.minProcs))
        }
    }

    /// Makes the group run `count` instances: new instances start, instances at or above `count`
    /// stop (highest first) and disappear once stopped. Existing instances are left alone.
    func setTarget(_ group: GroupKey, program: ProgramConfiguration, deployment: Deployment?, count: Int) {
        let previous = groupTargets[group]
        groupTargets[group] = count
        if previous != count {
            logger.info("scaling", metadata: [
                "worker": "\(group.program)", "deploymentId": "\(group.deploymentID)",
                "from": "\(previous ?? 0)", "to": "\(count)",
            ])
        }
        for instance in 0..<count {
            let key = SlotKey(program: group.program, deploymentID: group.deploymentID, instance: instance)
            if var slot = slots[key] {
                slot.deployment = deployment ?? slot.deployment
                if slot.retiring || !slot.machine.wanted {
                    slot.retiring = false
                    if case .stopping = slot.machine.state { slot.wantedAgain = true }
                    slots[key] = slot
                    startSlot(key)
                } else {
                    slots[key] = slot
                }
            } else {
                slots[key] = Slot(key: key, machine: ProcessStateMachine(policy: Self.policy(program)), program: program, deployment: deployment)
                startSlot(key)
            }
        }
        for key in slots.keys where key.program == group.program && key.deploymentID == group.deploymentID && key.instance >= count {
            stopSlot(key, retire: true)
        }
    }

    /// Applies a changed program section to a slot: with `restart`, a running process is stopped
    /// and started again with the new settings; without, only the settings used from now on change.
    func replaceProgram(_ key: SlotKey, with program: ProgramConfiguration, restart: Bool) {
        guard var slot = slots[key] else { return }
        slot.program = program
        slot.machine.policy = Self.policy(program)
        let wasWanted = slot.machine.wanted
        slots[key] = slot
        guard restart, wasWanted, !slot.retiring else { return }
        if slot.machine.pid != nil {
            slots[key]?.restartAfterStop = true
            stopSlot(key, retire: false)
        }
    }

    /// Takes a new configuration into use (programs of new slots use it from now on).
    func applyConfiguration(_ fresh: SupervisorConfiguration) {
        configuration = fresh
    }

    func startSlot(_ key: SlotKey) {
        guard var slot = slots[key] else { return }
        let action = slot.machine.start(now: clock.now)
        slots[key] = slot
        perform(action, for: key)
    }

    func stopSlot(_ key: SlotKey, retire: Bool) {
        guard var slot = slots[key] else { return }
        if retire { slot.retiring = true }
        let wasRunning = slot.machine.pid
        let action = slot.machine.stop(now: clock.now, within: stopWaitCap)
        slots[key] = slot
        if let pid = wasRunning, action != nil {
            logger.info("stopping process", metadata: metadata(slot, pid: pid))
        }
        perform(action, for: key)
        retireIfIdle(key)
    }

    func retireIfIdle(_ key: SlotKey) {
        guard let slot = slots[key], slot.retiring, slot.machine.isIdle else { return }
        slots.removeValue(forKey: key)
    }

    func perform(_ action: ProcessStateMachine.Action?, for key: SlotKey) {
        guard let action else { return }
        let sink = eventSink
        switch action {
        case .spawn:
            spawn(key)
        case .checkStarted(let at):
            guard let pid = slots[key]?.machine.pid else { return }
            schedule(at) { sink.yield(.startCheck(key, pid: pid)) }
        case .restart(let at):
            if let slot = slots[key] {
                var fields = metadata(slot, pid: nil)
                fields["delaySeconds"] = "\(Double(slot.machine.lastBackoff.components.seconds) + Double(slot.machine.lastBackoff.components.attoseconds / 1_000_000_000_000_000) / 1000)"
                fields["state"] = "\(slot.machine.stateName(now: clock.now))"
                logger.info("restart scheduled", metadata: fields)
            }
            schedule(at) { sink.yield(.restart(key)) }
        case .signal(let signal, let pid, let killAt):
            _ = kill(-pid, signal)
            schedule(killAt) { sink.yield(.killTimer(key, pid: pid)) }
        case .kill(let pid):
            _ = kill(-pid, SIGKILL)
        }
    }

    func schedule(_ at: ContinuousClock.Instant, _ body: @escaping @Sendable () -> Void) {
        Task {
            try? await Task.sleep(until: at, clock: .continuous)
            body()
        }
    }

    func spawn(_ key: SlotKey) {
        guard var slot = slots[key] else { return }
        let now = clock.now
        do {
            let context = expansionContext(slot)
            let argv = try slot.program.argv(context)
            var environment = environmentPolicy.filter(baseEnvironment, executable: argv.first ?? "")
            if let childBrokerURL {
                environment["EXCHANGER_DATABASE_URL"] = childBrokerURL
                environment.removeValue(forKey: "EXCHANGER_DATABASE_URL_FILE")
            }
            for (name, value) in try slot.program.expandedEnvironment(context) { environment[name] = value }
            environment["EXCHANGER_SUPERVISOR_ID"] = identifier
            environment["EXCHANGER_SUPERVISOR_RUN"] = runID
            environment["EXCHANGER_SUPERVISOR_PID"] = String(getpid())
            environment["EXCHANGER_PROGRAM_NAME"] = key.program
            environment["EXCHANGER_PROCESS_NUM"] = String(key.instance)
            if let deployment = slot.deployment {
                environment["EXCHANGER_DEPLOYMENT_ID"] = deployment.id
                environment["EXCHANGER_EXCHANGE_ID"] = deployment.exchangeID
            }
            let directory = try slot.program.expandedDirectory(context)
            let process = try spawner.spawn(argv, environment: environment, directory: directory, reaper: reaper)
            pids[process.pid] = key
            slot.startedAt = Date()
            slot.spawnedAt = now
            let action = slot.machine.spawned(pid: process.pid, now: now)
            slots[key] = slot
            attachLogs(process, slot: slot, context: context)
            logger.info("process spawned", metadata: metadata(slot, pid: process.pid))
            metrics.spawned(program: key.program)
            perform(action, for: key)
        } catch {
            let action = slot.machine.spawnFailed(now: now, random: random())
            slots[key] = slot
            var fields = metadata(slot, pid: nil)
            fields["error"] = "\(error)"
            logger.error("cannot spawn process", metadata: fields)
            perform(action, for: key)
        }
    }

    func attachLogs(_ process: SpawnedProcess, slot: Slot, context: ExpansionContext) {
        var fields: [(String, String)] = []
        if let deployment = slot.deployment {
            fields.append(("deploymentId", deployment.id))
            fields.append(("exchangeId", deployment.exchangeID))
        }
        let stdoutFile = logFile(slot.program.stdoutLog, path: { try slot.program.stdoutLogPath(context) }, program: slot.key.program)
        let stderrFile = logFile(slot.program.stderrLog, path: { try slot.program.stderrLogPath(context) }, program: slot.key.program) ?? stdoutFile
        multiplexer.attach(process.stdout, source: LogSource(
            program: slot.key.program, instance: slot.key.instance, pid: process.pid, stream: .stdout, fields: fields, file: stdoutFile))
        multiplexer.attach(process.stderr, source: LogSource(
            program: slot.key.program, instance: slot.key.instance, pid: process.pid, stream: .stderr, fields: fields, file: stderrFile))
    }

    func logFile(_ settings: LogFileSettings?, path expand: () throws -> String?, program: String) -> RotatingLogFile? {
        guard let settings else { return nil }
        do {
            guard let path = try expand() else { return nil }
            if let file = programFiles[path] { return file }
            let file = try RotatingLogFile(path: path, maxBytes: settings.maxBytes, backups: settings.backups)
            programFiles[path] = file
            return file
        } catch {
            logger.error("cannot open the program's log file; its lines go to stdout only", metadata: [
                "worker": "\(program)", "path": "\(settings.path)", "error": "\(error)",
            ])
            return nil
        }
    }

    func expansionContext(_ slot: Slot) -> ExpansionContext {
        slot.program.expansionContext(
            processNumber: slot.key.instance, queue: slot.deployment?.queue ?? slot.program.queue,
            exchangeID: slot.deployment?.exchangeID, deploymentID: slot.deployment?.id, environment: baseEnvironment
        )
    }

    static func policy(_ program: ProgramConfiguration) -> ProcessStateMachine.Policy {
        ProcessStateMachine.Policy(
            shouldRestart: { program.shouldRestart(exitStatus: $0) },
            startSeconds: program.startSeconds, startRetries: program.startRetries, stopSignal: program.stopSignal,
            stopWait: program.stopWait, backoffInitial: program.backoffInitial, backoffMax: program.backoffMax,
            crashLoopDeaths: program.crashLoopDeaths, crashLoopWindow: program.crashLoopWindow
        )
    }

    // MARK: Logging helpers

    func metadata(_ slot: Slot, pid: Int32?) -> Logger.Metadata {
        var fields: Logger.Metadata = ["worker": "\(slot.key.program)", "instance": "\(slot.key.instance)"]
        if let pid { fields["pid"] = "\(pid)" }
        if let deployment = slot.deployment {
            fields["deploymentId"] = "\(deployment.id)"
            fields["exchangeId"] = "\(deployment.exchangeID)"
            fields["queue"] = "\(deployment.queue)"
        }
        return fields
    }

    func logExit(_ slot: Slot, pid: Int32, status: Int32) {
        var fields = metadata(slot, pid: pid)
        fields["status"] = "\(status)"
        fields["state"] = "\(slot.machine.stateName(now: clock.now))"
        if status > 128 { fields["signal"] = "\(status - 128)" }
        let expected = slot.program.exitCodes.contains(status) || !slot.machine.wanted
        if expected {
            logger.info("process exited", metadata: fields)
        } else {
            logger.warning("process exited unexpectedly", metadata: fields)
        }
    }

    // MARK: Status

    /// Every slot, sorted.
    public func status() -> [SlotStatus] {
        let now = clock.now
        return slots.values.sorted { $0.key < $1.key }.map { slot in
            SlotStatus(
                program: slot.key.program, deploymentID: slot.key.deploymentID, instance: slot.key.instance,
                state: slot.machine.stateName(now: now), pid: slot.machine.pid, restarts: slot.machine.restarts,
                lastExitStatus: slot.machine.lastExitStatus,
                backoffSeconds: Double(slot.machine.lastBackoff.components.seconds) + Double(slot.machine.lastBackoff.components.attoseconds) / 1e18
            )
        }
    }

    /// Ready when started, not draining, and (with a broker) the last deployment pass succeeded
    /// within three reconcile intervals.
    public func readiness() -> Readiness {
        guard started else { return Readiness(ready: false, reason: "starting") }
        guard !draining else { return Readiness(ready: false, reason: "draining") }
        guard brokerHandle != nil else { return Readiness(ready: true, reason: "ok (no broker: global programs only)") }
        guard let last = lastReconcile else { return Readiness(ready: false, reason: "no deployment pass yet") }
        if let error = last.error { return Readiness(ready: false, reason: "last deployment pass failed: \(error)") }
        let limit = configuration.supervisor.reconcileInterval * 3 + .seconds(5)
        guard clock.now - last.at <= limit else { return Readiness(ready: false, reason: "no deployment pass for \(clock.now - last.at)") }
        return Readiness(ready: true, reason: "ok")
    }

    func updateMetrics() {
        let now = clock.now
        var desired: [String: Int] = [:]
        var running: [String: Int] = [:]
        var failed: [String: Int] = [:]
        var backoff: [String: Double] = [:]
        for program in configuration.programs { desired[program.name] = 0; running[program.name] = 0; failed[program.name] = 0; backoff[program.name] = 0 }
        for (group, target) in groupTargets { desired[group.program, default: 0] += target }
        for slot in slots.values {
            if slot.machine.pid != nil { running[slot.key.program, default: 0] += 1 }
            if slot.machine.isCrashLooping(now: now) && slot.machine.wanted { failed[slot.key.program, default: 0] += 1 }
            if case .backoff = slot.machine.state {
                let seconds = Double(slot.machine.lastBackoff.components.seconds)
                backoff[slot.key.program] = max(backoff[slot.key.program] ?? 0, seconds)
            }
        }
        metrics.update(desired: desired, running: running, failed: failed, backoff: backoff)
    }

    // MARK: Orphans

    /// Kills processes an earlier run of this supervisor left behind: a killed supervisor's
    /// workers die with it (parent-death signal), but their own descendants do not. They carry
    /// EXCHANGER_SUPERVISOR_ID = this identifier and an older EXCHANGER_SUPERVISOR_RUN whose
    /// supervisor (EXCHANGER_SUPERVISOR_PID) is gone.
    func sweepOrphans() {
        let killed = OrphanSweep.run(identifier: identifier, currentRun: runID)
        if !killed.isEmpty {
            logger.warning("killed processes left behind by an earlier run", metadata: ["pids": "\(killed)"])
        }
    }

    func identity() -> SupervisorIdentity {
        SupervisorIdentity(
            id: identifier, hostname: SupervisorSettings.localHostName(), pid: getpid(),
            httpPort: configuration.supervisor.httpPort == 0 ? nil : configuration.supervisor.httpPort
        )
    }
}
